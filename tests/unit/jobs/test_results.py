"""A job's result file, checkpoint metrics and trained tokens, read back from its workspace's files."""

from __future__ import annotations

import csv
import io

from tuneops.jobs.results import RESULT_COLUMNS, checkpoint_metrics, results_csv, trained_tokens

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


def test_trained_tokens_are_train_tokens_times_epochs():
    report = {"splits": {"train": {"rows": 100, "mean": 12.5}}}
    assert trained_tokens(report, 2) == 2500 and trained_tokens(None, 2) is None
