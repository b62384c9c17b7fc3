"""`dvc repro` of ingest + validate on the real tweets, in a fresh copy of the repository."""

import json

import pytest

from tests.conftest import needs_shared, use_shared_tweets

pytestmark = [pytest.mark.slow, needs_shared()]


def test_dvc_runs_skips_and_reruns_only_what_changed(project):
    project.set_params(use_shared_tweets)
    first = project.dvc("repro", "validate")
    assert project.ran(first) == ["ingest", "validate"]
    assert (project.path / "reports" / "data_quality" / "index.html").is_file()
    records = json.loads((project.path / "reports" / "data_quality.json").read_text())
    empty = next(r for r in records if r["check"] == "empty_text_rate" and r["split"] == "train")
    assert empty["passed"] is False and empty["observed"] > 0  # the known empty tweet, fdb77c3752
    manifest = json.loads((project.path / "data" / "interim" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["rows"] == 3534

    assert project.ran(project.dvc("repro", "validate")) == []

    project.set_params(lambda p: p["validate"]["max_class_ratio"].update(threshold=2.5))
    assert project.ran(project.dvc("repro", "validate")) == ["validate"]

    project.set_params(lambda p: p["data"].update(seed=7))
    assert project.ran(project.dvc("repro", "validate")) == ["ingest", "validate"]


def test_failing_error_check_stops_dvc_with_the_reason(project):
    project.set_params(use_shared_tweets)
    project.set_params(lambda p: p["validate"]["min_class_share"].update(threshold=0.34))
    result = project.dvc("repro", "validate", check=False)
    assert result.returncode != 0
    assert "min_class_share on train: observed 0.28" in result.stderr + result.stdout
    assert not (project.path / "reports" / "data_quality_verdict.json").exists()
    assert (project.path / "reports" / "data_quality" / "index.html").is_file()
