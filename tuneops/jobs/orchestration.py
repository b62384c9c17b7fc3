"""The retrain flow on a Prefect work pool, through Prefect's client: deployments, job submission, reading and
cancelling runs. The library never imports `flows/`: a deployment names the flow by its entrypoint in the checkout.

    tuneops deploy --pool tuneops          a process work pool (created if missing) and a deployment of retrain
                                           on it, with params.yaml's flow.schedule
    prefect worker start --pool tuneops    on any machine with the project: runs what the pool holds
    tuneops up                             one machine: a Prefect server (when PREFECT_API_URL is unset), a worker
                                           and `tuneops serve`, stopped together

Fine-tuning jobs are flow runs of a second deployment of the same flow, `retrain/fine-tuning-jobs`, on the same
pool and without a schedule: the API submits one run per job, with the job as a flow parameter (a client's
Idempotency-Key as the run's Prefect idempotency key: one run per key, however often the request is retried).

A job outlives the machine that runs it, by Prefect's own means (its "zombie flow run" recipe): the deployment's
runs send a heartbeat event every HEARTBEAT_S; one automation marks a job's run that stopped sending them
Crashed, named UNRESPONSIVE; a second puts a crashed job's run back on the pool (Scheduled, named RESTART_STATE),
where the next worker that polls runs it from the top: DVC skips the stages done and training resumes from its last
complete checkpoint (flows/job.py gives up after MAX_RESTARTS, saying so).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import JsonValue

from tuneops.config.errors import UserError
from tuneops.jobs.spec import JOB_TAG
from tuneops.jobs.states import MAX_RUNS, RESTART_STATE, SUSPENDED, UNRESPONSIVE

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun, TaskRun
    from prefect.events.schemas.automations import AutomationCore

log = logging.getLogger("tuneops.deploy")

ENTRYPOINT = "flows/retrain.py:retrain"
FLOW_NAME = "retrain"
JOBS_DEPLOYMENT = "fine-tuning-jobs"
DEFAULT_POOL = "tuneops"
PREFECT_PORT = 4200
HEARTBEAT_S = 30  # Prefect's shortest heartbeat interval (flows.heartbeat_frequency >= 30)
# A run is taken for dead after two missed heartbeats and a 15 s margin: a loaded 2-core machine delays a beat by
# seconds, never by a whole interval, and a live run taken for dead would train twice.
MISSED_HEARTBEATS_S = 2 * HEARTBEAT_S + 15
# Ends of a run's heartbeats that are no death: it finished, was cancelled, paused, suspended or already restarted.
HEARTBEATS_END = ("Completed", "Failed", "Cancelled", "Cancelling", "Crashed", "Paused", "Suspended", UNRESPONSIVE)


def load_retrain(root: Path) -> Flow:
    """The retrain flow from the checkout at `root`, by its entrypoint: what `tuneops run` and `schedule` call."""
    from prefect.flows import load_flow_from_entrypoint

    path, name = ENTRYPOINT.split(":")
    script = root.resolve() / path
    if not script.is_file():  # flows/ is not installed: it runs from the project's checkout
        raise UserError(f"no {path} in {root.resolve()}: run this from the project's checkout (where dvc.yaml is)")
    return load_flow_from_entrypoint(f"{script}:{name}")


def ensure_pool(name: str) -> bool:
    """A process work pool of this name; True when it had to be created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            except ObjectAlreadyExists:  # created meanwhile by another caller
                return False
            return True
    if pool.type != "process":
        raise UserError(f"work pool {name!r} is of type {pool.type!r}; tuneops deploys to a process pool")
    return False


def deploy(
    root: Path,
    pool: str,
    name: str,
    cron: str | None = None,
    parameters: dict[str, JsonValue] | None = None,
    description: str | None = None,
    job_variables: dict[str, JsonValue] | None = None,
) -> uuid.UUID:
    """A deployment of the retrain flow from this checkout on `pool`: a worker runs it in the checkout's
    directory (a second machine needs the project at the same path)."""
    from prefect import Flow

    ensure_pool(pool)
    source = Flow.from_source(source=str(root.resolve()), entrypoint=ENTRYPOINT)
    return source.deploy(
        name=name,
        work_pool_name=pool,
        cron=cron,
        parameters=parameters or {},
        description=description,
        job_variables=job_variables,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )


class JobDeployment:
    """The unscheduled deployment jobs are submitted to, made once per process on first use."""

    def __init__(self, root: Path, pool: str) -> None:
        self.root, self.pool = root, pool
        self._ready = False

    def ensure(self) -> None:
        if not self._ready:
            description = f"Fine-tuning jobs from the OpenAI-compatible API of {self.root}"
            deploy(
                self.root,
                self.pool,
                JOBS_DEPLOYMENT,
                parameters={"params_path": "params.yaml"},
                description=description,
                job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}},
            )
            for automation in restart_automations():
                ensure_automation(automation)
            self._ready = True

    def submit(self, job: dict[str, JsonValue], idempotency_key: str | None = None, *tags: str) -> FlowRun:
        """A flow run of the jobs deployment for this job; returns the FlowRun at once (it runs on a worker). With an
        idempotency key, the run an earlier request with that key made, if any (Prefect keeps one run per key)."""
        from prefect.deployments import run_deployment

        self.ensure()
        parameters = {"params_path": "params.yaml", "job": job}
        key = run_idempotency_key(idempotency_key) if idempotency_key else None
        return run_deployment(
            f"{FLOW_NAME}/{JOBS_DEPLOYMENT}",
            parameters=parameters,
            timeout=0,
            tags=[JOB_TAG, *tags],
            idempotency_key=key,
            as_subflow=False,
        )


def run_idempotency_key(client_key: str) -> str:
    """The flow run's idempotency key for a client's: hashed (any length or bytes a client sends fit Prefect's
    column) and prefixed, so a job's key never meets a key something else gave a retrain run."""
    return f"tuneops-job:{hashlib.sha256(client_key.encode()).hexdigest()}"


def restart_automations() -> list[AutomationCore]:
    """Prefect's zombie-run recipe for job runs: no heartbeat for MISSED_HEARTBEATS_S after one was seen, and no
    end of the run either, marks it Crashed named UNRESPONSIVE (a run already ended cannot be marked Crashed: Prefect
    refuses to leave a final state for it). That state, or a crash Prefect saw itself (a flow run whose worker died
    exits, saying so), puts a job's run that had started, up to MAX_RUNS, back on its pool as RESTART_STATE."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    runs = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    jobs = ResourceSpecification({"prefect.resource.id": f"prefect.tag.{JOB_TAG}", "prefect.resource.role": "tag"})
    silent = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{name}" for name in HEARTBEATS_END)},
        match=runs,
        match_related=jobs,
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=MISSED_HEARTBEATS_S),
    )
    why = f"no heartbeat for {MISSED_HEARTBEATS_S} s: its process or machine died"
    again = "its process died; the next worker to poll resumes it from its last complete checkpoint"
    crashed = AutomationCore(
        name="tuneops: fine-tuning jobs that stopped sending heartbeats are crashed",
        trigger=silent,
        actions=[ChangeFlowRunState(state=StateType.CRASHED, name=UNRESPONSIVE, message=why)],
    )
    restartable = ResourceSpecification(
        {"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": [str(n) for n in range(1, MAX_RUNS + 1)]}
    )
    restart = AutomationCore(
        name="tuneops: crashed fine-tuning jobs go back on their pool",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{UNRESPONSIVE}", "prefect.flow-run.Crashed"},
            match=restartable,
            match_related=jobs,
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name=RESTART_STATE,
                message=again,
            )
        ],
    )
    return [crashed, restart]


def ensure_automation(automation: AutomationCore) -> None:
    """This automation, by its name: created, or updated where an older tuneops made it otherwise."""
    from prefect import get_client
    from prefect.events.schemas.automations import AutomationCore

    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(automation.name)
        if not found:
            client.create_automation(automation)
            return
        wanted = automation.model_dump(mode="json")
        if AutomationCore.model_validate(found[0].model_dump()).model_dump(mode="json") != wanted:
            client.update_automation(found[0].id, automation)


def restarts(run_id: uuid.UUID) -> list[tuple[float, str]]:
    """When the job's run was put back on its pool after its process died, and why: the crash's own message (oldest
    first)."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)
    return [
        (state.timestamp.timestamp(), (before.message or before.name or "crashed") if before else "crashed")
        for before, state in zip([None, *states], states, strict=False)
        if state.name == RESTART_STATE
    ]


def require_api() -> str:
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        raise UserError(
            "no PREFECT_API_URL: jobs and deployments need a Prefect server a worker can reach "
            "(`prefect server start`, then export PREFECT_API_URL=http://127.0.0.1:4200/api; `tuneops up` does both)"
        )
    return url


def read_run(run_id: uuid.UUID) -> FlowRun | None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
    return run if JOB_TAG in run.tags else None


def job_runs() -> list[FlowRun]:
    """Every job's flow run, newest first (created time, then id: a stable order to page through)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    jobs = FlowRunFilter(tags=FlowRunFilterTags(all_=[JOB_TAG]))
    found: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            chunk = client.read_flow_runs(flow_run_filter=jobs, limit=200, offset=len(found))
            found += chunk
            if len(chunk) < 200:
                break
    return sorted(found, key=lambda r: (r.created, r.id.hex), reverse=True)


def task_runs(run_id: uuid.UUID) -> list[TaskRun]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))


def cancel_run(run_id: uuid.UUID) -> None:
    """Cancel through Prefect: a run no worker has started is Cancelled at once; a running one is set Cancelling,
    and its worker kills the flow run's process group (the DVC stage and its training process with it)."""
    from prefect import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if run.state is None or run.state.is_final():
            return
        not_started = run.state.is_scheduled() or (run.state.is_pending() and not run.infrastructure_pid)
        suspended = run.state.is_paused() and run.state_name == SUSPENDED  # a paused job: no process to kill
        client.set_flow_run_state(run_id, Cancelled() if not_started or suspended else Cancelling(), force=True)


def resume_run(run_id: uuid.UUID) -> None:
    """Resume a suspended flow run: Prefect schedules it again and a worker runs it from the top; DVC skips the
    stages already done and training resumes from the checkpoint the pause saved."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run_id)


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
