"""Concurrent requests answered together: one worker thread owns the models and runs one forward pass (or one
`generate` call) for every request that arrived within a short window, instead of one per request.

    request handlers (event loop) --Job--> queue.Queue --> worker thread: collect, group, run, answer

The worker takes the first waiting job, then whatever else arrives within `window_s` or is already waiting, up
to `max_batch` rows. Jobs are grouped by what must match to share a call (the same loaded version; for
generation the same max_tokens, stop sequences and sampling settings; every greedy request of a version alike),
and each group runs as one call. Answers go back to each request's event loop as events on its asyncio.Queue:
streamed text as it comes, then the result or the error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneops.models.loading import native_bf16, predict_logits

log = logging.getLogger("tuneops.serve")


@dataclass(frozen=True)
class Sampling:
    """A generation request's settings; jobs with equal Sampling share one `generate` call."""

    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool = False
    echo: bool = False

    def normalized(self) -> Sampling:
        """What a shared call needs equal. Seeds need not be: each row samples from its own generator (seeded
        `seed + row`), so a seeded request gives the same text whatever joins its batch. Greedy decoding ignores
        top_p as well: every greedy request of a version with the same max_tokens and stops shares a call."""
        top_p = 1.0 if self.temperature == 0 else self.top_p
        return Sampling(self.max_tokens, self.stop, self.temperature, top_p, None, self.logprobs, self.echo)

    def seeds(self, rows: int) -> list[int]:
        base = random.SystemRandom().randrange(2**31) if self.seed is None else self.seed
        return [base + row for row in range(rows)]


@dataclass(frozen=True)
class Classified:
    """A classification model's answer to one prompt: its label and every label's log-probability."""

    label: str
    logprobs: dict[str, float]
    prompt_tokens: int


class PromptTooLong(ValueError):
    """A prompt (with the tokens asked for) longer than the model's context."""

    def __init__(self, row: int, prompt_tokens: int, max_tokens: int, context: int) -> None:
        self.row, self.prompt_tokens, self.max_tokens, self.context = row, prompt_tokens, max_tokens, context
        asked = f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion)"
        super().__init__(f"this model's maximum context length is {context} tokens, but prompt {row} asks for {asked}")


@dataclass
class Job:
    """One request's rows for one model. `sampling` None: classify (each row's label)."""

    served: Any  # serving.Served: model, tokenizer, info
    prompts: list[str]
    sampling: Sampling | None
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    stream: bool = False
    truncate: bool = False  # /predict truncates long texts as it always has; the OpenAI routes refuse them

    def key(self) -> tuple[int, Sampling | None]:
        return id(self.served.model), None if self.sampling is None else self.sampling.normalized()

    def emit(self, *event: Any) -> None:
        """Hand an event to the request's event loop (called from the worker thread)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


def group_jobs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that may share one call, in arrival order of each group's first job."""
    groups: dict[tuple[int, Sampling | None], list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.key(), []).append(job)
    return list(groups.values())


def context_length(model: Any) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


@dataclass
class Stats:
    """What the worker did: how many calls for how many requests (tests and logs read it)."""

    calls: int = 0
    jobs: int = 0
    rows: int = 0
    largest_call: int = 0


class Batcher:
    """The worker thread and its queue; `submit` from request handlers, `close` at shutdown."""

    def __init__(self, window_s: float, max_batch: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.max_batch, self._clock = window_s, max_batch, clock
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.stats = Stats()

    def submit(self, job: Job) -> None:
        self._ensure_started()
        self._queue.put(job)

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
            jobs, stop = self._collect(first)
            for group in group_jobs(jobs):
                self._run(group)
            if stop:
                return

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """The first job and what joins it within the window, up to max_batch rows; True when told to stop."""
        jobs, rows = [first], len(first.prompts)
        deadline = self._clock() + self.window_s
        while rows < self.max_batch:
            remaining = deadline - self._clock()
            try:  # past the window, only what is already waiting joins
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            rows += len(job.prompts)
        return jobs, False

    def _run(self, group: list[Job]) -> None:
        runnable = [job for job in group if self._fits(job)]
        if not runnable:
            return
        rows = sum(len(job.prompts) for job in runnable)
        self.stats.calls += 1
        self.stats.jobs += len(runnable)
        self.stats.rows += rows
        self.stats.largest_call = max(self.stats.largest_call, rows)
        try:
            results = self._call(runnable)
        except Exception as exc:  # one bad call fails its requests, never the worker
            log.warning("a batch of %d requests failed: %s: %s", len(runnable), type(exc).__name__, exc)
            for job in runnable:
                job.emit("error", exc)
            return
        start = 0
        for job in runnable:
            job.emit("done", results[start : start + len(job.prompts)])
            start += len(job.prompts)

    def _fits(self, job: Job) -> bool:
        """Each prompt within the model's context (with the tokens asked for); the job fails alone otherwise."""
        if job.truncate:
            return True
        context = context_length(job.served.model)
        budget = job.sampling.max_tokens if job.sampling is not None else 0
        if context is None:
            return True
        for row, ids in enumerate(job.served.tokenizer(job.prompts)["input_ids"]):
            if len(ids) + budget > context:
                job.emit("error", PromptTooLong(row, len(ids), budget, context))
                return False
        return True

    def _call(self, jobs: list[Job]) -> list[Any]:
        prompts = [p for job in jobs for p in job.prompts]
        served, sampling = jobs[0].served, jobs[0].key()[1]
        if sampling is None:
            return classify(served.model, served.tokenizer, prompts, self.max_batch, truncate=jobs[0].truncate)
        from tuneops.inference.generation import generate

        owners = [(job, row) for job in jobs for row in range(len(job.prompts))]

        def on_text(index: int, delta: str) -> None:
            job, row = owners[index]
            if job.stream:
                job.emit("text", row, delta)

        streaming = any(job.stream for job in jobs)
        seeds = [seed for job in jobs for seed in job.sampling.seeds(len(job.prompts))]
        return generate(
            served.model,
            served.tokenizer,
            prompts,
            max_new_tokens=sampling.max_tokens,
            stop=sampling.stop,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seeds=seeds,
            batch_size=self.max_batch,
            logprobs=sampling.logprobs,
            echo=sampling.echo,
            on_text=on_text if streaming else None,
            # fp32: bf16 autocast in the decode loop meets a new KV length every step, and oneDNN builds bf16
            # kernels per shape; measured here (2 cores, AMX): 16 prompts x 16 tokens 1.6 s fp32, 1.9-37 s bf16
            bf16=False,
        )


def classify(model: Any, tokenizer: Any, texts: list[str], batch_size: int, truncate: bool = True) -> list[Classified]:
    """Each text's label and the log-probability of every label (log-softmax of the logits, never log(0))."""
    limit = context_length(model) or tokenizer.model_max_length
    encoded = tokenizer(texts, truncation=truncate, max_length=limit if truncate else None)["input_ids"]
    encoded = [ids or [tokenizer.eos_token_id] for ids in encoded]  # an empty text still gets one token
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
