"""One retrain run per workspace at a time, and no run left "Running" after its process died.

Two locks, for two reasons. Prefect's global concurrency limit shows in the UI who holds the workspace, but it
lives in one Prefect server (two Prefect homes on one checkout would not exclude each other) and a killed
holder keeps its slot until its lease lapses. An OS file lock on the workspace excludes every run on this
machine whatever server it reports to, and dies with its process; whoever holds it knows that any other run
of this workspace still "Running" is dead, and says so to Prefect (Crashed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from tuneops.config.paths import WORKSPACE_LOCK_PATH

# Seconds a killed run's concurrency slot outlives it (Prefect's default lease is 300; the holder renews it).
LEASE_S = 60.0  # the shortest lease Prefect accepts


def workspace_id() -> str:
    return hashlib.sha1(str(Path.cwd().resolve()).encode()).hexdigest()[:12]


def workspace_lock_name() -> str:
    return f"tuneops-workspace-{workspace_id()}"


def workspace_tag() -> str:
    """Tags every retrain run of this workspace, so the next one can find those that died."""
    return f"workspace:{workspace_id()}"


def holder_path(lock_path: Path) -> Path:
    """Who holds the lock, written beside it: filelock truncates the lock file itself on every attempt to take it."""
    return lock_path.with_name(lock_path.name + ".holder")


def _holder(lock_path: Path) -> str:
    note = holder_path(lock_path)
    text = note.read_text().strip() if note.is_file() else ""
    return f"process {text}" if text else "another process"


@contextlib.contextmanager
def hold_workspace(timeout: float, who: str, lock_path: Path = WORKSPACE_LOCK_PATH) -> Iterator[None]:
    """Hold the workspace's file lock for the block; TimeoutError naming the holder after `timeout` seconds."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, preserve_lock_file=True)
    try:
        lock.acquire(timeout=timeout, poll_interval=1.0)
    except Timeout:
        raise TimeoutError(f"{_holder(lock_path)} holds {lock_path}") from None
    try:
        holder_path(lock_path).write_text(f"{os.getpid()} ({who})\n")
        yield
    finally:
        holder_path(lock_path).unlink(missing_ok=True)
        lock.release()


def workspace_free(lock_path: Path = WORKSPACE_LOCK_PATH) -> bool:
    """True when no live process holds the workspace (so no run of it can be running)."""
    if not lock_path.is_file():
        return True
    lock = FileLock(lock_path, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def tag_run(flow_run_id: str, tag: str, on: bool = True) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(flow_run_id).tags)
        client.update_flow_run(flow_run_id, tags=sorted(tags | {tag} if on else tags - {tag}))


def release_dead_slots(limit_name: str) -> int:
    """Free the workspace limit's slots: call only while holding the lock, which proves their holders dead.

    A killed run's slot would otherwise stay taken until its lease lapses, and only where the server runs the
    service that expires leases. Returns how many slots were freed."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        taken = client.read_global_concurrency_limit_by_name(limit_name).active_slots
        if taken:
            client.update_global_concurrency_limit(limit_name, GlobalConcurrencyLimitUpdate(active_slots=0))
    return taken


@contextlib.contextmanager
def claim_workspace(timeout: float, run_id: str | None, run_name: str) -> Iterator[list[str]]:
    """Hold the workspace for a retrain run: the file lock, then the runs that died holding it marked Crashed
    (yielded by name) and their concurrency slots freed, then this run tagged as the holder. The tag is only
    ever on a run that holds the lock, and comes off before the lock does, so no live run is taken for dead."""
    with hold_workspace(timeout, f"retrain run {run_name}"):
        dead = crash_dead_runs(workspace_tag(), run_id, f"its process died (found by {run_name})")
        release_dead_slots(workspace_lock_name())
        if run_id:
            tag_run(run_id, workspace_tag())
        try:
            yield dead
        finally:
            if run_id:
                tag_run(run_id, workspace_tag(), on=False)


def crash_dead_runs(tag: str, own_id: str | None, why: str) -> list[str]:
    """Mark this workspace's runs still "Running" (or "Pending") as Crashed: call only while holding the lock,
    which proves their processes are gone. Returns their names."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    alive = FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
    runs_here = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]), state=FlowRunFilterState(type=alive))
    crashed = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=runs_here):
            if str(run.id) != own_id:
                client.set_flow_run_state(run.id, Crashed(message=why), force=True)
                crashed.append(run.name)
    return crashed
