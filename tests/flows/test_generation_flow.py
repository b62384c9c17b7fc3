"""The retrain flow on task: generation: the same stages through DVC, and the held-out completions published
as a Prefect artifact table."""

from __future__ import annotations

import pytest

from tests.conftest import make_project, use_generation_sample
from tests.flows.test_retrain import artifact_keys

pytestmark = pytest.mark.slow


def test_flow_fine_tunes_a_generation_model_and_publishes_its_samples(tmp_path, sample, monkeypatch):
    from prefect.artifacts import Artifact
    from prefect.testing.utilities import prefect_test_harness

    from flows.retrain import retrain

    project = make_project(tmp_path / "project")

    def setup(p):
        use_generation_sample(p, sample)
        p["flow"].update(review_data="never", push=False)
        p["train"]["args"].update(num_train_epochs=1)
        # one epoch does not learn the labels yet: exact match 0.0, a tie with the untrained base, which fails
        # beats_base; this test is about the flow and its artifacts (the gate has tests of its own)
        p["evaluate"]["base_margin"] = -1.0

    project.set_params(setup)
    monkeypatch.chdir(project.path)
    with prefect_test_harness(server_startup_timeout=60):
        state = retrain(return_state=True)
        assert state.is_completed(), state.message
        summary = state.result()
        assert summary.ran == ["ingest", "validate", "tokenize", "train", "evaluate", "register"]
        assert summary.verdict == "passed" and summary.registered.version == "1"
        assert {"metrics", "samples", "gate", "registered-model"} <= artifact_keys(state.state_details.flow_run_id)
        table = Artifact.get("samples").data
        assert "expected" in table and "generated" in table
