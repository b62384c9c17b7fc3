"""`tuneops status`: the last retrain runs on the Prefect API, and the champion in the MLflow registry."""

from __future__ import annotations

from typing import Annotated

import typer

from tuneops.cli import options
from tuneops.config.params import RegisterParams, load_params
from tuneops.jobs.orchestration import recent_runs
from tuneops.jobs.workspace import crash_dead_runs, workspace_free, workspace_tag


def command(ctx: typer.Context, limit: Annotated[int, typer.Option(metavar="N", help="how many runs")] = 10) -> None:
    """the last retrain runs and their verdicts, and the current champion"""
    if workspace_free():  # no live run holds this workspace: any of its runs still "Running" died with its process
        crash_dead_runs(workspace_tag(), None, "its process died (found by tuneops status)")
    for line in recent_runs(limit):
        print(line)
    print(champion_line(load_params(options.params_path(ctx)).register_))


def champion_line(register: RegisterParams) -> str:
    """The champion's version, test metrics and run, and its model ids on `tuneops serve`; or that there is none."""
    from tuneops.registry.store import champion  # start-up: MLflow

    found = champion(register)
    if found is None:
        return f"{register.alias}: none registered for {register.model_name!r} yet"
    numbers = [
        f"test {name.replace('_', ' ')} {found.metrics[f'test_{name}']:.4f}"
        for name in ("accuracy", "macro_f1", "jaccard", "exact_match", "perplexity")
        if f"test_{name}" in found.metrics
    ]
    return (
        f"{found.alias}: {found.name} v{found.version} ({', '.join(numbers) or 'no test metrics'}, run {found.run_id})"
        f"\nOpenAI-compatible model id (tuneops serve): {found.name}@{found.alias}, or {found.name}:{found.version}"
    )
