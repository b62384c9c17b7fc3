"""Only a registry that answers "no such model" means no champion; one that does not answer stops the stage."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, free_port
from tuneops.config.errors import TransientError, UserError
from tuneops.config.params import load_params
from tuneops.config.records import Registration
from tuneops.registry.store import champion, no_such_model_or_alias

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
