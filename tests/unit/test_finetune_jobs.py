"""Fine-tuning jobs' pure parts: ids, hyperparameters onto params, Prefect states onto OpenAI's statuses, pages,
events and the result file from the Trainer's log history; and the file store's ids and checks."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.config.records import GateCheck, GateVerdict
from tuneops.jobs.file_store import FileStore, file_id, is_file_id
from tuneops.jobs.finetuning import (
    FILE_CHECK_TASK,
    RESULT_COLUMNS,
    Hyperparameters,
    JobFiles,
    JobRequest,
    StageRun,
    Timed,
    absolute_tracking_uri,
    apply_overrides,
    checkpoint_metrics,
    fine_tuned_model,
    flow_run_id,
    job_error,
    job_events,
    job_id,
    job_overrides,
    job_status,
    page,
    resolve,
    results_csv,
    trained_tokens,
)

PARAMS = load_params(ROOT / "params.yaml")

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


def request(**fields) -> JobRequest:
    return JobRequest(model=PARAMS.model.name, training_file="file-" + "a" * 24, **fields)


def test_a_job_id_names_its_flow_run_and_nothing_else_parses_as_one():
    run = uuid.uuid4()
    assert job_id(run).startswith("ftjob-") and flow_run_id(job_id(run)) == run
    assert flow_run_id("ftjob-nothex") is None and flow_run_id(str(run)) is None


def test_a_file_id_is_its_content_hash():
    assert file_id(b"same") == file_id(b"same") != file_id(b"other")
    assert is_file_id(file_id(b"x")) and not is_file_id("file-../../etc") and not is_file_id("x")


def test_auto_is_params_yaml_and_numbers_map_onto_training_arguments():
    args = PARAMS.train.args
    auto = resolve(Hyperparameters(), args)
    assert (auto.n_epochs, auto.batch_size, auto.learning_rate_multiplier) == (
        round(args.num_train_epochs),
        args.per_device_train_batch_size,
        1.0,
    )
    over = job_overrides(
        request(hyperparameters={"n_epochs": 4, "batch_size": 8, "learning_rate_multiplier": 2.0}, seed=7),
        PARAMS,
        "sqlite:////x/mlflow.db",
    )
    assert over["train.args.learning_rate"] == pytest.approx(args.learning_rate * 2.0)
    assert over["train.args.num_train_epochs"] == 4.0 and over["train.args.max_steps"] == -1
    assert over["train.args.per_device_train_batch_size"] == 8
    assert over["train.args.seed"] == over["data.seed"] == 7
    assert over["flow.review_data"] == "never" and over["register.tracking_uri"] == "sqlite:////x/mlflow.db"
    assert "model.name" not in over and "train.args.max_steps" not in job_overrides(request(), PARAMS, "u")
    assert job_overrides(request().model_copy(update={"model": "other"}), PARAMS, "u")["model.name"] == "other"
    local = PARAMS.model_copy(update={"model": PARAMS.model.model_copy(update={"name": "../models/tiny-gpt2"})})
    assert "model.name" not in job_overrides(request().model_copy(update={"model": "tiny-gpt2"}), local, "u")


def test_hyperparameters_under_method_or_top_level_and_never_two_different_ones():
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    assert request(method=method).requested().n_epochs == 2
    assert request(hyperparameters={"n_epochs": 3}).requested().n_epochs == 3
    with pytest.raises(UserError, match="differently"):
        request(method=method, hyperparameters={"n_epochs": 3}).requested()


@pytest.mark.parametrize(
    "fields",
    [
        {"hyperparameters": {"n_epochs": 0}},
        {"hyperparameters": {"learning_rate_multiplier": -1.0}},
        {"hyperparameters": {"batch_size": "big"}},
        {"hyperparameters": {"epochs": 2}},
        {"suffix": "a:b"},
        {"suffix": "x" * 65},
        {"unknown": 1},
    ],
)
def test_a_bad_request_is_refused(fields):
    with pytest.raises(ValidationError):
        request(**fields)


def test_overrides_replace_existing_keys_only():
    raw = {"train": {"args": {"learning_rate": 1.0}}}
    assert apply_overrides(raw, {"train.args.learning_rate": 2.0})["train"]["args"]["learning_rate"] == 2.0
    with pytest.raises(UserError, match="no key 'lr'"):
        apply_overrides(raw, {"train.args.lr": 2.0})
    with pytest.raises(UserError, match="no section 'nope'"):
        apply_overrides(raw, {"nope.x": 1})


@pytest.mark.parametrize(
    ("state", "started", "registered", "status"),
    [
        ("SCHEDULED", False, False, "queued"),
        ("PENDING", False, False, "queued"),
        (None, False, False, "queued"),
        ("RUNNING", False, False, "validating_files"),
        ("RUNNING", True, False, "running"),
        ("PAUSED", True, False, "running"),
        ("COMPLETED", True, True, "succeeded"),
        ("COMPLETED", True, False, "failed"),
        ("FAILED", True, True, "failed"),
        ("CRASHED", True, False, "failed"),
        ("CANCELLING", True, False, "cancelled"),
        ("CANCELLED", True, False, "cancelled"),
    ],
)
def test_prefect_states_map_onto_openai_statuses(state, started, registered, status):
    assert job_status(state, started, registered) == status


def test_a_failed_job_says_why_in_openais_error_shape():
    gate = GateVerdict(
        verdict="failed",
        checks=[
            GateCheck(check="min_accuracy", observed=0.3, threshold=0.45, passed=False),
            GateCheck(check="max_overfit_gap", observed=0.01, threshold=0.15, passed=True),
        ],
    )
    failed_gate = job_error("failed", "register: gate failed ...", gate, None)
    assert failed_gate.code == "gate_failed" and failed_gate.message == (
        "gate failed: min_accuracy: observed 0.3, threshold 0.45"
    )
    bad_file = job_error("failed", "training_file file-x (a.jsonl): line 3: not valid JSON", None, FILE_CHECK_TASK)
    assert bad_file.code == "invalid_training_file" and bad_file.param == "training_file"
    assert "line 3" in bad_file.message
    assert job_error("failed", "train: out of memory", None, None).message == "train: out of memory"
    assert job_error("succeeded", None, gate, None) is None


class Item:
    def __init__(self, id_: str) -> None:
        self.id = id_


def test_pages_follow_after_and_say_whether_more_follow():
    items = [Item(str(i)) for i in range(5)]
    first, more = page(items, None, 2)
    assert [i.id for i in first] == ["0", "1"] and more
    last, more = page(items, "3", 2)
    assert [i.id for i in last] == ["4"] and not more
    assert page(items, "4", 2) == ([], False)
    with pytest.raises(KeyError):
        page(items, "nope", 2)


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


def test_a_fine_tuned_model_id_is_openais_shape():
    assert fine_tuned_model("gpt2", "spans", "3") == "ft:gpt2:tuneops:spans:3"
    assert fine_tuned_model("/models/gpt2-small", None, "4") == "ft:gpt2-small:tuneops::4"


def test_a_relative_sqlite_store_is_made_absolute_and_others_are_left():
    assert absolute_tracking_uri("sqlite:///mlflow.db", Path("/p")) == "sqlite:////p/mlflow.db"
    assert absolute_tracking_uri("sqlite:////abs/m.db", Path("/p")) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://mlflow:5000", Path("/p")) == "http://mlflow:5000"


def test_trained_tokens_are_train_tokens_times_epochs():
    report = {"splits": {"train": {"rows": 100, "mean": 12.5}}}
    assert trained_tokens(report, 2) == 2500 and trained_tokens(None, 2) is None


def test_the_store_keeps_one_file_per_content_and_marks_a_bad_file_with_its_reasons(tmp_path):
    store = FileStore(tmp_path, track=False)
    good = "".join(f'{{"prompt": "day {i} was fine ->", "completion": " text {i}\\n"}}\n' for i in range(3)).encode()
    first = store.add(good, "train.jsonl", "fine-tune")
    assert store.add(good, "again.jsonl", "fine-tune") == first and first.status == "processed"
    bad = store.add(b'{"prompt": "a", "completion": "b"}\nnot json\n', "bad.jsonl", "fine-tune")
    assert bad.status == "error" and "line 2" in bad.status_details
    assert [f.id for f in store.list()] == sorted([first.id, bad.id], key=lambda i: i == first.id)
    assert store.content_path(first.id).read_bytes() == good
    assert store.delete(bad.id) and store.get(bad.id) is None and not store.delete(bad.id)
