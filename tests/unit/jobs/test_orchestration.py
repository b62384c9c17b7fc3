"""The retrain flow is found by its entrypoint in a checkout (flows/ is not installed), or refused in one line."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tuneops.config.errors import UserError
from tuneops.jobs.orchestration import load_retrain


def test_the_flow_loads_from_the_checkouts_entrypoint():
    assert load_retrain(ROOT).name == "retrain"


def test_outside_a_checkout_the_error_says_where_to_run(tmp_path):
    with pytest.raises(UserError, match=r"no flows/retrain.py in .*: run this from the project's checkout"):
        load_retrain(tmp_path)
