"""QLoRA is refused with one line wherever it cannot run, and allowed where it can."""

from __future__ import annotations

import pytest

from tuneops.training.quantization import quantization_refusal

OK = {"method": "lora", "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct", "generator": True}


def test_off_is_never_refused_even_on_a_cpu():
    assert quantization_refusal(None, "full", "x.gguf", generator=False, cuda=False, has_bitsandbytes=False) is None


def test_a_gpu_with_bitsandbytes_and_lora_on_a_hub_model_may_quantize():
    assert quantization_refusal("4bit", **OK, cuda=True, has_bitsandbytes=True) is None


@pytest.mark.parametrize(
    "change, says",
    [
        ({"cuda": False}, "needs a CUDA GPU"),
        ({"has_bitsandbytes": False}, "pip install bitsandbytes"),
        ({"method": "full"}, "train.method: lora"),
        ({"model_name": "models/SmolLM2.Q4_1.gguf"}, "GGUF"),
        ({"generator": False}, "task: generation"),
    ],
)
def test_each_unsupported_setup_is_refused_in_one_line_naming_why(change, says):
    why = quantization_refusal("8bit", **{**OK, "cuda": True, "has_bitsandbytes": True, **change})
    assert says in why and "\n" not in why
