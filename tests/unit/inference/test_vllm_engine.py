"""`engine: vllm`'s decisions, without vLLM: what goes to vLLM and how, what stays on the built-in engine, and how
vLLM's answers and errors come back (the engine itself, against a real vLLM: tests/api/test_vllm_engine.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tuneops.inference.batching import InferenceRequest
from tuneops.inference.generation import Completion
from tuneops.inference.sampling import SamplingParams
from tuneops.inference.vllm_engine import completion, completion_body, fits, sse_json, unmapped, vllm_error


def test_unmapped_names_what_vllm_is_not_asked() -> None:
    assert unmapped(SamplingParams(max_tokens=8, stop=("\n",), temperature=0.7, top_p=0.9, seed=3)) == []
    assert unmapped(SamplingParams(max_tokens=0, echo=True, logprobs=True)) == ["logprobs", "echo"]
    assert unmapped(SamplingParams(max_tokens=4, logprobs=True, top_logprobs=2)) == ["logprobs", "top_logprobs"]


def test_completion_body_per_row() -> None:
    params = SamplingParams(max_tokens=8, stop=("<|im_end|>", "\n"), temperature=0.5, top_p=0.9, seed=7)
    body = completion_body("m:3", "hi", params, row=2, stream=True)
    assert body == {
        "model": "m:3",
        "prompt": "hi",
        "max_tokens": 8,
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": True,
        "stop": ["<|im_end|>", "\n"],
        "seed": 9,  # seed + row, as the built-in engine seeds each row
        "stream_options": {"include_usage": True},
    }
    greedy = completion_body("m:3", [5, 6], SamplingParams(max_tokens=4), row=0, stream=False)
    assert greedy["prompt"] == [5, 6] and "seed" not in greedy and "stop" not in greedy
    assert "stream_options" not in greedy and greedy["temperature"] == 0.0


def test_completion_maps_vllm_choices() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert completion({"text": " yes", "finish_reason": "stop"}, usage) == Completion(" yes", "stop", 5, 3)
    assert completion({"text": "", "finish_reason": "length"}, usage, text="abc") == Completion("abc", "length", 5, 3)
    assert completion({"finish_reason": None}, None).finish_reason == "stop"


def test_vllm_errors_become_the_clients_or_ours() -> None:
    refused = vllm_error(400, b'{"error": {"message": "max_tokens is too large", "type": "BadRequestError"}}')
    assert isinstance(refused, ValueError) and "max_tokens is too large" in str(refused)
    failed = vllm_error(500, b"not json")
    assert isinstance(failed, RuntimeError) and not isinstance(failed, ValueError) and "not json" in str(failed)


def test_sse_json_reads_data_lines_up_to_done() -> None:
    async def lines() -> Any:
        for line in ['data: {"a": 1}', "", ": keep-alive", 'data: {"b": 2}', "data: [DONE]", 'data: {"c": 3}']:
            yield line

    async def read() -> list[dict]:
        return [chunk async for chunk in sse_json(lines())]

    assert asyncio.run(read()) == [{"a": 1}, {"b": 2}]


class Loaded:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.model = tokenizer, None


@pytest.mark.parametrize(("max_tokens", "limit", "expected"), [(4, None, True), (4, 64, True), (60, 64, False)])
def test_fits_vllms_max_model_len(tokenizer: Any, max_tokens: int, limit: int | None, expected: bool) -> None:
    prompt = "the cat sat on the mat"
    length = len(tokenizer(prompt)["input_ids"])
    request = InferenceRequest(Loaded(tokenizer), [prompt, [1] * 3], SamplingParams(max_tokens=max_tokens), None)
    assert fits(request, limit) is expected
    assert fits(request, length + max_tokens) is True and fits(request, length + max_tokens - 1) is False
