"""`tuneops run`: the retrain flow once, in this process (Prefect over the DVC stages)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from tuneops.cli import options
from tuneops.jobs.orchestration import load_retrain


def command(ctx: typer.Context) -> None:
    """run the retrain flow once (Prefect over the DVC stages)

    Loads the flow from its entrypoint in this checkout (flows/ is not installed: it runs from here) and runs it
    once; exit status 1 when the run does not complete."""
    retrain = load_retrain(Path.cwd())
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "no PREFECT_API_URL: using Prefect's temporary server (runs are not kept after this command)",
            file=sys.stderr,
        )
    state = retrain(params_path=str(options.params_path(ctx)), return_state=True)
    print(f"retrain: {state.name}: {state.message}", file=sys.stderr)
    if not state.is_completed():
        raise SystemExit(1)
