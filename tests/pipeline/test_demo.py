"""`make demo` (`tuneops demo`): offline, the whole pipeline to a registered champion and printed predictions."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import MODEL, ROOT
from tuneops.cli.demo import EXAMPLES

pytestmark = pytest.mark.slow


@pytest.mark.smoke  # `make test`'s one end-to-end `dvc repro`
def test_the_demo_ends_with_a_champion_and_a_prediction_and_leaves_the_checkout_alone(tmp_path):
    from mlflow import MlflowClient

    params_before = (ROOT / "params.yaml").read_text()
    workspace = tmp_path / "demo"
    result = subprocess.run(["tuneops", "demo", "--workspace", str(workspace)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"text": ')]
    assert [p["text"] for p in predictions] == EXAMPLES
    assert all(p["label"] in ("negative", "neutral", "positive") for p in predictions)
    registry = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert str(registry.get_model_version_by_alias(MODEL, "champion").version) == "1"
    gate = json.loads((workspace / "reports" / "gate.json").read_text())
    assert gate["verdict"] == "passed"  # the params.yaml gates, not relaxed ones
    assert (workspace / "reports" / "data_quality" / "index.html").is_file()
    assert (ROOT / "params.yaml").read_text() == params_before

    again = subprocess.run(["tuneops", "demo", "--workspace", str(workspace)], capture_output=True, text=True)
    assert again.returncode == 2 and "not empty; give `--workspace` a new folder" in again.stderr
