"""The tiny GPT-2 the inference tests generate with: the sample's tokenizer, random weights (seed 1)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Any:
    from transformers import AutoModelForCausalLM

    from tuneops.data.sample import build_gpt2

    path = build_gpt2(tmp_path_factory.mktemp("lm") / "gpt2", tokenizer, seed=1)
    return AutoModelForCausalLM.from_pretrained(path).eval()
