"""`tuneops schedule`: this process serves a scheduled deployment of the retrain flow until stopped."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import options
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.jobs.orchestration import load_retrain


def command(
    ctx: typer.Context,
    cron: Annotated[
        str | None,
        typer.Option(metavar="CRON", help="cron schedule, e.g. '0 3 * * *' (default: flow.schedule in params.yaml)"),
    ] = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="deployment name")] = "retrain-scheduled",
) -> None:
    """serve a scheduled deployment of the retrain flow (blocks; Ctrl-C stops)"""
    params_path = options.params_path(ctx)
    cron = cron or load_params(params_path).flow.schedule
    if not cron:
        raise UserError("no schedule: pass --cron or set flow.schedule in params.yaml")
    if not os.environ.get("PREFECT_API_URL"):
        hint = "start `prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`"
        print(
            f"warning: no PREFECT_API_URL, so this schedule lives only as long as this process; {hint}", file=sys.stderr
        )
    retrain = load_retrain(Path.cwd())
    description = f"Scheduled retraining ({cron}) of the dvc.yaml pipeline in {os.getcwd()}"
    retrain.serve(name=name, cron=cron, parameters={"params_path": str(params_path)}, description=description)
