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

from tuneops.errors import EXIT_TRANSIENT
from tuneops.paths import DVC_YAML_PATH

PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar: log it now and then, not at every redraw
PROGRESS_EVERY_S = 5.0


class StageFailed(Exception):
    """A stage exited non-zero; the message is its own one-line reason."""


class TransientStageFailure(StageFailed):
    """The stage said its failure is transient (exit 75): worth a retry."""


@dataclass
class StageResult:
    stage: str
    status: Literal["ran", "skipped"]
    seconds: float


def dvc_stages(dvc_yaml: Path = DVC_YAML_PATH) -> list[str]:
    """The stage names, in the order dvc.yaml lists them (which is also their dependency order)."""
    return list((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}))


def failure_reason(stage: str, lines: list[str]) -> str:
    """The stage's own `error: ...` line when it printed one, else DVC's."""
    ours = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if ours:
        return ours[-1]
    dvc = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    if any("Unable to acquire lock" in line for line in dvc):
        return "the workspace is locked by another DVC process (another `dvc repro` or retrain run); try again later"
    return dvc[-1] if dvc else (lines[-1] if lines else f"stage {stage} failed")


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
        transient = f"exited with {EXIT_TRANSIENT}" in "\n".join(lines)
        raise (TransientStageFailure if transient else StageFailed)(f"{stage}: {failure_reason(stage, lines)}")
    skipped = any(f"Stage '{stage}' didn't change, skipping" in line for line in lines)
    return StageResult(stage, "skipped" if skipped else "ran", seconds)
