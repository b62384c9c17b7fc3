"""The engine behind the OpenAI routes: one request in (an InferenceRequest: a version's prompts and its
SamplingParams), its events out on the request's own queue (TextDelta as text comes, then Finished or Failed).

    routes --InferenceRequest--> Engine.submit --> events: TextDelta* (Finished | Failed)

Two engines take the same requests and give the same events:
- `BuiltinEngine`: tuneops' own batcher (inference/batching.py: one worker thread, requests batched per window);
- `VllmEngine` (inference/vllm_engine.py): vLLM's OpenAI server, one process per served generation version.

The built-in engine's torch threads are a budget (`serve.num_threads`): torch takes every core by default, and
beside one other busy process its threads wait on each other (measured on the 2-core machine here, 16 clients,
SmolLM2-135M: 0.54-0.96 req/s with both threads against 4.38 req/s with one; README, Thread budget).
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

import torch

from tuneops.inference.batching import Batcher, InferenceRequest

log = logging.getLogger("tuneops.serve")


class EngineUnavailable(RuntimeError):
    """The engine cannot answer now (a vLLM process died mid-answer, or did not answer in time): a 503, and the
    request can be sent again."""


class Engine(Protocol):
    """What the routes hand requests to."""

    name: str

    def submit(self, request: InferenceRequest, bounded: bool = False) -> None:
        """Start answering the request; its events arrive on `request.events`. `bounded`: refused at once
        (Overloaded, the server's 429) rather than queued past the engine's limit. Called off the event loop."""
        ...

    def close(self) -> None:
        """Stop: the worker thread, and any process the engine started."""
        ...


class BuiltinEngine:
    """tuneops' own batcher behind the engine interface."""

    name = "builtin"

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher

    def submit(self, request: InferenceRequest, bounded: bool = False) -> None:
        self.batcher.submit(request, bounded)

    def close(self) -> None:
        self.batcher.close()


def thread_budget(configured: int | None, cores: int, omp_num_threads: str = "") -> int:
    """Threads for the built-in engine's torch: `configured` (serve.num_threads), else OMP_NUM_THREADS (what every
    OpenMP program honours), else half the cores, at least one. Half: on the 2-core machine here one thread loses
    little idle and holds up beside another busy process, where two threads collapse (README, Thread budget:
    bench/serve_load.py's idle and shared-CPU conditions). vLLM's CPU build does the same: it serves with one
    torch thread of two cores ("Reducing Torch threads from 2 to 1 for serving")."""
    if configured is not None:
        return configured
    if omp_num_threads.isdigit() and int(omp_num_threads) > 0:
        return int(omp_num_threads)
    return max(1, cores // 2)


def set_thread_budget(configured: int | None) -> int:
    """Apply the budget to torch's intra-op threads (process-wide: the batcher's worker runs every call)."""
    threads = thread_budget(configured, os.cpu_count() or 1, os.environ.get("OMP_NUM_THREADS", ""))
    torch.set_num_threads(threads)
    log.info("built-in engine: %d torch thread(s) of %d core(s)", threads, os.cpu_count() or 1)
    return threads
