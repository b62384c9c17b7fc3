"""`tuneops sweep`: a grid of params as DVC experiments on DVC's queue; the best that passed the gate registered.

    tuneops sweep -S train.args.learning_rate=1.0e-4,5.0e-5 -S train.args.num_train_epochs=2,3 --jobs 2 --promote

DVC does the work: `dvc exp run --queue evaluate -S ...` queues one experiment per combination (DVC's own grid:
comma-separated values, `range()`, `choice()`), `dvc queue start -j N` runs them in the background, each in
its own copy of the workspace, `dvc exp show` shows them. The experiments stop at `evaluate`: each has its
metrics and the gate's verdict, and none registers. `--promote` then takes the best that passed the gate
(by the metric the gate compares with the champion), `dvc exp apply`s it into the workspace and runs the
pipeline's own `register` stage there, which checks the gate and the champion again: nothing registers
outside the gate, and one sweep registers at most one model.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, JsonValue

from tuneops.config.errors import UserError
from tuneops.config.params import Params, tracking_uri
from tuneops.config.paths import REGISTERED_PATH
from tuneops.config.records import GateVerdict, Registration

log = logging.getLogger("tuneops.sweep")
TARGET = "evaluate"  # the last stage before register: metrics and gate, no registration
QUEUED = re.compile(r"Queued experiment '([^']+)' for future execution")
# `dvc queue status`: "Task  Name  Created  Status" rows, then "Worker status: N active, M idle"
WORKERS = re.compile(r"Worker status: (\d+) active, (\d+) idle")
UNFINISHED = {"Queued", "Running"}
PROMOTED_STAGE = "register"


class Experiment(BaseModel):
    """One experiment of a sweep as it ended: DVC's state, and the gate's verdict when it got that far."""

    name: str
    state: str  # DVC's: Success, Failed
    rev: str | None
    params: dict[str, JsonValue]  # the swept keys and this experiment's values
    verdict: str | None  # the gate's: passed, failed; None when the experiment failed before it
    score: float | None  # the gate's comparison metric (the champion is compared on it)
    failed_checks: list[str]


def check_overrides(sets: list[str], raw_params: dict[str, JsonValue]) -> list[str]:
    """`-S key=values` as DVC takes them; a key params.yaml does not have is refused here, naming it,
    not in every experiment after the queue ran it."""
    keys = []
    for item in sets:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"-S {item!r}: expected key=value[,value...] (e.g. train.args.learning_rate=1.0e-4,5.0e-5)")
        node: JsonValue = raw_params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"-S {item!r}: params.yaml has no {key} (see the keys in params.yaml)")
            node = node[part]
        keys.append(key)
    return keys


def absolute_tracking_uri(uri: str, root: Path) -> str:
    """A relative SQLite store made absolute: each experiment runs in its own copy of the workspace, and must
    log to (and compare with the champion of) this project's registry, not a new one in its copy."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + (root / uri.removeprefix(prefix)).resolve().as_posix()
    return uri


def queue_states(status_output: str) -> tuple[dict[str, str], int]:
    """The state of each experiment by name, and how many queue workers exist, from `dvc queue status`."""
    states = {}
    for line in status_output.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[0] != "Task" and re.fullmatch(r"[0-9a-f]{7,}", cells[0]):
            states[cells[1]] = cells[-1]
    workers = WORKERS.search(status_output)
    return states, (int(workers[1]) + int(workers[2])) if workers else 0


def gate_score(verdict: GateVerdict) -> float | None:
    """The metric the gate compares with the champion (its `beats_champion` check's observed value)."""
    return next((c.observed for c in verdict.checks if c.check == "beats_champion"), None)


def best(experiments: list[Experiment]) -> Experiment | None:
    """The experiment to promote: passed the gate, highest comparison metric (ties: the first by name)."""
    passed = [e for e in experiments if e.verdict == "passed" and e.score is not None]
    return max(sorted(passed, key=lambda e: e.name), key=lambda e: e.score, default=None)


def table(experiments: list[Experiment], keys: list[str], chosen: Experiment | None) -> str:
    """The sweep as a table: swept values, DVC's state, the gate's verdict and score, what failed."""
    header = ["experiment", *keys, "state", "gate", "score", "failed checks"]
    rows = [header]
    for e in experiments:
        mark = " *" if chosen is not None and e.name == chosen.name else ""
        score = "" if e.score is None else f"{e.score:.4f}"
        values = [str(e.params.get(k, "")) for k in keys]
        rows.append([e.name + mark, *values, e.state, e.verdict or "-", score, ", ".join(e.failed_checks)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def dvc(args: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """A DVC command run as its CLI (this interpreter's), with `python` in the stages this interpreter too."""
    bin_dir = Path(sys.executable).parent
    full_env = {**os.environ, **(env or {}), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=full_env)
    if check and result.returncode != 0:
        said = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        reason = said[-1] if said else (result.stderr or result.stdout).strip()[-400:]
        raise UserError(f"`dvc {' '.join(args)}` failed: {reason}")
    return result


def require_git_commit() -> None:
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise UserError("sweep: DVC experiments are git commits: run it in a git repository with a commit")


def queue(sets: list[str]) -> list[str]:
    """Queue the grid's experiments (up to `evaluate`); their names, in DVC's order."""
    out = dvc(["exp", "run", "--queue", TARGET, *(a for s in sets for a in ("-S", s))])
    names = QUEUED.findall(out.stdout + out.stderr)
    if not names:
        raise UserError(f"sweep: DVC queued nothing: {(out.stdout + out.stderr).strip()[-400:]}")
    return names


def wait_for_idle_workers(timeout_s: float = 20.0) -> None:
    """Workers started before this sweep would run its experiments without this sweep's environment (the
    registry to log to); an idle one exits within ~10 s by itself."""
    deadline = time.monotonic() + timeout_s
    while queue_states(dvc(["queue", "status"]).stdout)[1]:
        if time.monotonic() > deadline:
            raise UserError("sweep: a DVC queue worker is already running: wait for it or `dvc queue stop` it first")
        time.sleep(2)


def run_queue(names: list[str], jobs: int, env: dict[str, str], poll_s: float = 3.0) -> dict[str, str]:
    """`dvc queue start -j jobs`, then wait until every one of `names` has ended; their final states."""
    dvc(["queue", "start", "-j", str(jobs)], env=env)
    said: dict[str, str] = {}
    while True:
        states, _ = queue_states(dvc(["queue", "status"]).stdout)
        mine = {n: states.get(n, "Queued") for n in names}
        for n, state in mine.items():
            if said.get(n) != state:
                log.info("experiment %s: %s", n, state)
        said = mine
        if not UNFINISHED & set(mine.values()):
            return mine
        time.sleep(poll_s)


def experiment_revs() -> dict[str, str]:
    """Name -> commit of every experiment `dvc exp show` knows."""
    import json

    shown = json.loads(dvc(["exp", "show", "--json"]).stdout)
    revs = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    revs[rev["name"]] = rev["rev"]
    return revs


def git_file(rev: str, path: str) -> str | None:
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def swept_values(rev: str, keys: list[str]) -> dict[str, JsonValue]:
    import yaml

    params = yaml.safe_load(git_file(rev, "params.yaml") or "{}")
    values = {}
    for key in keys:
        node: JsonValue = params
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    return values


def collect(states: dict[str, str], keys: list[str]) -> list[Experiment]:
    """Each experiment's end: its commit (DVC's), its params and the gate's verdict from that commit."""
    revs = experiment_revs()
    experiments = []
    for name, state in states.items():
        rev = revs.get(name)
        gate_json = git_file(rev, "reports/gate.json") if rev else None
        gate = GateVerdict.model_validate_json(gate_json) if gate_json else None
        experiments.append(
            Experiment(
                name=name,
                state=state,
                rev=rev,
                params=swept_values(rev, keys) if rev else {},
                verdict=gate.verdict if gate else None,
                score=gate_score(gate) if gate else None,
                failed_checks=[c.check for c in gate.failed] if gate else [],
            )
        )
    return experiments


def show(keys: list[str]) -> str:
    """`dvc exp show` narrowed to the experiments' state, the swept params and the headline metrics."""
    columns = "|".join(
        ["Experiment", "Created", "State", *(re.escape(k) for k in keys), r"test\.[a-z0-9_]+", r"gap\.[a-z_]+"]
    )
    return dvc(["exp", "show", "--md", "--drop", ".*", "--keep", f"^({columns})$"]).stdout


def promote(chosen: Experiment) -> Registration:
    """The chosen experiment into the workspace (`dvc exp apply`), then the pipeline's register stage on it."""
    dvc(["exp", "apply", chosen.name])
    result = dvc(["repro", "--single-item", PROMOTED_STAGE], check=False)
    if result.returncode != 0:
        ours = [line.removeprefix("error: ") for line in result.stderr.splitlines() if line.startswith("error: ")]
        why = ours[-1] if ours else result.stderr.strip()[-400:]
        raise UserError(f"sweep: {PROMOTED_STAGE} did not register {chosen.name}: {why}")
    return Registration.model_validate_json(REGISTERED_PATH.read_text())


def sweep(
    params: Params, raw: dict[str, JsonValue], sets: list[str], jobs: int, promote_best: bool
) -> list[Experiment]:
    """Queue the grid, run it on DVC's queue, show it, and (promote_best) register the best that passed."""
    keys = check_overrides(sets, raw)
    require_git_commit()
    env = {"MLFLOW_TRACKING_URI": absolute_tracking_uri(tracking_uri(params.register_), Path.cwd())}
    wait_for_idle_workers()
    names = queue(sets)
    log.info("queued %d experiment(s) up to %s: %s", len(names), TARGET, ", ".join(names))
    experiments = collect(run_queue(names, jobs, env), keys)
    chosen = best(experiments)
    print(show(keys))
    print(table(experiments, keys, chosen))
    if failed := [e.name for e in experiments if e.state != "Success"]:
        log.warning("failed experiment(s): %s (`dvc queue logs NAME` says why)", ", ".join(failed))
    if chosen is None:
        if promote_best:
            raise UserError("sweep: no experiment passed the gate: nothing registered")
        log.info("no experiment passed the gate")
    elif promote_best:
        registered = promote(chosen)
        log.info("promoted %s: %s version %s is %s", chosen.name, registered.name, registered.version, registered.alias)
    else:
        log.info(
            "nothing registered; to promote %s: `dvc exp apply %s && dvc repro register`", chosen.name, chosen.name
        )
    return experiments
