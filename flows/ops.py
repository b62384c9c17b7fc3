"""What `tuneops status` reads: recent retrain runs from Prefect's API, the champion from MLflow."""

from __future__ import annotations

from tasks.config import RegisterParams


def recent_runs(limit: int) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=limit)  # fmt: skip
    if not runs:
        return ["no retrain runs on this Prefect API yet (`tuneops run`)"]
    lines = [f"{'started':<20} {'run':<24} {'state':<10} message"]
    for run in runs:
        started = run.start_time.strftime("%Y-%m-%d %H:%M:%S") if run.start_time else "-"
        lines.append(
            f"{started:<20} {run.name:<24} {run.state_name or '-':<10} {run.state.message if run.state else ''}"
        )
    return lines


def champion_line(register: RegisterParams) -> str:
    from tasks.register import champion

    found = champion(register)
    if found is None:
        return f"{register.alias}: none registered for {register.model_name!r} yet"
    version, metrics = found
    return (f"{register.alias}: {register.model_name} v{version.version} "
            f"(test accuracy {metrics.get('test_accuracy', float('nan')):.4f}, macro-F1 "
            f"{metrics.get('test_macro_f1', float('nan')):.4f}, run {version.run_id})")  # fmt: skip
