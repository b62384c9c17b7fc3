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

Bounded: the tokens of the requests waiting or being answered (each prompt's tokens and the completion tokens it
may ask for) are counted, and a `bounded` submit that would take them past `max_queued_tokens` is refused at once
with Overloaded (the server's 429 and retry-after) instead of growing the queue; a request alone is always taken. A
request whose client went away (`cancel()`, a stream the client closed) is dropped before its call, or leaves its
call at the next decoding step, its row's compute and its tokens freed for the others.
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

from tuneops.inference.admission import Overloaded, admits, prompt_lengths
from tuneops.inference.generation import Completion, generate_with
from tuneops.inference.logprobs import Tokens
from tuneops.inference.prompts import Prompt, classifier_ids
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
    """A loaded version as batching needs it (registry.served.Served is the real one)."""

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
    lengths: list[int] | None = field(default=None, init=False)  # each prompt's tokens, counted at submit
    cancelled: threading.Event = field(default_factory=threading.Event, init=False)
    steps: int = field(default=0, init=False)  # decoding steps its rows ran (the worker counts them)
    steps_at_cancel: int | None = field(default=None, init=False)
    steps_after_cancel: int = field(default=0, init=False)  # how many ran after cancel(): at most the one under way

    def cancel(self) -> None:
        """The client went away: drop the request before its call, or its rows at the next decoding step."""
        if not self.cancelled.is_set():
            self.steps_at_cancel = self.steps
            self.cancelled.set()

    def tokens(self) -> int:
        """What the request may hold of the model's context: its prompts' tokens and the tokens each may ask for."""
        budget = self.sampling.max_tokens if self.sampling is not None else 0
        return sum(self.lengths or ()) + budget * len(self.prompts)

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
    cancelled: int = 0  # requests whose client went away before they finished
    steps_after_cancel: int = 0  # the most decoding steps a cancelled request's rows ran after cancel() (<= 1)
    cancelled_tokens: int = 0  # completion tokens the cancelled requests' rows had generated when they left
    refused: int = 0  # bounded submits refused as Overloaded
    queued_tokens: int = 0  # tokens of the requests waiting or being answered now
    most_queued_tokens: int = 0


class Batcher:
    """The worker thread and its queue; `submit` from request handlers, `close` at shutdown."""

    def __init__(
        self,
        window_s: float,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
        max_queued_tokens: int | None = None,
    ) -> None:
        self.window_s, self.max_batch, self._clock = window_s, max_batch, clock
        self.max_queued_tokens = max_queued_tokens
        self._queue: queue.Queue[InferenceRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._tokens_lock = threading.Lock()
        self.stats = Stats()

    def submit(self, request: InferenceRequest, bounded: bool = False) -> None:
        """Queue the request (its prompts tokenized here, in the caller's thread); `bounded`: Overloaded when its
        tokens would take the queue past max_queued_tokens."""
        request.lengths = prompt_lengths(request.served.tokenizer, request.prompts)
        asked = request.tokens()
        with self._tokens_lock:
            queued = self.stats.queued_tokens
            if bounded and not admits(queued, asked, self.max_queued_tokens):
                self.stats.refused += 1
                raise Overloaded(queued, asked, self.max_queued_tokens or 0)
            self.stats.queued_tokens += asked
            self.stats.most_queued_tokens = max(self.stats.most_queued_tokens, self.stats.queued_tokens)
        self._ensure_started()
        self._queue.put(request)

    def _end(self, request: InferenceRequest, event: Finished | Failed) -> None:
        """The request's last event; its tokens leave the queue's count."""
        with self._tokens_lock:
            self.stats.queued_tokens -= request.tokens()
        if request.cancelled.is_set():
            self.stats.cancelled += 1
            self.stats.steps_after_cancel = max(self.stats.steps_after_cancel, request.steps_after_cancel)
            if isinstance(event, Finished):
                self.stats.cancelled_tokens += sum(getattr(row, "completion_tokens", 0) for row in event.results)
        request.emit(event)

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
        runnable = [request for request in group if not self._gone(request) and self._admit(request)]
        if runnable:
            self._answer(runnable)

    def _gone(self, request: InferenceRequest) -> bool:
        """A request whose client went away while it waited: ended without a call."""
        if request.cancelled.is_set():
            self._end(request, Failed(ConnectionAbortedError("the client went away")))
        return request.cancelled.is_set()

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
                    self._end(request, Failed(exc))
                elif self._admit(request):  # admitted again: its generators start over from their seeds
                    self._answer([request])
            return
        start = 0
        for request in requests:
            self._end(request, Finished(results[start : start + len(request.prompts)]))
            start += len(request.prompts)

    def _admit(self, request: InferenceRequest) -> bool:
        """Whether the request may join a call: what fails it alone is found here, before it shares one."""
        try:
            self._check_context(request)
            request.generators = self._generators(request)
        except Exception as exc:
            log.info("a request was refused before its call: %s: %s", type(exc).__name__, exc)
            self._end(request, Failed(exc))
            return False
        return True

    def _check_context(self, request: InferenceRequest) -> None:
        """Each prompt within the model's context (with the tokens asked for), else PromptTooLong."""
        context = context_length(request.served.model)
        if request.truncate or context is None:
            return
        budget = request.sampling.max_tokens if request.sampling is not None else 0
        for row, length in enumerate(request.lengths or prompt_lengths(request.served.tokenizer, request.prompts)):
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
            if request.stream and not request.cancelled.is_set():
                request.streamed = True
                request.emit(TextDelta(row, delta, tokens))

        def stopped(index: int) -> bool:
            """Asked after each decoding step of each row: a cancelled request's rows leave the call here."""
            request, row = owners[index]
            request.steps += row == 0
            if not request.cancelled.is_set():
                return False
            request.steps_after_cancel = request.steps - (request.steps_at_cancel or 0)
            return True

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
            stopped=stopped,
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
    encoded = classifier_ids(model, tokenizer, texts, limit if truncate else None)
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
