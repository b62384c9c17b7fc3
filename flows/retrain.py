"""The Prefect flow `retrain`: every dvc.yaml stage as a task, run through DVC, with a human review of
data quality before training, one run per workspace at a time, and a DVC push after a registration.

    tuneops run                         (once; Prefect's temporary server when no PREFECT_API_URL is set)
    tuneops schedule --cron "0 3 * * *" (a served deployment against `prefect server start`)
    tuneops deploy --pool tuneops       (a deployment on a work pool: `prefect worker start --pool tuneops` runs it)
    POST /v1/fine_tuning/jobs           (a fine-tuning job: a run with `job` set, on the pool; flows/job.py)
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

import tuneops.config.runner  # noqa: F401  (its environment defaults: the temporary Prefect server it starts sends no telemetry)
from flows import reports
from flows.job import run_job
from flows.stages import (
    StageFailed,
    StagePaused,
    StageResult,
    TransientStageFailure,
    dvc_stages,
    failure_reason,
    repro,
    stream,
)
from tuneops.config.errors import UserError
from tuneops.config.params import FlowParams, load_params
from tuneops.config.paths import (
    DATA_DOCS_INDEX,
    DATA_QUALITY_PATH,
    DATA_REVIEW_PATH,
    DATA_VERDICT_PATH,
    GATE_PATH,
    PARAMS_PATH,
    PAUSE_REQUEST_PATH,
    REVIEW_PAGE_PATH,
)
from tuneops.config.records import DataReview, DataVerdict, GateVerdict, QualityRecord, RunSummary
from tuneops.io.files import read_json, write_json
from tuneops.jobs.spec import JobSpec
from tuneops.jobs.workspace import LEASE_S, claim_workspace, workspace_lock_name
from tuneops.quality.suites import review_needed

REVIEW_POLL_S = 2


class ReviewDecision(RunInput):
    """Shown in the Prefect UI when the run pauses for a data-quality review."""

    approve: bool
    comment: str = ""


def _only_transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry ingest on a flaky Hub or network share, never on a mistake in the user's data."""
    try:
        state.result()
    except TransientStageFailure:
        return True
    except Exception:
        return False
    return False


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE, persist_result=False)  # DVC caches; not Prefect
def stage_task(stage: str) -> StageResult:
    return repro(stage, get_run_logger())


def ensure_workspace_limit(name: str) -> None:
    """`concurrency()` silently runs unlimited when its limit does not exist: create it first."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)


def approved_manifest() -> str | None:
    """The data manifest a person last approved in review, if any."""
    return read_json(DATA_REVIEW_PATH, DataReview).approved_manifest if DATA_REVIEW_PATH.is_file() else None


def review(params: FlowParams, records: list[QualityRecord], manifest_sha: str) -> str | None:
    """Pause for a person to read the data-quality report; return why the run must stop, or None."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    log = get_run_logger()
    failed = [r.line() for r in records if not r.passed]
    page, docs = REVIEW_PAGE_PATH.resolve(), DATA_DOCS_INDEX.resolve()
    findings = "Failed warnings:\n" + "\n".join(f"- {f}" for f in failed) if failed else "All checks passed."
    links = f"Review page (works offline): file://{page}\nGX Data Docs (need the internet): file://{docs}"
    note = f"Review the data before training.\n{links}\n\n{findings}"
    log.warning("paused for data review (timeout %d s); approve or reject in the Prefect UI", params.review_timeout)
    try:
        form = ReviewDecision.with_initial_data(description=note, approve=False)
        decision = pause_flow_run(wait_for_input=form, timeout=params.review_timeout, poll_interval=REVIEW_POLL_S)
    except FlowPauseTimeout:
        return f"data review timed out after {params.review_timeout} s: nothing trained"
    approved = manifest_sha if decision.approve else None
    record = DataReview(approved_manifest=approved, approve=decision.approve, comment=decision.comment, at=time.time())
    write_json(DATA_REVIEW_PATH, record)
    if not decision.approve:
        return f"data rejected in review{': ' + decision.comment if decision.comment else ''}: nothing trained"
    log.info("data approved in review%s", f": {decision.comment}" if decision.comment else "")
    return None


def push(log: logging.Logger) -> str | None:
    """`dvc push` of every DVC-tracked output; return the reason it failed, or None."""
    code, lines = stream(["dvc", "push"], "push", log)
    return None if code == 0 else failure_reason("push", lines)


def run_stage(stage: str, params: FlowParams) -> dict:
    if stage == "ingest":  # the only stage that reaches out (Hub, network shares)
        retried = stage_task.with_options(
            retries=params.ingest_retries,
            retry_condition_fn=_only_transient,
            retry_delay_seconds=params.ingest_retry_delay_seconds,
        )
        return retried(stage)
    return stage_task(stage)


AFTER_STAGE = {"validate": [reports.data_quality], "evaluate": [reports.metrics, reports.gate]}


def run_pipeline(params: FlowParams) -> Any:
    log = get_run_logger()
    summary = RunSummary()
    for stage in dvc_stages():
        try:
            result = run_stage(stage, params)
        except StagePaused as exc:
            suspend(str(exc), log)  # the flow run leaves its worker here; resumed, it runs from the top
            raise
        except StageFailed as exc:
            log.error("%s", exc)
            return Failed(message=str(exc), data=summary)
        finally:  # a failed stage's report (the data quality that stopped it, say) is published too
            for publish in AFTER_STAGE.get(stage, []):
                publish()
        getattr(summary, result.status).append(stage)
        if stage == "validate":
            records = read_json(DATA_QUALITY_PATH, list[QualityRecord])
            manifest = read_json(DATA_VERDICT_PATH, DataVerdict).manifest_sha256
            ask = review_needed(params.review_data, records, manifest, approved_manifest())
            stop = review(params, records, manifest) if ask else None
            if stop:
                return Failed(message=stop, data=summary)
    return finish(summary, params, log)


def suspend(why: str, log: logging.Logger) -> None:
    """Suspend this flow run (a job's pause: training saved a checkpoint and stopped). Prefect's suspend needs a key
    new to each pause: the pause request's own, which the resume route deletes."""
    from prefect.flow_runs import suspend_flow_run

    key = PAUSE_REQUEST_PATH.read_text().strip() if PAUSE_REQUEST_PATH.is_file() else None
    log.warning("%s: suspending the job until it is resumed", why)
    suspend_flow_run(key=key)


def finish(summary: RunSummary, params: FlowParams, log: logging.Logger) -> Any:
    summary.verdict = read_json(GATE_PATH, GateVerdict).verdict if GATE_PATH.is_file() else None
    if "register" not in summary.ran:
        message = "nothing changed: no stage ran" if not summary.ran else "no new registration (register skipped)"
        log.info("%s; summary: %s", message, summary)
        return Completed(message=message, data=summary)
    record = reports.registration()
    summary.registered = record
    message = f"registered {record.name} v{record.version} as {record.alias}"
    if params.push:
        failed = push(log)
        if failed:
            why = f"{message}, but dvc push failed: {failed} (the registration stands; run `dvc push` again)"
            return Failed(message=why, data=summary)
        message += "; data and model pushed to the DVC remote"
    log.info("%s; summary: %s", message, summary)
    return Completed(message=message, data=summary)


@flow(name="retrain", persist_result=False)
def retrain(params_path: str = str(PARAMS_PATH), job: JobSpec | None = None) -> Any:
    """Run the dvc.yaml pipeline; DVC's cache decides which stages rerun. With `job` (a fine-tuning job from the
    OpenAI-compatible API), in the job's own workspace with its files and hyperparameters (flows/job.py)."""
    if job is not None:
        return run_job(job, retrain_here)
    return retrain_here(params_path)


def retrain_here(params_path: str) -> Any:
    """The pipeline in the current directory, holding it for the whole run."""
    log = get_run_logger()
    try:
        params = load_params(Path(params_path)).flow
    except UserError as exc:
        return Failed(message=str(exc))
    lock = workspace_lock_name()
    ensure_workspace_limit(lock)
    log.info("waiting for workspace %s (another retrain run may hold it)", Path.cwd())
    try:
        with claim_workspace(params.workspace_lock_timeout, flow_run.get_id(), flow_run.get_name()) as dead:
            if dead:
                log.warning("marked crashed: %s (still 'Running' though no process held the workspace)", dead)
            # a Prefect server keeps leases in memory: restarted, it answers a renewal 410 Gone, which would end the
            # run (found by tests/reliability/test_job_drills.py); the file lock held above still excludes others
            limit = {
                "timeout_seconds": params.workspace_lock_timeout,
                "lease_duration": LEASE_S,
                "strict": True,
                "raise_on_lease_renewal_failure": False,
            }
            with concurrency(lock, occupy=1, **limit):
                return run_pipeline(params)
    except TimeoutError as exc:
        held = f"{params.workspace_lock_timeout:.0f} s (flow.workspace_lock_timeout)"
        return Failed(message=f"another retrain run held workspace {Path.cwd()} for over {held} ({exc}); nothing ran")


if __name__ == "__main__":
    state = retrain(return_state=True)
    print(state.message, file=sys.stderr)
    sys.exit(0 if state.is_completed() else 1)
