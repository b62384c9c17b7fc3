"""`serve.engine: vllm`: generation requests answered by vLLM's OpenAI server, behind the same engine interface.

tuneops keeps everything in front of the engine: the registry and aliases, auth, body limits, the checks and error
shapes, the chat template (a chat request reaches vLLM rendered, as a completion: both engines see the very same
prompt), X-Model-Version. Each row of a request (a prompt, n times) becomes one POST /v1/completions to the
version's vLLM process (inference/vllm_process.py), streamed when the client streams, and its answer comes back
as the built-in engine's events: TextDelta as text comes, then Finished with a Completion per row.

What goes to the built-in engine instead (the version is loaded in tuneops too): classifiers, a request asking
for what this proxy does not map (echo, logprobs: vLLM scores them with its own logprob modes), and every request
of a version whose vLLM is still starting, restarting or gave up. So no request waits on a start (80-110 s on the
2-core CPU here). A process that dies under a request that has not streamed yet: the request is answered by the
built-in engine and the process restarted; one that had streamed fails with a 503 (it cannot start over).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tuneops.inference.batching import Failed, Finished, InferenceRequest, TextDelta, context_length
from tuneops.inference.engine import BuiltinEngine, EngineUnavailable
from tuneops.inference.generation import Completion
from tuneops.inference.sampling import SamplingParams
from tuneops.inference.vllm_process import Fleet, Runner, State, model_len, vllm_python
from tuneops.registry.export import EXPORTED_DIR

if TYPE_CHECKING:
    from tuneops.config.params import VllmParams
    from tuneops.registry.catalog import Catalog

log = logging.getLogger("tuneops.serve")

# SamplingParams fields and the vLLM /v1/completions field each becomes; a field set to something other than its
# default that is not here goes to the built-in engine (see `unmapped`)
MAPPED = {"max_tokens": "max_tokens", "stop": "stop", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}


def unmapped(params: SamplingParams) -> list[str]:
    """The settings of `params` this proxy does not hand vLLM (not at their defaults): echo, logprobs, ..."""
    defaults = SamplingParams(max_tokens=params.max_tokens)
    return [
        f.name
        for f in dataclasses.fields(params)
        if f.name not in MAPPED and getattr(params, f.name) != getattr(defaults, f.name)
    ]


def completion_body(name: str, prompt: str | list[int], params: SamplingParams, row: int, stream: bool) -> dict:
    """vLLM's /v1/completions body for one row. Each row its own seed, `seed + row`, as the built-in engine does."""
    body: dict[str, Any] = {
        "model": name,
        "prompt": prompt,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stream": stream,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed + row
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def completion(choice: dict, usage: dict | None, text: str | None = None) -> Completion:
    """vLLM's choice (and usage) as the built-in engine's Completion."""
    usage = usage or {}
    reason = choice.get("finish_reason")
    return Completion(
        text=choice.get("text", "") if text is None else text,
        finish_reason="length" if reason == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def vllm_error(status: int, body: bytes) -> Exception:
    """vLLM's error answer as the request's error: its 4xx the client's mistake (a ValueError: a 400), else ours."""
    try:
        message = json.loads(body).get("error", {}).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")
    if 400 <= status < 500:
        return ValueError(f"vLLM refused the request: {message[:500]}")
    return RuntimeError(f"vLLM failed ({status}): {message[:500]}")


class Unreachable(Exception):
    """vLLM's process could not be reached (it died, or is being restarted)."""


class VllmEngine:
    """Generation versions on vLLM, the rest on the built-in engine (see the module's docstring)."""

    name = "vllm"

    def __init__(self, builtin: BuiltinEngine, fleet: Fleet, request_timeout_s: float) -> None:
        self.builtin, self.fleet, self.timeout = builtin, fleet, request_timeout_s
        self.answered = {"vllm": 0, "builtin": 0}  # requests each engine answered (logs and tests read it)
        self._said: set[str] = set()
        self._pending: set[concurrent.futures.Future] = set()
        # one client per vLLM process and event loop, kept: a new httpx client per request builds an SSL context
        # (24 ms of CPU here) and a connection each time, which put engine: vllm at 0.6x vLLM alone's req/CPU-s
        self._clients: dict[tuple[int, str], httpx.AsyncClient] = {}

    def submit(self, request: InferenceRequest, bounded: bool = False) -> None:
        runner = self._runner_for(request)
        if runner is None:
            self.answered["builtin"] += 1
            self.builtin.submit(request, bounded)
            return
        # the routes submit from a worker thread: the answer runs on the request's own event loop
        future = asyncio.run_coroutine_threadsafe(self._answer(request, runner), request.loop)
        self._pending.add(future)  # kept until done, so it is never collected mid-answer
        future.add_done_callback(self._pending.discard)

    def close(self) -> None:
        self.fleet.close()
        self.builtin.close()

    def _runner_for(self, request: InferenceRequest) -> Runner | None:
        """The ready vLLM process to answer the request, or None for the built-in engine."""
        served, params = request.served, request.sampling
        if params is None or not getattr(served, "generates", False):
            return None
        if extra := unmapped(params):
            self._say_once(f"unmapped:{','.join(extra)}", f"{', '.join(extra)}: answered by the built-in engine")
            return None
        if not fits(request, model_len(self.fleet.settings.max_model_len, context_length(served.model))):
            self._say_once("too-long", "a prompt longer than serve.vllm.max_model_len: answered by the built-in engine")
            return None
        runner = self.fleet.runner(served)
        if runner.state is not State.READY:
            self._say_once(
                f"{runner.name}:{runner.state.value}:{runner.restarts}",
                f"vLLM for {runner.name} is {runner.state.value}: the built-in engine answers meanwhile",
            )
            return None
        return runner

    def _client(self, base_url: str) -> httpx.AsyncClient:
        """The kept client for the vLLM process at `base_url` on the running loop (a restart's new port: a new one)."""
        key = (id(asyncio.get_running_loop()), base_url)
        if (http := self._clients.get(key)) is None:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
            http = httpx.AsyncClient(base_url=base_url, timeout=self.timeout, limits=limits, trust_env=False)
            self._clients[key] = http
        return http

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.info(message)

    async def _answer(self, request: InferenceRequest, runner: Runner) -> None:
        try:
            http = self._client(runner.base_url)
            rows = [self._row(http, runner.name, request, row) for row in range(len(request.prompts))]
            results = await asyncio.gather(*rows)
        except Unreachable as exc:
            if request.streamed:
                request.emit(Failed(EngineUnavailable(f"the vLLM process for {runner.name} {exc}; send it again")))
                return
            log.warning("vLLM for %s %s: the built-in engine answers this request", runner.name, exc)
            self.answered["builtin"] += 1
            self.builtin.submit(request)  # nothing was sent yet: the built-in engine starts it afresh
            return
        except Exception as exc:  # one request's failure, never the engine's
            request.emit(Failed(exc))
            return
        self.answered["vllm"] += 1
        request.emit(Finished(list(results)))

    async def _row(self, http: httpx.AsyncClient, name: str, request: InferenceRequest, row: int) -> Completion:
        body = completion_body(name, request.prompts[row], request.sampling, row, request.stream)
        try:
            if not request.stream:
                response = await http.post("/v1/completions", json=body)
                if response.status_code != 200:
                    raise vllm_error(response.status_code, response.content)
                answer = response.json()
                return completion(answer["choices"][0], answer.get("usage"))
            return await self._streamed(http, body, request, row)
        except httpx.TimeoutException:
            raise EngineUnavailable(f"vLLM for {name} gave no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"could not be reached ({type(exc).__name__})") from None

    async def _streamed(self, http: httpx.AsyncClient, body: dict, request: InferenceRequest, row: int) -> Completion:
        text, last, usage = [], {}, None
        async with http.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise vllm_error(response.status_code, await response.aread())
            async for chunk in sse_json(response.aiter_lines()):
                if request.cancelled.is_set():  # the client went away: closing the stream aborts it in vLLM
                    raise ConnectionAbortedError("the client went away")
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    last = choice
                    if delta := choice.get("text"):
                        text.append(delta)
                        request.streamed = True
                        request.emit(TextDelta(row, delta))
        return completion(last, usage, "".join(text))


async def sse_json(lines: AsyncIterator[str]) -> AsyncIterator[dict]:
    """The JSON of each `data:` line of a server-sent event stream, up to `data: [DONE]`."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def fits(request: InferenceRequest, max_model_len: int | None) -> bool:
    """Whether every prompt with the tokens asked for fits vLLM's --max-model-len. One that does not goes to the
    built-in engine, which answers it within the model's own context or refuses it as it always does."""
    if max_model_len is None or request.sampling is None:
        return True
    texts = [p for p in request.prompts if isinstance(p, str)]
    lengths = [len(ids) for ids in request.served.tokenizer(texts)["input_ids"]] if texts else []
    lengths += [len(p) for p in request.prompts if not isinstance(p, str)]
    return max(lengths, default=0) + request.sampling.max_tokens <= max_model_len


def attach(catalog: Catalog, settings: VllmParams, root: Path) -> tuple[Fleet, Callable[[BuiltinEngine], VllmEngine]]:
    """vLLM for `catalog`'s generation versions: the Fleet (its processes follow the catalog's versions; an alias
    moves only once its new version's vLLM answers) and what makes the engine around the built-in one. Exports go
    where registry/export.py puts every export, under `root`; the processes' logs beside them."""
    fleet = Fleet(settings, vllm_python(settings.python), root, root / EXPORTED_DIR)
    fleet.live = catalog.live
    catalog.ready = fleet.ready
    return fleet, lambda builtin: VllmEngine(builtin, fleet, settings.request_timeout_s)
