"""`tuneops deploy`: a deployment of the retrain flow on a Prefect process work pool, run by its workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneops.cli import options
from tuneops.config.params import load_params
from tuneops.jobs.orchestration import deploy, ensure_pool, require_api


def command(
    ctx: typer.Context,
    pool: Annotated[str, typer.Option(metavar="POOL", help="work pool name, e.g. tuneops", show_default=False)],
    name: Annotated[str, typer.Option(metavar="NAME", help="deployment name")] = "retrain-pool",
    cron: Annotated[
        str | None,
        typer.Option(
            metavar="CRON", help="cron schedule (default: flow.schedule in params.yaml; none when that is null)"
        ),
    ] = None,
) -> None:
    """a deployment of the retrain flow on a Prefect process work pool (run by `prefect worker start`)

    Creates the work pool (type process) when missing and deploys the retrain flow from this checkout on it, with
    flow.schedule from params.yaml (or --cron). Needs PREFECT_API_URL (a Prefect server a worker can reach).

    A worker runs the flow in this checkout's directory: on another machine, the project at the same path, with the
    same Prefect API, DVC remote and MLflow tracking server."""
    require_api()
    params_path = options.params_path(ctx)
    cron = cron or load_params(params_path).flow.schedule
    created = ensure_pool(pool)
    description = f"Retraining ({cron or 'on demand'}) of the dvc.yaml pipeline in {os.getcwd()}"
    parameters = {"params_path": str(params_path)}
    deployment = deploy(Path.cwd(), pool, name, cron=cron, parameters=parameters, description=description)
    where = f"work pool {pool} ({'created' if created else 'exists'}, process)"
    print(f"deployment retrain/{name} ({deployment}) on {where}, schedule {cron or 'none'}", file=sys.stderr)
    print(f"a worker on a machine with this project runs it: prefect worker start --pool {pool}", file=sys.stderr)
