"""A job request onto params.yaml: ids, hyperparameters (auto or numbers), overrides of existing keys only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.config.params import load_params
from tuneops.jobs.spec import (
    Hyperparameters,
    JobRequest,
    absolute_tracking_uri,
    apply_overrides,
    fine_tuned_model,
    flow_run_id,
    job_id,
    job_overrides,
    resolve,
)

PARAMS = load_params(ROOT / "params.yaml")


def request(**fields) -> JobRequest:
    return JobRequest(model=PARAMS.model.name, training_file="file-" + "a" * 24, **fields)


def test_a_job_id_names_its_flow_run_and_nothing_else_parses_as_one():
    run = uuid.uuid4()
    assert job_id(run).startswith("ftjob-") and flow_run_id(job_id(run)) == run
    assert flow_run_id("ftjob-nothex") is None and flow_run_id(str(run)) is None


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


def test_a_fine_tuned_model_id_is_openais_shape():
    assert fine_tuned_model("gpt2", "spans", "3") == "ft:gpt2:tuneops:spans:3"
    assert fine_tuned_model("/models/gpt2-small", None, "4") == "ft:gpt2-small:tuneops::4"


def test_a_relative_sqlite_store_is_made_absolute_and_others_are_left():
    assert absolute_tracking_uri("sqlite:///mlflow.db", Path("/p")) == "sqlite:////p/mlflow.db"
    assert absolute_tracking_uri("sqlite:////abs/m.db", Path("/p")) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://mlflow:5000", Path("/p")) == "http://mlflow:5000"
