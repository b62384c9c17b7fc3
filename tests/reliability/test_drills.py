"""Fault drills, each reproduced as it happened and each asserting the recovery (bench/drills.py tabulates them).

A failing machine or a hostile registry: a full disk mid-checkpoint, a dead tracking server, a planted model
with its own code, a corrupted DVC cache object, and a single file whose retweets repeat texts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project, free_port, make_project, use_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(tmp_path_factory, sample) -> Project:
    project = make_project(tmp_path_factory.mktemp("drills") / "project")
    project.set_params(lambda p: use_sample(p, sample))
    project.dvc("repro")
    assert project.champion_version() == "1"
    return project


def stage(project: Project, name: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return project.run(sys.executable, "-m", f"tasks.{name}", check=False, env=env)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_drill_registry_unreachable_never_waives_the_champion_check(registered):
    """A dead tracking server stops evaluate as transient; a later plain `dvc repro` still applies the check."""
    registered.set_params(lambda p: p["evaluate"].update(min_improvement=0.5))  # unbeatable
    dead = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    result = registered.run(sys.executable, "-m", "dvc", "repro", check=False, env=dead)
    assert result.returncode != 0 and "exited with 75" in result.stdout + result.stderr
    assert any("no answer about the champion" in line for line in error_lines(result))

    again = registered.dvc("repro", check=False)  # the registry is back
    assert "evaluate" in registered.ran(again) and again.returncode != 0
    gate = json.loads((registered.path / "reports" / "gate.json").read_text())
    assert [c["check"] for c in gate["checks"] if not c["passed"]] == ["beats_champion"]
    assert registered.versions() == ["1"] and registered.champion_version() == "1"
    registered.set_params(lambda p: p["evaluate"].update(min_improvement=-1.0))


def test_drill_a_planted_model_with_its_own_code_never_runs(registered):
    """An artifact whose config maps to a .py beside it (anyone who can write to the registry could plant one)."""
    artifact = next((registered.path / "mlruns").rglob("artifacts/model/config.json")).parent
    config_path = artifact / "config.json"
    original = config_path.read_text()
    marker = registered.path / "CODE-RAN"
    config = json.loads(original) | {"auto_map": {"AutoModelForSequenceClassification": "evil.EvilModel"}}
    try:
        config_path.write_text(json.dumps(config))
        (artifact / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
        result = registered.run("tuneops", "predict", "--model-version", "1", "hello", check=False)
        assert result.returncode == 2 and "tuneops loads no code with a model" in result.stderr
        assert not marker.exists()
    finally:
        config_path.write_text(original)
        (artifact / "evil.py").unlink(missing_ok=True)


def test_drill_a_corrupted_model_file_is_never_evaluated_or_registered(registered):
    """A flipped byte in models/candidate, as a corrupted cache object copied out by `dvc checkout` leaves it
    (a DVC that checks out without rehashing says the workspace is up to date)."""
    weights = registered.path / "models" / "candidate" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.unlink()  # never write through a link into DVC's cache
    weights.write_bytes(bytes(data))

    for name in ("evaluate", "register"):
        result = stage(registered, name)
        assert result.returncode == 2, result.stderr[-2000:]
        (line,) = error_lines(result)
        assert "models/candidate: its content" in line and "dvc repro --force --single-item train" in line
    assert registered.versions() == ["1"]
    registered.dvc("repro", "--force", "--single-item", "train")  # the way out the message gives
    assert stage(registered, "evaluate").returncode == 0


def test_drill_a_single_file_with_retweets_splits_without_leaking(registered, tmp_path, sample):
    """The pipeline's own carve of validation/test must not create the leakage validate refuses."""
    import pandas as pd

    from tuneops.data.sample import sample_texts

    df = sample_texts(400, seed=7)
    retweets = df.sample(120, random_state=1).assign(text=lambda d: "RT " + d["text"])
    copies = pd.concat([df, retweets, retweets.assign(text=lambda d: d["text"].str.upper() + "  ")])
    source = tmp_path / "airline.csv"
    copies.sample(frac=1.0, random_state=2).to_csv(source, index=False)
    registered.set_params(lambda p: p["data"].update(source=str(source)))
    try:
        result = registered.dvc("repro", "validate", check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        records = json.loads((registered.path / "reports" / "data_quality.json").read_text())
        leaks = [r for r in records if r["check"] == "leakage_rate"]
        assert leaks and all(r["passed"] and r["observed"] == 0 for r in leaks)
    finally:
        registered.set_params(lambda p: p["data"].update(source=str(sample.data_dir)))


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform == "linux"


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root on Linux")
def test_drill_a_full_disk_mid_checkpoint_says_so_and_resumes_from_the_last_complete_one(tmp_path, sample):
    """models/checkpoints on a file system with room for one checkpoint and a half: the second save fails."""
    project = make_project(tmp_path / "project")
    project.set_params(lambda p: (use_sample(p, sample), p["train"].update(early_stopping_patience=10)))
    project.set_params(lambda p: p["train"]["args"].update(num_train_epochs=3))
    project.dvc("repro", "tokenize")
    checkpoints = project.path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3500k", "tmpfs", str(checkpoints)], check=False)
    if mounted.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        full = stage(project, "train")
        assert full.returncode == 2 and error_lines(full) == [
            f"error: no space left on device while writing {Path('models/checkpoints')}: free some space and run "
            "again; training resumes from the last complete checkpoint"
        ], full.stderr[-3000:]
        subprocess.run(["mount", "-o", "remount,size=64m", str(checkpoints)], check=True)  # space freed
        resumed = stage(project, "train")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "set aside models/checkpoints/checkpoint-" in resumed.stderr
        assert "resuming from models/checkpoints/checkpoint-34" in resumed.stderr
        assert (project.path / "models" / "candidate" / "model.safetensors").is_file()
    finally:
        subprocess.run(["umount", "-l", str(checkpoints)], check=False)
