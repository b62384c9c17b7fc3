"""Where a checkpoint's pieces come from: the tokenizer (the candidate's first) and the base a LoRA checkpoint's
adapters go on (model.name as the job's training, run inside its workspace, read it)."""

from __future__ import annotations

import pytest

from tuneops.config.errors import UserError
from tuneops.config.params import ModelParams
from tuneops.registry.checkpoints import base_model, tokenizer_dir


def test_the_candidates_tokenizer_first_then_the_checkpoints_own(tmp_path):
    checkpoint, candidate = tmp_path / "checkpoint-4", tmp_path / "candidate"
    checkpoint.mkdir()
    with pytest.raises(UserError, match="no tokenizer saved with it"):
        tokenizer_dir(checkpoint, candidate)
    (checkpoint / "tokenizer_config.json").write_text("{}")
    assert tokenizer_dir(checkpoint, candidate) == checkpoint
    candidate.mkdir()
    (candidate / "tokenizer_config.json").write_text("{}")
    assert tokenizer_dir(checkpoint, candidate) == candidate


def test_a_relative_base_is_relative_to_the_jobs_workspace(tmp_path):
    workspace = tmp_path / "jobs" / "ftjob-1"
    assert base_model(ModelParams(name="gpt2", revision=None), workspace) == "gpt2"  # a Hub id
    assert base_model(ModelParams(name="../../models/base.gguf", revision=None), workspace) == str(
        tmp_path / "models" / "base.gguf"
    )
    assert base_model(ModelParams(name="/abs/tiny", revision=None), workspace) == "/abs/tiny"
