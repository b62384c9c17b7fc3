"""Concurrent requests answered together: one worker thread owns the models and runs one forward pass (or one
generate call) for every request that arrived within a short window, instead of one per request.

    request handlers (event loop) --InferenceRequest--> queue.Queue --> worker thread: collect, group, run, answer

The worker takes the first waiting request, then whatever else arrives within `window_s` or is already waiting,
up to `max_batch` rows. Requests are grouped by what must match to share a call (the same loaded version; for
generation equal `SamplingParams.normalized()`: every greedy request of a version with the same max_tokens and
stops alike), and each group runs as one call, its SamplingParams handed to generation unchanged. Answers go back
to each request's event loop as typed events on its asyncio.Queue: TextDelta as text comes, then Finished or
Failed.

One request's bad input never fails another's: what can be checked per request (its prompts against the model's
context, each row's seeded generator) is checked before it joins a call, and it fails alone; a call that fails
anyway runs again one request at a time, so only the request that fails alone fails (a request that already
streamed text from the failed call cannot start over, and fails with it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from tuneops.inference.generation import Completion, Prompt, Tokens, check_token_ids, generate_with, vocab_size
from tuneops.inference.sampling import SamplingParams, generator
from tuneops.models.hardware import native_bf16
from tuneops.models.loading import predict_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("tuneops.serve")


@dataclass(frozen=True)
class Classified:
    """A classification model's answer to one prompt: its label and every label's log-probability."""

    label: str
    logprobs: dict[str, float]
    prompt_tokens: int


Results = list[Completion] | list[Classified]  # one per row, in the request's order


@dataclass(frozen=True)
class TextDelta:
    """Streamed text of one row that no stop sequence can claim any more, with its tokens' logprobs if asked."""

    row: int
    text: str
    logprobs: Tokens | None = None


@dataclass(frozen=True)
class Finished:
    """Every row's answer: the request is done."""

    results: Results


@dataclass(frozen=True)
class Failed:
    """The request failed (a prompt too long, a model error): nothing more comes."""

    error: Exception


Event = TextDelta | Finished | Failed


class PromptTooLong(ValueError):
    """A prompt (with the tokens asked for) longer than the model's context."""

    def __init__(self, row: int, prompt_tokens: int, max_tokens: int, context: int) -> None:
        self.row, self.prompt_tokens, self.max_tokens, self.context = row, prompt_tokens, max_tokens, context
        asked = f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion)"
        super().__init__(f"this model's maximum context length is {context} tokens, but prompt {row} asks for {asked}")


class Loaded(Protocol):
    """A loaded version as batching needs it (registry.catalog.Served is the real one)."""

    @property
    def model(self) -> PreTrainedModel: ...

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...


GroupKey = tuple[int, SamplingParams | None]


@dataclass
class InferenceRequest:
    """One HTTP request's rows for one model. `sampling` None: classify (each row's label)."""

    served: Loaded
    prompts: list[Prompt]  # texts, or token ids the model sees as they are
    sampling: SamplingParams | None
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    stream: bool = False
    truncate: bool = False  # /predict truncates long texts as it always has; the OpenAI routes refuse them
    # the worker's: each row's generator (sampling only), and whether text of this request went out already
    generators: list[torch.Generator] | None = field(default=None, init=False)
    streamed: bool = field(default=False, init=False)

    def key(self) -> GroupKey:
        return id(self.served.model), None if self.sampling is None else self.sampling.normalized()

    def emit(self, event: Event) -> None:
        """Hand an event to the request's event loop (called from the worker thread)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


def group_requests(requests: list[InferenceRequest]) -> list[list[InferenceRequest]]:
    """Requests that may share one call, in arrival order of each group's first request."""
    groups: dict[GroupKey, list[InferenceRequest]] = {}
    for request in requests:
        groups.setdefault(request.key(), []).append(request)
    return list(groups.values())


def context_length(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


@dataclass
class Stats:
    """What the worker did: how many calls for how many requests (tests and logs read it)."""

    calls: int = 0
    requests: int = 0
    rows: int = 0
    largest_call: int = 0


class Batcher:
    """The worker thread and its queue; `submit` from request handlers, `close` at shutdown."""

    def __init__(self, window_s: float, max_batch: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.max_batch, self._clock = window_s, max_batch, clock
        self._queue: queue.Queue[InferenceRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.stats = Stats()

    def submit(self, request: InferenceRequest) -> None:
        self._ensure_started()
        self._queue.put(request)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tuneops-batcher", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            requests, stop = self._collect(first)
            for group in group_requests(requests):
                self._run(group)
            if stop:
                return

    def _collect(self, first: InferenceRequest) -> tuple[list[InferenceRequest], bool]:
        """The first request and what joins it within the window, up to max_batch rows; True when told to stop."""
        requests, rows = [first], len(first.prompts)
        deadline = self._clock() + self.window_s
        while rows < self.max_batch:
            remaining = deadline - self._clock()
            try:  # past the window, only what is already waiting joins
                request = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                return requests, True
            requests.append(request)
            rows += len(request.prompts)
        return requests, False

    def _run(self, group: list[InferenceRequest]) -> None:
        runnable = [request for request in group if self._admit(request)]
        if runnable:
            self._answer(runnable)

    def _answer(self, requests: list[InferenceRequest]) -> None:
        """One call for the requests; when it fails and they were several, each runs again alone."""
        rows = sum(len(request.prompts) for request in requests)
        self.stats.calls += 1
        self.stats.requests += len(requests)
        self.stats.rows += rows
        self.stats.largest_call = max(self.stats.largest_call, rows)
        try:
            results = self._call(requests)
        except Exception as exc:  # one bad call fails its requests, never the worker
            log.warning("a call for %d requests failed: %s: %s", len(requests), type(exc).__name__, exc)
            for request in requests:
                if len(requests) == 1 or request.streamed:
                    request.emit(Failed(exc))
                elif self._admit(request):  # admitted again: its generators start over from their seeds
                    self._answer([request])
            return
        start = 0
        for request in requests:
            request.emit(Finished(results[start : start + len(request.prompts)]))
            start += len(request.prompts)

    def _admit(self, request: InferenceRequest) -> bool:
        """Whether the request may join a call: what fails it alone is found here, before it shares one."""
        try:
            self._check_context(request)
            request.generators = self._generators(request)
        except Exception as exc:
            log.info("a request was refused before its call: %s: %s", type(exc).__name__, exc)
            request.emit(Failed(exc))
            return False
        return True

    def _check_context(self, request: InferenceRequest) -> None:
        """Each prompt within the model's context (with the tokens asked for), else PromptTooLong."""
        context = context_length(request.served.model)
        if request.truncate or context is None:
            return
        budget = request.sampling.max_tokens if request.sampling is not None else 0
        texts = [p for p in request.prompts if isinstance(p, str)]
        lengths = iter(len(ids) for ids in request.served.tokenizer(texts)["input_ids"]) if texts else iter(())
        for row, prompt in enumerate(request.prompts):
            length = next(lengths) if isinstance(prompt, str) else len(prompt)
            if length + budget > context:
                raise PromptTooLong(row, length, budget, context)

    @staticmethod
    def _generators(request: InferenceRequest) -> list[torch.Generator] | None:
        """Each sampled row's own seeded generator, built before the request joins a call: a seed torch refuses
        (a client's seed of 2**64) is then this request's error, not that of every request batched with it."""
        sampling = request.sampling
        if sampling is None or sampling.greedy:
            return None
        device = next(request.served.model.parameters()).device
        return [generator(seed, device) for seed in sampling.seeds(len(request.prompts))]

    def _call(self, requests: list[InferenceRequest]) -> Results:
        prompts = [p for request in requests for p in request.prompts]
        served, params = requests[0].served, requests[0].key()[1]
        if params is None:
            return classify(served.model, served.tokenizer, prompts, self.max_batch, truncate=requests[0].truncate)
        owners = [(request, row) for request in requests for row in range(len(request.prompts))]

        def on_text(index: int, delta: str, tokens: Tokens | None) -> None:
            request, row = owners[index]
            if request.stream:
                request.streamed = True
                request.emit(TextDelta(row, delta, tokens))

        streaming = any(request.stream for request in requests)
        # each request's own generators: the group's params are normalized (seed None), so a seeded request
        # samples the same text whatever joins its call
        generators = None if params.greedy else [g for r in requests for g in r.generators or []]
        return generate_with(
            served.model,
            served.tokenizer,
            prompts,
            params,
            generators=generators,
            batch_size=self.max_batch,
            on_text=on_text if streaming else None,
            # fp32: bf16 autocast in the decode loop meets a new KV length every step, and oneDNN builds bf16
            # kernels per shape; measured here (2 cores, AMX): 16 prompts x 16 tokens 1.6 s fp32, 1.9-37 s bf16
            bf16=False,
        )


def classify(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[Prompt],
    batch_size: int,
    truncate: bool = True,
) -> list[Classified]:
    """Each text's (or token-id prompt's) label and the log-probability of every label (log-softmax of the
    logits, never log(0))."""
    limit = context_length(model) or tokenizer.model_max_length
    encoded = _classifier_ids(model, tokenizer, texts, limit if truncate else None)
    logits = predict_logits(model, tokenizer, encoded, batch_size, native_bf16())
    logprobs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return [
        Classified(
            label=labels[int(row.argmax())],
            logprobs={label: float(v) if math.isfinite(v) else -9999.0 for label, v in zip(labels, row, strict=True)},
            prompt_tokens=len(ids),
        )
        for row, ids in zip(logprobs, encoded, strict=True)
    ]


def _classifier_ids(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], limit: int | None
) -> list[list[int]]:
    """Each prompt's token ids, cut to `limit` when given; an empty text still gets one token (eos)."""
    texts = [p for p in prompts if isinstance(p, str)]
    tokenized = iter(tokenizer(texts, truncation=limit is not None, max_length=limit)["input_ids"] if texts else [])
    vocab = vocab_size(model)
    encoded = [
        list(next(tokenized)) if isinstance(p, str) else check_token_ids(p, vocab, row)[:limit]
        for row, p in enumerate(prompts)
    ]
    return [ids or [tokenizer.eos_token_id] for ids in encoded]
