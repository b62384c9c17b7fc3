"""A job's events, checkpoints, result file and trained tokens, read back from its workspace's files."""

from __future__ import annotations

import csv
import io

from tuneops.config.records import GateCheck, GateVerdict
from tuneops.jobs.events import (
    RESULT_COLUMNS,
    JobFiles,
    StageRun,
    Timed,
    checkpoint_metrics,
    job_events,
    results_csv,
    trained_tokens,
)
from tuneops.jobs.states import FILE_CHECK_TASK

# The Trainer's log_history as trainer_state.json holds it: a loss every logging_steps, an evaluation per epoch.
HISTORY = [
    {"step": 5, "epoch": 0.5, "loss": 1.1, "learning_rate": 1e-3},
    {"step": 10, "epoch": 1.0, "loss": 0.9, "learning_rate": 9e-4},
    {"step": 10, "epoch": 1.0, "eval_loss": 0.8, "eval_accuracy": 0.6},
    {"step": 15, "epoch": 1.5, "loss": 0.7},
    {"step": 20, "epoch": 2.0, "loss": 0.6},
    {"step": 20, "epoch": 2.0, "eval_loss": 0.65, "eval_accuracy": 0.7},
    {"step": 20, "epoch": 2.0, "train_runtime": 12.0, "train_loss": 0.8},
]


def test_the_result_file_has_openais_columns_one_row_per_logged_step():
    text = results_csv(HISTORY)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (
        list(rows[0])
        == RESULT_COLUMNS
        == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    )
    assert [r["step"] for r in rows] == ["5", "10", "15", "20"]
    ten = rows[1]
    assert (ten["train_loss"], ten["valid_loss"], ten["valid_mean_token_accuracy"]) == ("0.9", "0.8", "0.6")
    assert all(r["train_accuracy"] == "" for r in rows)  # never measured: left empty, not made up
    assert rows[0]["valid_loss"] == ""


def test_a_checkpoint_carries_the_loss_at_its_step():
    metrics = checkpoint_metrics(10, HISTORY)
    assert (metrics.train_loss, metrics.valid_loss, metrics.valid_mean_token_accuracy) == (0.9, 0.8, 0.6)
    assert checkpoint_metrics(15, HISTORY).valid_loss is None


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


def test_trained_tokens_are_train_tokens_times_epochs():
    report = {"splits": {"train": {"rows": 100, "mean": 12.5}}}
    assert trained_tokens(report, 2) == 2500 and trained_tokens(None, 2) is None


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
