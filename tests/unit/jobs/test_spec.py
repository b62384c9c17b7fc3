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
    MAX_SEED,
    Hyperparameters,
    JobRequest,
    absolute_tracking_uri,
    apply_overrides,
    draw_seed,
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
    auto = resolve(Hyperparameters(), PARAMS.train)
    assert (auto.n_epochs, auto.batch_size, auto.learning_rate_multiplier) == (
        round(args.num_train_epochs),
        args.per_device_train_batch_size,
        1.0,
    )
    over = job_overrides(
        request(hyperparameters={"n_epochs": 4, "batch_size": 8, "learning_rate_multiplier": 2.0}, seed=7),
        PARAMS,
        "sqlite:////x/mlflow.db",
        7,
    )
    assert over["train.args.learning_rate"] == pytest.approx(args.learning_rate * 2.0)
    assert over["train.args.num_train_epochs"] == 4.0 and over["train.args.max_steps"] == -1
    assert over["train.args.per_device_train_batch_size"] == 8
    assert over["train.args.seed"] == over["data.seed"] == 7
    assert over["flow.review_data"] == "never" and over["register.tracking_uri"] == "sqlite:////x/mlflow.db"
    assert "model.name" not in over and "train.args.max_steps" not in job_overrides(request(), PARAMS, "u", 1)
    assert job_overrides(request().model_copy(update={"model": "other"}), PARAMS, "u", 1)["model.name"] == "other"
    local = PARAMS.model_copy(update={"model": PARAMS.model.model_copy(update={"name": "../models/tiny-gpt2"})})
    assert "model.name" not in job_overrides(request().model_copy(update={"model": "tiny-gpt2"}), local, "u", 1)


def test_a_job_trains_on_every_row_of_its_file_unless_it_asks_for_fewer():
    assert PARAMS.data.max_train_samples is not None  # params.yaml's own cap, the seed tutorial's 1,000
    every = job_overrides(request(), PARAMS, "u", 1)
    assert every["task"] == "generation"  # whatever the project's own task: OpenAI's files teach text
    assert every["data.max_train_samples"] is None and every["data.max_eval_samples"] is None
    assert job_overrides(request(max_train_samples=50), PARAMS, "u", 1)["data.max_train_samples"] == 50
    assert every["train.args.save_total_limit"] == 3  # OpenAI's last three epoch checkpoints


def test_a_seed_not_asked_for_is_drawn_in_range_and_a_seed_out_of_range_is_refused():
    drawn = {draw_seed() for _ in range(20)}
    assert len(drawn) > 1 and all(0 <= seed <= MAX_SEED for seed in drawn)
    with pytest.raises(ValidationError):
        request(seed=2**64)


def test_dpo_takes_beta_and_the_shared_hyperparameters_and_reinforcement_is_refused_by_name():
    dpo = request(method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3, "n_epochs": 2}}})
    assert dpo.method_type() == "dpo"
    hp = resolve(dpo.requested(), PARAMS.train)
    assert hp.beta == 0.3 and hp.n_epochs == 2
    over = job_overrides(dpo, PARAMS, "u", 1)
    assert over["train.objective"] == "dpo" and over["train.dpo.beta"] == 0.3
    auto = resolve(request(method={"type": "dpo"}).requested(), PARAMS.train)
    assert auto.beta == PARAMS.train.dpo.beta
    assert "train.objective" not in job_overrides(request(), PARAMS, "u", 1)
    with pytest.raises(UserError, match="reinforcement.*not offered"):
        request(method={"type": "reinforcement"}).method_type()
    with pytest.raises(UserError, match="method.supervised"):
        request(method={"type": "dpo", "supervised": {}}).method_type()
    with pytest.raises(ValidationError):
        request(method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}})


def test_a_fine_tune_of_a_fine_tune_is_named_after_the_base_and_trains_from_the_exported_weights():
    parent = fine_tuned_model("gpt2", "spans", "3")
    assert fine_tuned_model(parent, "more", "5") == "ft:gpt2:tuneops:more:5"
    assert "model.name" not in job_overrides(request().model_copy(update={"model": parent}), PARAMS, "u", 1)


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
