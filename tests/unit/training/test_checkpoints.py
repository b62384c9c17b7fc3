"""Resume only from a complete checkpoint of the same inputs: one cut short is set aside, changed inputs start fresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuneops.training.checkpoints import CheckpointMarker, checkpoint_problem, prepare_checkpoints, resume_decision


def make_checkpoint(folder: Path, step: int) -> Path:
    """The files the Trainer writes for a checkpoint, real formats, tiny tensors."""
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.zeros(64)}, path / "model.safetensors")
    torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_whole_checkpoint_has_no_problem(tmp_path):
    assert checkpoint_problem(make_checkpoint(tmp_path, 17)) is None


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda p: (p / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda p: (p / "scheduler.pt").unlink(), "no scheduler.pt"),
        (lambda p: truncate(p / "optimizer.pt"), "optimizer.pt is cut short"),
        (lambda p: truncate(p / "model.safetensors"), "model.safetensors is cut short"),
        (lambda p: (p / "trainer_state.json").write_text('{"global_step": 3}'), "trainer_state.json is for step 3"),
    ],
    ids=["no state", "no scheduler", "short optimizer", "short weights", "wrong step"],
)
def test_what_a_kill_or_a_full_disk_leaves_is_named(tmp_path, spoil, problem):
    path = make_checkpoint(tmp_path, 17)
    spoil(path)
    assert checkpoint_problem(path) == problem


def test_resume_skips_a_partial_checkpoint_and_sets_it_aside(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    make_checkpoint(folder, 17)
    partial = make_checkpoint(folder, 34)
    (partial / "trainer_state.json").unlink()
    (folder / "fingerprint.json").write_text(CheckpointMarker(fingerprint="abc").model_dump_json())
    with caplog.at_level("INFO"):
        resume = prepare_checkpoints(folder, "abc")
    assert resume == folder / "checkpoint-17"
    assert (folder / "incomplete" / "checkpoint-34").is_dir() and not partial.exists()
    assert "set aside" in caplog.text and "no trainer_state.json" in caplog.text


def test_a_fresh_start_empties_the_folder_but_keeps_the_folder_itself(tmp_path):
    folder = tmp_path / "checkpoints"
    make_checkpoint(folder, 17)
    assert prepare_checkpoints(folder, "new") is None
    assert folder.is_dir() and [p.name for p in folder.iterdir()] == ["fingerprint.json"]


CHECKPOINTS = ["models/checkpoints/checkpoint-17", "models/checkpoints/checkpoint-34"]


def test_an_interrupted_run_with_the_same_inputs_resumes_from_its_last_checkpoint():
    resume, why = resume_decision(CheckpointMarker(fingerprint="abc"), "abc", CHECKPOINTS)
    assert resume and why.startswith("resuming from models/checkpoints/checkpoint-34")


def test_changed_inputs_a_finished_run_or_no_checkpoint_start_fresh():
    assert resume_decision(CheckpointMarker(fingerprint="abc"), "xyz", CHECKPOINTS) == (
        False,
        "starting fresh: data or params changed since models/checkpoints/checkpoint-34 was saved",
    )
    resume, why = resume_decision(CheckpointMarker(fingerprint="abc", completed=True), "abc", CHECKPOINTS)
    assert not resume and "the last run finished" in why
    assert resume_decision(None, "abc", CHECKPOINTS)[0] is False
    assert resume_decision(CheckpointMarker(fingerprint="abc"), "abc", [])[0] is False
