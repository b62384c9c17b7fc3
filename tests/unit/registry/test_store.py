"""The registry: lineage tags, the metrics a version carries, the champion lookup, a registry that does not answer."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, free_port, metrics
from tuneops.config.errors import TransientError, UserError
from tuneops.config.params import load_params
from tuneops.config.records import Registration
from tuneops.registry.store import champion, lineage_tags, metric_numbers, no_such_model_or_alias


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


REGISTER = load_params(ROOT / "params.yaml").register_


def at(uri: str):
    return REGISTER.model_copy(update={"tracking_uri": uri})


def test_what_counts_as_no_champion():
    assert no_such_model_or_alias("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=m not found")
    assert no_such_model_or_alias("INVALID_PARAMETER_VALUE", "Registered model alias champion not found.")
    assert not no_such_model_or_alias("INTERNAL_ERROR", "API request to http://x failed with exception ...")
    assert not no_such_model_or_alias("INVALID_PARAMETER_VALUE", "bad filter string")


def test_a_dead_tracking_server_is_transient_never_no_champion(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TransientError, match=r"registry http://127\.0\.0\.1:\d+: no answer about the champion"):
        champion(at(f"http://127.0.0.1:{free_port()}"))


def test_a_fresh_registry_has_no_champion(tmp_path):
    assert champion(at(f"sqlite:///{tmp_path / 'mlflow.db'}")) is None


def test_a_lost_registry_is_not_taken_for_a_fresh_one(tmp_path):
    """models/registered.json says a version was registered from here; an empty registry cannot waive the check."""
    before = Registration(
        name=REGISTER.model_name, version="4", alias="champion", run_id="r", model_uri="u", metrics={}
    )
    with pytest.raises(UserError, match=r"records version 4 registered from here: the registry was lost or replaced"):
        champion(at(f"sqlite:///{tmp_path / 'mlflow.db'}"), before)
