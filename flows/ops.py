"""What `tuneops status` reads: recent retrain runs from Prefect's API, the champion from MLflow."""

from __future__ import annotations

from tuneops.config.params import RegisterParams


def recent_runs(limit: int) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    retrain_only = FlowFilter(name=FlowFilterName(any_=["retrain"]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=retrain_only, sort=FlowRunSort.START_TIME_DESC, limit=limit)
    if not runs:
        return ["no retrain runs on this Prefect API yet (`tuneops run`)"]
    lines = [f"{'started':<20} {'run':<24} {'state':<10} message"]
    for run in runs:
        started = run.start_time.strftime("%Y-%m-%d %H:%M:%S") if run.start_time else "-"
        message = run.state.message if run.state else ""
        lines.append(f"{started:<20} {run.name:<24} {run.state_name or '-':<10} {message}")
    return lines


def champion_line(register: RegisterParams) -> str:
    from tuneops.registry.store import champion

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
