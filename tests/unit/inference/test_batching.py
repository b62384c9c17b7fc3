"""The serving worker (tuneops.inference.batching) on the tiny GPT-2: one request's bad input fails that request
alone, never another request that arrived in the same batch window."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tuneops.inference.admission import Overloaded
from tuneops.inference.batching import Batcher, Failed, Finished, InferenceRequest, TextDelta
from tuneops.inference.generation import generate
from tuneops.inference.sampling import SamplingParams

SAMPLED = SamplingParams(6, temperature=1.0, seed=1)


async def answer(request: InferenceRequest) -> Finished | Failed:
    while isinstance(event := await request.events.get(), TextDelta):
        pass
    return event


def together(batcher: Batcher, *asked: tuple[Any, SamplingParams]) -> list[Finished | Failed]:
    """Submit every (prompt, params) at once, within one batch window, and wait for each answer."""

    async def run() -> list[Finished | Failed]:
        loop = asyncio.get_running_loop()
        requests = [InferenceRequest(served, [prompt], params, loop) for served, (prompt, params) in asked]
        for request in requests:
            batcher.submit(request)
        return list(await asyncio.gather(*(answer(r) for r in requests)))

    return asyncio.run(run())


@pytest.fixture
def batcher() -> Any:
    batcher = Batcher(window_s=0.5, max_batch=32)
    yield batcher
    batcher.close()


@pytest.fixture(scope="module")
def served(lm: Any, tokenizer: Any) -> Any:
    return SimpleNamespace(model=lm, tokenizer=tokenizer)


def test_a_seed_torch_refuses_fails_only_its_own_request(batcher, served, lm, tokenizer):
    """torch's generators take no seed of 2**64: once that failed every request batched beside it ("Overflow when
    unpacking long long"); now the other request gets the very sample it gets alone."""
    bad, good = together(
        batcher,
        (served, ("the beach", SamplingParams(6, temperature=1.0, seed=2**64))),
        (served, ("the beach", SAMPLED)),
    )
    assert isinstance(bad, Failed) and isinstance(bad.error, ValueError) and "seed" in str(bad.error)
    alone = generate(lm, tokenizer, ["the beach"], max_new_tokens=6, temperature=1.0, seed=1)
    assert isinstance(good, Finished) and good.results == alone
    assert (batcher.stats.calls, batcher.stats.requests) == (1, 1)  # the bad one never joined the call


def test_a_call_that_fails_runs_again_one_request_at_a_time(batcher, served, lm, tokenizer):
    """A token id past the model's vocabulary fails the shared call; each request then runs alone, so only that
    one fails, and the worker goes on answering."""
    greedy = SamplingParams(5)
    bad, good = together(batcher, (served, ([1, 10**6], greedy)), (served, ("I love my cat", greedy)))
    assert isinstance(bad, Failed) and "not in the model's vocabulary" in str(bad.error)
    assert isinstance(good, Finished) and good.results == generate(lm, tokenizer, ["I love my cat"], max_new_tokens=5)
    assert batcher.stats.calls == 3  # the shared call, then each request alone
    (after,) = together(batcher, (served, ("ok", greedy)))
    assert isinstance(after, Finished)


def test_past_its_cap_a_bounded_submit_is_refused_and_the_count_comes_back(served, tokenizer):
    """The queue holds at most max_queued_tokens (a prompt's tokens and the completion tokens it may ask for);
    one more is Overloaded at once, and each answered request gives its tokens back."""
    prompt = [11] * 10  # token ids: 10 tokens exactly, + 6 to generate = 16 a request
    batcher = Batcher(window_s=0.3, max_batch=32, max_queued_tokens=32)

    async def run() -> tuple[list[Finished | Failed], Overloaded | None]:
        loop = asyncio.get_running_loop()
        requests = [InferenceRequest(served, [prompt], SAMPLED, loop) for _ in range(2)]
        for request in requests:
            batcher.submit(request, bounded=True)
        refused = None
        try:
            batcher.submit(InferenceRequest(served, [prompt], SAMPLED, loop), bounded=True)
        except Overloaded as exc:
            refused = exc
        return list(await asyncio.gather(*(answer(r) for r in requests))), refused

    try:
        answers, refused = asyncio.run(run())
    finally:
        batcher.close()
    assert all(isinstance(a, Finished) for a in answers)
    assert refused is not None and (refused.queued, refused.asked, refused.cap) == (32, 16, 32)
    assert batcher.stats.refused == 1 and batcher.stats.most_queued_tokens == 32 and batcher.stats.queued_tokens == 0


def test_a_cancelled_request_leaves_its_call_within_one_step_and_the_others_finish(served, lm, tokenizer):
    """A client gone mid-stream: its row stops at the next decoding step; the row beside it in the same call
    generates on, the same text it generates alone."""
    batcher = Batcher(window_s=0.3, max_batch=32)
    long = SamplingParams(100, temperature=1.0, seed=3)

    async def run() -> tuple[Finished | Failed, Finished | Failed]:
        loop = asyncio.get_running_loop()
        gone = InferenceRequest(served, ["the beach"], long, loop, stream=True)
        stays = InferenceRequest(served, ["the beach"], SamplingParams(100, temperature=1.0, seed=1), loop)
        batcher.submit(gone)
        batcher.submit(stays)
        assert isinstance(await gone.events.get(), TextDelta)  # it is decoding
        gone.cancel()
        return await answer(gone), await answer(stays)

    try:
        gone, stays = asyncio.run(run())
    finally:
        batcher.close()
    alone = generate(lm, tokenizer, ["the beach"], max_new_tokens=100, temperature=1.0, seed=1)
    assert isinstance(stays, Finished) and stays.results == alone and batcher.stats.calls == 1
    assert isinstance(gone, Finished) and batcher.stats.cancelled == 1 and batcher.stats.steps_after_cancel <= 1
    assert 0 < batcher.stats.cancelled_tokens < 100


def test_a_request_cancelled_while_it_waits_never_runs(served):
    batcher = Batcher(window_s=0.2, max_batch=32)

    async def run() -> Finished | Failed:
        request = InferenceRequest(served, ["the beach"], SAMPLED, asyncio.get_running_loop())
        request.cancel()
        batcher.submit(request)
        return await answer(request)

    try:
        ended = asyncio.run(run())
    finally:
        batcher.close()
    assert isinstance(ended, Failed) and isinstance(ended.error, ConnectionAbortedError)
    assert batcher.stats.calls == 0 and batcher.stats.cancelled == 1 and batcher.stats.queued_tokens == 0
