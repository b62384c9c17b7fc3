"""vLLM's OpenAI server as a child process, one per served generation version, and what becomes of them.

For a version, a Runner exports it as tuneops exports any version (registry/export.py: safetensors, the tokenizer
with its chat template), starts `python -m vllm.entrypoints.openai.api_server` on a free 127.0.0.1 port with the
version's id as its served name, and waits for GET /health. The Fleet keeps one Runner per version and a watchdog
thread: a process that exits on its own is reported and started again (up to `max_restarts` times in a row), and
one whose version left the catalog (its LRU cache and every followed alias) is stopped. The decisions (which to
stop, which to restart) are pure functions, `plan`, unit-tested without a process.

    python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name NAME --dtype float32 ...

(the CPU build's `vllm` command fails looking up a package named `vllm`: the module is what starts it.)
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import importlib.util
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.inference.batching import context_length
from tuneops.registry.export import export_dir, publish, save

if TYPE_CHECKING:
    from tuneops.config.params import VllmParams
    from tuneops.registry.served import Served

log = logging.getLogger("tuneops.serve")

Version = tuple[str, str]  # (registered model name, version): one process each
Spawn = Callable[[Callable[[], subprocess.Popen[bytes]]], subprocess.Popen[bytes]]
HEALTH_POLL_S = 1.0
WATCH_S = 1.0


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"  # gave up: its requests stay on the built-in engine
    STOPPED = "stopped"


def vllm_python(configured: str | None) -> str:
    """The interpreter to start vLLM with: the configured one, else this one when it can import vllm."""
    if configured is not None:
        python = Path(configured).expanduser()
        if not python.is_file():
            raise UserError(f"serve.vllm.python: {configured} does not exist (an interpreter with vLLM installed)")
        return str(python)
    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            "serve.engine: vllm needs vLLM: set serve.vllm.python to an interpreter of a virtualenv that has it "
            "(README: Engines), or install it here"
        )
    return sys.executable


def served_name(version: Version) -> str:
    """The id vLLM answers to: the version pinned, `<name>:<version>`."""
    return f"{version[0]}:{version[1]}"


def model_len(configured: int | None, context: int | None) -> int | None:
    """vLLM's --max-model-len: the configured length, never more than the model's own context."""
    if configured is None or context is None:
        return configured or context
    return min(configured, context)


def command(settings: VllmParams, python: str, model_dir: Path, name: str, port: int, context: int | None) -> list[str]:
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    cmd += ["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", settings.dtype]
    # the request's own settings only: vLLM would otherwise take sampling defaults from generation_config.json
    cmd += ["--generation-config", "vllm", "--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if (length := model_len(settings.max_model_len, context)) is not None:
        cmd += ["--max-model-len", str(length)]
    return cmd + list(settings.extra_args)


def environment(settings: VllmParams) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEOPS_API_KEY", "VIRTUAL_ENV", "PYTHONPATH")}
    env["VLLM_CPU_KVCACHE_SPACE"] = format(settings.kv_cache_space_gib, "g")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Seen:
    """A runner as the watchdog sees it."""

    state: State
    exited: bool  # its process ended though it was not told to
    restarts: int


@dataclass(frozen=True)
class Plan:
    stop: list[Version]
    restart: list[Version]
    give_up: list[Version]


def plan(runners: dict[Version, Seen], live: set[Version], max_restarts: int) -> Plan:
    """What the watchdog does: stop the processes of versions serving no longer holds, start again those that
    died (while under `max_restarts` in a row), give up on the rest of the dead."""
    stop = [v for v, seen in runners.items() if v not in live and seen.state is not State.STOPPED]
    dead = [v for v, seen in runners.items() if v in live and seen.exited and seen.state is not State.FAILED]
    restart = [v for v in dead if runners[v].restarts < max_restarts]
    give_up = [v for v in dead if runners[v].restarts >= max_restarts]
    return Plan(stop, restart, give_up)


class Runner:
    """One version's vLLM process: exported, started, waited for; stopped or started again."""

    def __init__(
        self,
        version: Version,
        settings: VllmParams,
        python: str,
        export_root: Path,
        log_dir: Path,
        spawn: Spawn = lambda start: start(),
    ) -> None:
        self.version, self.settings, self.python, self.spawn = version, settings, python, spawn
        self.export_root, self.log_path = export_root, log_dir / f"vllm-{os.getpid()}-{'-'.join(version)}.log"
        self.state, self.restarts, self.port = State.STARTING, 0, 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return served_name(self.version)

    def seen(self) -> Seen:
        with self._lock:
            exited = self.state is State.READY and self.proc is not None and self.proc.poll() is not None
            return Seen(self.state, exited, self.restarts)

    def start(self, served: Served) -> None:
        """Export, start and wait for health (blocking: the Fleet calls it on a thread of its own)."""
        try:
            model_dir = self._export(served)
            self._launch(model_dir, context_length(served.model))
            self._wait_healthy()
        except Exception as exc:  # a start that fails leaves the version on the built-in engine, said once
            log.error("vLLM for %s did not start: %s (its log: %s)", self.name, exc, self.log_path)
            self.stop(State.FAILED)
            return
        with self._lock:
            if self.state is State.STARTING:
                self.state = State.READY
                log.info("vLLM for %s ready on %s (pid %d)", self.name, self.base_url, self.proc.pid)

    def stop(self, state: State = State.STOPPED) -> None:
        with self._lock:
            self.state, proc = state, self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)  # vLLM's engine core and workers with it
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        with contextlib.suppress(OSError):  # whatever of its group is left (a crashed server's engine core)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _export(self, served: Served) -> Path:
        target = export_dir(self.export_root, self.name)
        if not target.is_dir():
            publish(target, lambda staging: save(served, self.name, staging))
        return target

    def _launch(self, model_dir: Path, context: int | None) -> None:
        with self._lock:
            if self.state is not State.STARTING:
                raise RuntimeError(f"stopped while starting ({self.state.value})")
            self.port = free_port()
            cmd = command(self.settings, self.python, model_dir, self.name, self.port, context)
            with self.log_path.open("ab") as out:
                self.proc = self.spawn(
                    lambda: subprocess.Popen(
                        cmd,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=environment(self.settings),
                        start_new_session=True,  # its own process group: Ctrl-C reaches tuneops, which stops it
                        preexec_fn=die_with_parent,
                    )
                )
        log.info("starting vLLM for %s: pid %d, port %d, log %s", self.name, self.proc.pid, self.port, self.log_path)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if self.state is not State.STARTING:
                raise RuntimeError(f"stopped while starting ({self.state.value})")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"it exited with {self.proc.returncode}: {self._tail()}")
            if healthy(self.base_url):
                return
            time.sleep(HEALTH_POLL_S)
        raise RuntimeError(f"no answer on {self.base_url}/health within {self.settings.startup_timeout_s:g} s")

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            return lines[-1] if lines else ""
        return ""


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when tuneops dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG), so no
    vLLM process (~5 GB each) outlives the server that started it. The signal comes when the *thread* that started
    it ends: the Fleet starts every process from its watchdog thread, which lives as long as the server."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Fleet:
    """A Runner per served version, and the watchdog that stops, restarts or gives up on them.

    `live`: the versions serving may still answer with (Catalog.live: its LRU cache and followed aliases)."""

    def __init__(self, settings: VllmParams, python: str, export_root: Path, log_dir: Path) -> None:
        self.settings, self.python, self.export_root, self.log_dir = settings, python, export_root, log_dir
        self.live: Callable[[], set[Version]] = set
        self._runners: dict[Version, Runner] = {}
        self._served: dict[Version, Served] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._spawns: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], list, threading.Event]] = queue.Queue()
        self._watchdog = threading.Thread(target=self._watch, name="tuneops-vllm-watchdog", daemon=True)
        self._watchdog.start()

    def runner(self, served: Served) -> Runner:
        """The version's runner, started in the background on first use (never waits for it)."""
        version = (served.info.name, served.info.version)
        with self._lock:
            runner = self._runners.get(version)
            if runner is None or runner.state is State.STOPPED:
                runner = Runner(version, self.settings, self.python, self.export_root, self.log_dir, self._spawn)
                self._runners[version], self._served[version] = runner, served
                self._start(runner, served)
            return runner

    def ready(self, served: Served) -> bool:
        """Whether the version's vLLM answers; starts it when it is not there yet (an alias switch waits on it)."""
        runner = self.runner(served)
        return runner.state in (State.READY, State.FAILED)  # a failed one is served by the built-in: no waiting

    def wait_ready(self, served: Served) -> bool:
        """Start the version's vLLM and wait until it answers (serve's start-up, for its default model): True when
        it does, False when it failed (the built-in engine answers then)."""
        runner = self.runner(served)
        deadline = time.monotonic() + self.settings.startup_timeout_s + 60  # the export comes first
        while runner.state is State.STARTING and time.monotonic() < deadline:
            time.sleep(HEALTH_POLL_S)
        return runner.state is State.READY

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop()

    def _start(self, runner: Runner, served: Served) -> None:
        threading.Thread(target=runner.start, args=(served,), name=f"vllm-start-{runner.name}", daemon=True).start()

    def _spawn(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """`start()` run on the watchdog thread (see die_with_parent); its process, or its exception."""
        box: list = []
        done = threading.Event()
        self._spawns.put((start, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _watch(self) -> None:
        checked = time.monotonic()
        while not self._closed.is_set():
            with contextlib.suppress(queue.Empty):
                start, box, done = self._spawns.get(timeout=WATCH_S)
                try:
                    box.append(start())
                except Exception as exc:  # handed to the starting thread, which reports it
                    box.append(exc)
                done.set()
            if time.monotonic() - checked >= WATCH_S:
                checked = time.monotonic()
                try:
                    self.check()
                except Exception:  # the watchdog outlives any one check
                    log.exception("vLLM watchdog check failed")

    def check(self) -> Plan:
        """One round of the watchdog (also called by tests)."""
        with self._lock:
            seen = {version: runner.seen() for version, runner in self._runners.items()}
        decided = plan(seen, self.live(), self.settings.max_restarts)
        for version in decided.stop:
            log.info("vLLM for %s: its version left the model cache; stopping it", served_name(version))
            self._runners[version].stop()
        for version in decided.restart:
            self._restart(version)
        for version in decided.give_up:
            runner = self._runners[version]
            log.error(
                "vLLM for %s died %d times; giving up (the built-in engine answers)", runner.name, runner.restarts
            )
            runner.stop(State.FAILED)
        return decided

    def _restart(self, version: Version) -> None:
        runner = self._runners[version]
        code = runner.proc.returncode if runner.proc is not None else None
        log.error(
            "vLLM for %s (pid %s) exited with %s; restarting it (restart %d of at most %d; its log: %s)",
            runner.name,
            runner.proc.pid if runner.proc else "?",
            code,
            runner.restarts + 1,
            self.settings.max_restarts,
            runner.log_path,
        )
        runner.stop(State.STARTING)  # what is left of its process group (vLLM's engine core, its workers)
        with runner._lock:
            runner.restarts += 1
        self._start(runner, self._served[version])
