"""The other decisions, pure: resume or restart training, ask a person to review data, lineage tags."""

from __future__ import annotations

import json

from tests.conftest import metrics
from tuneops.config.records import QualityRecord
from tuneops.registry.store import lineage_tags, metric_numbers
from tuneops.training.trainer import CheckpointMarker, epoch_history, resume_decision

CHECKPOINTS = ["models/checkpoints/checkpoint-17", "models/checkpoints/checkpoint-34"]


def test_an_interrupted_run_with_the_same_inputs_resumes_from_its_last_checkpoint():
    resume, why = resume_decision(CheckpointMarker(fingerprint="abc"), "abc", CHECKPOINTS)
    assert resume and why.startswith("resuming from models/checkpoints/checkpoint-34")


def test_changed_inputs_a_finished_run_or_no_checkpoint_start_fresh():
    assert resume_decision(CheckpointMarker(fingerprint="abc"), "xyz", CHECKPOINTS) == (
        False,
        "starting fresh: data or params changed since models/checkpoints/checkpoint-34 was saved",
    )
    resume, why = resume_decision(CheckpointMarker(fingerprint="abc", completed=True), "abc", CHECKPOINTS)
    assert not resume and "the last run finished" in why
    assert resume_decision(None, "abc", CHECKPOINTS)[0] is False
    assert resume_decision(CheckpointMarker(fingerprint="abc"), "abc", [])[0] is False


def record(passed: bool) -> QualityRecord:
    return QualityRecord(
        check="mojibake_rate",
        suite="train",
        split="train",
        severity="warning",
        passed=passed,
        observed=0.01,
        threshold=0.001,
        examples=[],
    )


def test_review_is_asked_on_warnings_by_default_and_never_twice_for_the_same_data():
    from tuneops.quality.suites import review_needed

    clean, warned = [record(True)], [record(False)]
    assert not review_needed("on_warning", clean, "sha1", None)
    assert review_needed("on_warning", warned, "sha1", None)
    assert not review_needed("on_warning", warned, "sha1", approved_sha="sha1")  # approved before
    assert review_needed("on_warning", warned, "sha2", approved_sha="sha1")  # new data: ask again
    assert review_needed("always", clean, "sha1", None)
    assert not review_needed("never", warned, "sha1", None)


def test_lineage_tags_name_the_commit_the_data_and_every_stage_output():
    lock = {"stages": {"train": {"outs": [{"path": "models/candidate", "md5": "d41d.dir"}]}, "ingest": {}}}
    tags = lineage_tags("0a1b2c", False, "f00d", lock)
    assert tags["git_commit"] == "0a1b2c" and tags["git_dirty"] == "False"
    assert tags["data_manifest_sha256"] == "f00d"
    assert json.loads(tags["dvc.train.outs"]) == {"models/candidate": "d41d.dir"}
    assert json.loads(tags["dvc.ingest.outs"]) == {}


def test_registered_metrics_are_every_score_but_the_confusion_matrix():
    numbers = metric_numbers(metrics())
    assert numbers["test_accuracy"] == 0.7 and numbers["gap_accuracy"] == 0.75 - 0.7
    assert "test_per_class_positive_f1" in numbers and not [k for k in numbers if "confusion" in k]


def test_epoch_history_averages_the_train_loss_between_evaluations():
    logged = [
        {"loss": 1.0, "epoch": 0.5},
        {"loss": 0.8, "epoch": 1.0},
        {"eval_loss": 0.7, "eval_accuracy": 0.6, "eval_macro_f1": 0.5, "epoch": 1.0},
        {"eval_loss": 0.6, "eval_accuracy": 0.7, "eval_macro_f1": 0.6, "epoch": 2.0},
    ]
    rows = epoch_history(logged)
    assert [(r.epoch, r.train_loss, r.validation_accuracy) for r in rows] == [(1.0, 0.9, 0.6), (2.0, None, 0.7)]
