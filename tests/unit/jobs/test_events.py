"""A job's events, read back from its flow run's task runs and its workspace's files."""

from __future__ import annotations

from tests.unit.jobs.test_results import HISTORY
from tuneops.config.records import GateCheck, GateVerdict
from tuneops.jobs.events import StageRun, job_events
from tuneops.jobs.results import JobFiles, Timed
from tuneops.jobs.states import FILE_CHECK_TASK


def test_events_are_newest_first_with_stable_ids_and_loss_as_metrics():
    runs = [
        StageRun(FILE_CHECK_TASK, 100.0, 100.5, "COMPLETED"),
        StageRun("ingest", 101.0, 103.0, "COMPLETED"),
        StageRun("train", 104.0, 130.0, "COMPLETED"),
        StageRun("evaluate", 131.0, None, "RUNNING"),
    ]
    gate = GateVerdict(
        verdict="passed", checks=[GateCheck(check="min_accuracy", observed=0.9, threshold=0.4, passed=True)]
    )
    files = JobFiles(log_history=Timed(HISTORY, 120.0), gate=Timed(gate.model_dump(), 135.0))
    events = job_events("ftjob-x", 99.0, runs, files, "running", None, None, None)
    again = job_events("ftjob-x", 99.0, runs, files, "running", None, None, None)
    assert [e.id for e in events] == [e.id for e in again] and len({e.id for e in events}) == len(events)
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert events[-1].message == "Created fine-tuning job" and events[0].message.startswith("Gate passed")
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in metrics] == [20, 15, 10, 5]
    assert metrics[-1].data["train_loss"] == 1.1 and metrics[-2].data["valid_loss"] == 0.8
    assert any(e.message == "Stage train finished in 26.0 s" for e in events)


def test_metrics_events_come_at_the_time_each_step_was_logged_and_a_resumed_stage_has_events_of_its_own():
    logged = [dict(entry, time=200.0 + entry["step"]) for entry in HISTORY]
    runs = [
        StageRun("train", 104.0, 110.0, "FAILED", "train: paused at step 3, its checkpoint saved"),
        StageRun("train", 150.0, 230.0, "COMPLETED"),
    ]
    files = JobFiles(steps=Timed(logged, 999.0))
    events = job_events("ftjob-x", 99.0, runs, files, "running", None, None, None)
    metrics = {e.data["step"]: e.created_at for e in events if e.type == "metrics"}
    assert metrics == {5: 205, 10: 210, 15: 215, 20: 220}
    assert len({e.id for e in events}) == len(events)
    messages = [e.message for e in events]
    assert "Stage train paused at step 3 (checkpoint saved) in 6.0 s" in messages
    assert "Stage train finished in 80.0 s" in messages
    assert not any(e.level == "error" for e in events)


def test_the_job_says_which_rows_train_and_which_the_gate_scores():
    splits = {"splits": {"train": {"rows": 80}, "validation": {"rows": 10}, "test": {"rows": 10}}}
    files = JobFiles(manifest=Timed(splits, 105.0))
    carved = job_events("ftjob-x", 99.0, [], files, "running", None, None, None)
    said = next(e.message for e in carved if e.message.startswith("Training on"))
    assert said.startswith("Training on 80 of the 100 rows of training_file") and "validation_file" in said
    given = job_events("ftjob-x", 99.0, [], files, "running", None, None, None, "file-v", 50)
    said = next(e.message for e in given if e.message.startswith("Training on"))
    assert "all 80 rows" in said and "10 rows of validation_file file-v" in said and "max_train_samples" in said


def test_a_job_restarted_after_its_process_died_says_when_and_why_between_its_two_trainings():
    runs = [StageRun("train", 150.0, None, "RUNNING"), StageRun("train", 300.0, 360.0, "COMPLETED")]
    why = "no heartbeat for 75 s: its process or machine died"
    events = job_events("ftjob-x", 99.0, runs, JobFiles(), "running", None, None, None, restarts=[(290.0, why)])
    messages = [e.message for e in reversed(events)]
    assert messages == [
        "Created fine-tuning job",
        "Stage train started",
        f"The job restarted (1) after its process died ({why}); it resumes from its last complete checkpoint",
        "Stage train started",
        "Stage train finished in 60.0 s",
    ]
    restart = next(e for e in events if e.message.startswith("The job restarted"))
    assert restart.level == "warn" and restart.created_at == 290 and len({e.id for e in events}) == len(events)
