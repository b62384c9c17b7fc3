"""The engine interface: the built-in engine answers through it as the batcher does, and its thread budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tuneops.inference.batching import Batcher, Finished, InferenceRequest, TextDelta
from tuneops.inference.engine import BuiltinEngine, thread_budget
from tuneops.inference.generation import generate
from tuneops.inference.sampling import SamplingParams


class Loaded:
    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer


@pytest.mark.parametrize(
    ("configured", "cores", "omp", "expected"),
    [
        (None, 2, "", 1),  # the machine here: one thread of two, beside other work
        (None, 1, "", 1),
        (None, 16, "", 8),
        (None, 3, "", 1),
        (3, 2, "", 3),  # serve.num_threads wins, more than the cores too (the user's call)
        (None, 16, "4", 4),  # OMP_NUM_THREADS, as every OpenMP program honours it
        (2, 16, "4", 2),
        (None, 16, "0", 8),  # not a thread count: ignored
        (None, 16, "all", 8),
    ],
)
def test_thread_budget(configured: int | None, cores: int, omp: str, expected: int) -> None:
    assert thread_budget(configured, cores, omp) == expected


def test_builtin_engine_streams_and_finishes_like_generate(lm: Any, tokenizer: Any) -> None:
    """One request in, its events out: text deltas that add up to what generate() gives, then Finished."""
    engine = BuiltinEngine(Batcher(window_s=0.0, max_batch=8))
    params = SamplingParams(max_tokens=6)
    prompts = ["the cat sat on", "hello"]
    expected = generate(lm, tokenizer, prompts, max_new_tokens=6)

    async def ask() -> list[Any]:
        request = InferenceRequest(Loaded(lm, tokenizer), prompts, params, asyncio.get_running_loop(), stream=True)
        await asyncio.to_thread(engine.submit, request)  # the routes submit from a worker thread
        events = [await request.events.get()]
        while isinstance(events[-1], TextDelta):
            events.append(await request.events.get())
        return events

    try:
        events = asyncio.run(ask())
    finally:
        engine.close()
    assert isinstance(events[-1], Finished)
    assert [row.text for row in events[-1].results] == [c.text for c in expected]
    for row, completion in enumerate(expected):
        assert "".join(e.text for e in events[:-1] if e.row == row) == completion.text
