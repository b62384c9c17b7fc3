"""Run one `dvc.yaml` stage through DVC, streaming its output into the Prefect run's logs as it happens.

DVC decides whether the stage runs (its cache); we only report what it decided. Nothing here knows what a
stage does: the list and the commands live in dvc.yaml alone.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from tuneops.config.errors import EXIT_PAUSED, EXIT_TRANSIENT
from tuneops.config.paths import DVC_PROCESS_LOCK_PATH, DVC_YAML_PATH

PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar: log it now and then, not at every redraw
PROGRESS_EVERY_S = 5.0
PAUSED_AT = re.compile(r"paused at step (\d+)")  # the train stage's line when it stops for a pause


class StageFailed(Exception):
    """A stage exited non-zero; the message is its own one-line reason."""


class TransientStageFailure(StageFailed):
    """The stage said its failure is transient (exit 75): worth a retry."""


class StagePaused(StageFailed):
    """Training stopped for a pause that was asked for (exit 76), its checkpoint saved: not a failure."""


@dataclass
class StageResult:
    stage: str
    status: Literal["ran", "skipped"]
    seconds: float


def dvc_stages(dvc_yaml: Path = DVC_YAML_PATH) -> list[str]:
    """The stage names, in the order dvc.yaml lists them (which is also their dependency order)."""
    return list((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}))


def failure_reason(stage: str, lines: list[str], cwd: Path = Path(".")) -> str:
    """The stage's own `error: ...` line when it printed one, else DVC's."""
    ours = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if ours:
        return ours[-1]
    dvc = [i for i, line in enumerate(lines) if line.startswith("ERROR: ")]
    if not dvc:
        return lines[-1] if lines else f"{stage} failed"
    if "Unable to acquire lock" in lines[dvc[-1]]:
        return dvc_lock_holder(cwd / DVC_PROCESS_LOCK_PATH)
    return dvc_error(lines[dvc[-1] :])


def dvc_error(lines: list[str]) -> str:
    """DVC's ERROR line with the lines it continues on: "... is being blocked by:" is followed by the
    "(PID 123): dvc repro ..." lines and DVC's advice, which are the part that says what to do."""
    message = [lines[0].removeprefix("ERROR: ")]
    for line in lines[1:]:
        if not (line.startswith((" ", "\t")) or line.startswith("If there are no processes")):
            break
        message.append(line.strip())
    return " ".join(message)


def dvc_lock_holder(lock_file: Path) -> str:
    """Who holds DVC's lock: DVC only says "another DVC process", but its lock file holds that process's PID."""
    pid = lock_file.read_text().strip() if lock_file.is_file() else ""
    who = f"DVC process {pid} (`ps -p {pid}` shows it)" if pid.isdigit() else "another DVC process"
    return f"the workspace is locked by {who}: another `dvc` command or retrain run; try again when it ends"


def stream(args: list[str], label: str, log: logging.Logger, cwd: Path = Path(".")) -> tuple[int, list[str]]:
    """Run `python -m <args>`, logging each output line as it comes; return the exit code and the lines."""
    # text mode turns tqdm's \r redraws into lines
    command = [sys.executable, "-m", *args]
    proc = subprocess.Popen(command, cwd=cwd, text=True, bufsize=1, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    last_progress = 0.0
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line:
            continue
        if PROGRESS.search(line):
            if time.monotonic() - last_progress < PROGRESS_EVERY_S:
                continue
            last_progress = time.monotonic()
        lines.append(line)
        log.info("%s | %s", label, line)
    return proc.wait(), lines


def repro(stage: str, log: logging.Logger, cwd: Path = Path(".")) -> StageResult:
    """`dvc repro --single-item <stage>`; raises StageFailed with the stage's reason when it fails."""
    start = time.perf_counter()
    code, lines = stream(["dvc", "repro", "--single-item", stage], stage, log, cwd)
    seconds = round(time.perf_counter() - start, 2)
    if code != 0:
        said = "\n".join(lines)
        if f"exited with {EXIT_PAUSED}" in said:
            step = PAUSED_AT.search(said)
            raise StagePaused(f"{stage}: paused{f' at step {step[1]}' if step else ''}, its checkpoint saved")
        transient = f"exited with {EXIT_TRANSIENT}" in said
        raise (TransientStageFailure if transient else StageFailed)(f"{stage}: {failure_reason(stage, lines, cwd)}")
    skipped = any(f"Stage '{stage}' didn't change, skipping" in line for line in lines)
    return StageResult(stage, "skipped" if skipped else "ran", seconds)
