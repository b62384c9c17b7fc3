"""Data-parallel training under torchrun: the train stage launching itself, and a failed rank's error.

`train.launcher: torchrun` in params.yaml: `dvc repro` (and the retrain flow, which runs `dvc repro`) still
starts `python -m tasks.train`; that process, not being a torchrun worker, runs torchrun's own launcher
(`torch.distributed.run`, what the `torchrun` command runs) with the same module and arguments, and waits.
The workers run the stage's training under DDP (the Trainer picks gloo on a CPU, NCCL on GPUs); rank 0
alone writes. When a rank fails, torchrun stops the others, and the stage exits with that rank's exit code
and its error on one line, as a single-process stage would.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

from tuneops.config.errors import TransientError
from tuneops.config.params import TrainParams
from tuneops.config.runner import redact

log = logging.getLogger("tuneops.launch")
R = TypeVar("R")
# torchrun gives each worker its rank in these; the launching process has neither
WORKER_ENV = ("LOCAL_RANK", "RANK")
# the prefix our own one-line errors get in torchrun's error file (`{type}: {message}`): the type says nothing
ONE_LINE_ERRORS = ("UserError: ", "TransientError: ")


def is_worker(env: Mapping[str, str] = os.environ) -> bool:
    """Is this process one of torchrun's workers (started by it, or by a `torchrun -m tasks.train` by hand)?"""
    return any(name in env for name in WORKER_ENV)


def wants_torchrun(train: TrainParams, env: Mapping[str, str] = os.environ) -> bool:
    """Should this process launch torchrun instead of training? Only the first process: never a worker."""
    return train.launcher == "torchrun" and not is_worker(env)


def torchrun_args(train: TrainParams, module: str, argv: list[str]) -> list[str]:
    """torchrun's command line for `python -m module argv` under these params (without `torchrun` itself)."""
    if train.nnodes == 1 and train.rdzv_endpoint is None:
        # one machine: a rendezvous on a free local port, so two projects on one machine never collide
        rendezvous = ["--standalone"]
    else:
        endpoint = train.rdzv_endpoint or ""
        rendezvous = [f"--nnodes={train.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}"]
        rendezvous.append(f"--rdzv_id={train.rdzv_id}")
    return [f"--nproc_per_node={train.nproc_per_node}", *rendezvous, "-m", module, *argv]


def root_cause(failures: Mapping[int, tuple[int, float]]) -> int:
    """The rank whose failure ended the run, from each failed rank's (exit code, time): the first to fail on its
    own. When one rank fails, torchrun stops the others with SIGTERM; those are not the cause, even where they
    had failed too a moment before (all ranks meet the same bad input)."""
    own = {rank: f for rank, f in failures.items() if f[0] != -signal.SIGTERM} or failures
    return min(own, key=lambda rank: (own[rank][1], rank))


def failure_message(message: str | dict) -> str:
    """A rank's error as one line. torchrun's error file holds {"message": "{type}: {message}", "extraInfo":
    {the traceback}} (torch's @record writes it); the type of our one-line errors says nothing."""
    if isinstance(message, dict):
        message = message.get("message", "")
    line = " ".join(str(message).split())
    for prefix in ONE_LINE_ERRORS:
        line = line.removeprefix(prefix)
    return line[:500]


def exit_code(worker_exitcode: int) -> int:
    """A failed rank's exit code as this process's: a signal (negative) as a shell reports it, 128 + signal."""
    return worker_exitcode if worker_exitcode > 0 else 128 - worker_exitcode if worker_exitcode < 0 else 1


def failure_line(rank: int, world_size: int, exitcode: int, message: str | dict, recorded: bool) -> str:
    """What the stage says when a rank failed: which one, how, and its own error when it recorded one."""
    how = f"killed by {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exit code {exitcode}"
    head = f"rank {rank} of {world_size} failed ({how})"
    if recorded:
        return f"{head}: {failure_message(message)}"
    return head if exitcode < 0 else f"{head}: no error recorded (its output above says why)"


def torchrun(train: TrainParams, module: str, argv: list[str]) -> None:
    """Run `python -m module argv` under torchrun as params configure it, and wait for every rank.

    A failed rank ends this process with its exit code (2 for a user error, 75 for a transient one, 128 +
    the signal for a killed one) and an `error:` line, which DVC and the retrain flow report.
    """
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    args = torchrun_args(train, module, argv)
    if not torch.cuda.is_available():  # the CPU's cores shared between the processes (torchrun would say 1 each)
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // train.nproc_per_node)))
    log.info("launching: torchrun %s", shlex.join(args))
    try:
        run(parse_args(args))
    except ChildFailedError as failed:
        rank = root_cause({r: (f.exitcode, f.timestamp) for r, f in failed.failures.items()})
        failure = failed.failures[rank]
        world_size = train.nproc_per_node * train.nnodes
        recorded = failure.error_file_data.get("message") not in (None, "<NONE>")
        line = failure_line(rank, world_size, failure.exitcode, failure.message, recorded)
        print(f"error: {redact(line)}", file=sys.stderr)
        raise SystemExit(exit_code(failure.exitcode)) from None
    except SignalException as stopped:  # told to stop (Ctrl-C, a cancelled run): torchrun stopped the ranks
        print(f"error: stopped by {stopped.sigval.name}; the ranks were stopped too", file=sys.stderr)
        raise SystemExit(128 + int(stopped.sigval)) from None
    except RendezvousError as unmet:  # another machine late or unreachable: worth a retry (exit 75)
        where = train.rdzv_endpoint or "localhost"
        raise TransientError(f"torchrun: the {train.nnodes} machine(s) did not meet at {where}: {unmet}") from None


def recorded(fn: Callable[..., R]) -> Callable[..., R]:
    """`fn` as a torchrun worker's entry point: an exception it raises is written to torchrun's error file
    (torch's own @record), which the launching process reads back. Outside torchrun, `fn` itself."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return fn
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(fn)
