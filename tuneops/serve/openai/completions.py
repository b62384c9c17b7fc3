"""POST /v1/completions, OpenAI's Completions: text for each prompt (a generation model) or its label (a
classification model), whole or streamed as server-sent events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.sse import EventSourceResponse

from tuneops.inference.batching import Classified, Event, Failed, InferenceRequest, TextDelta
from tuneops.inference.generation import Completion as Generated
from tuneops.serve.errors import APIError
from tuneops.serve.openai.common import (
    DONE,
    VERSION_HEADER,
    Reply,
    check_sampled,
    check_text,
    error_event,
    event_stream,
    events,
    new_id,
    resolve,
    results,
    sse_event,
    submit,
    tally,
    unsent,
)
from tuneops.serve.openai.protocol import Completion, CompletionChoice, CompletionRequest, Logprobs, Usage

router = APIRouter()


@router.post("/completions", response_model=Completion)
async def completions(
    request: Request, body: CompletionRequest, response: Response
) -> Completion | EventSourceResponse:
    """OpenAI's Completions: text for each prompt (a generation model) or its label (a classification model)."""
    limits = request.app.state.limits
    check_sampled(body, limits.max_tokens_limit)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    check_text(prompts, "prompt")
    n = body.n or 1
    if len(prompts) * n > limits.max_texts:
        raise APIError(
            400,
            f"{len(prompts)} prompts x n={n} is over this server's limit of {limits.max_texts} completions a request",
            param="prompt",
            code="invalid_value",
        )
    served = await resolve(request, body.model)
    params = body.to_sampling_params(served.generation) if served.generates else None
    rows = [p for p in prompts for _ in range(n)]
    inference = InferenceRequest(served, rows, params, asyncio.get_running_loop(), stream=bool(body.stream))
    first = await submit(request, inference, "prompt")
    response.headers[VERSION_HEADER] = served.info.version
    reply = Reply(new_id("cmpl"), int(time.time()), body.model)
    if body.stream:
        return event_stream(stream(reply, inference, first, rows, body), served)
    answers = await results(inference, first, "prompt")
    choices = [choice(i, row, rows[i], body) for i, row in enumerate(answers)]
    return Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=tally(answers, n))


def choice(i: int, row: Generated | Classified, prompt: str, body: CompletionRequest) -> CompletionChoice:
    if isinstance(row, Classified):
        logprobs = None if body.logprobs is None else classified_logprobs(row, body.logprobs, prompt, bool(body.echo))
        text = prompt + row.label if body.echo else row.label
        return CompletionChoice(index=i, text=text, logprobs=logprobs, finish_reason="stop")
    logprobs = None if body.logprobs is None else generated_logprobs(row, body.logprobs)
    # generate() put the prompt in front itself when asked to echo
    return CompletionChoice(index=i, text=row.text, logprobs=logprobs, finish_reason=row.finish_reason)


def classified_logprobs(row: Classified, k: int, prompt: str, echo: bool) -> Logprobs:
    top = dict(sorted(row.logprobs.items(), key=lambda kv: -kv[1])[:k])
    return Logprobs(
        text_offset=[len(prompt) if echo else 0],
        token_logprobs=[row.logprobs[row.label]],
        tokens=[row.label],
        top_logprobs=[top],
    )


def generated_logprobs(row: Generated, k: int) -> Logprobs:
    """Each generated token and its log-probability; top_logprobs holds the chosen token only (tuneops's
    generate keeps no alternatives)."""
    tokens, lps = list(row.tokens or []), list(row.token_logprobs or [])
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    top = [{t: lp} if k > 0 and lp is not None else None for t, lp in zip(tokens, lps, strict=False)]
    return Logprobs(text_offset=offsets, token_logprobs=lps, tokens=tokens, top_logprobs=top)


async def stream(
    reply: Reply, inference: InferenceRequest, first: Event, rows: list[str], body: CompletionRequest
) -> AsyncIterator[bytes]:
    """Each row's text as it comes, then each row's rest with its finish reason, usage when asked, [DONE]."""
    sent = [""] * len(rows)

    def chunk(choices: list[CompletionChoice], use: Usage | None = None) -> bytes:
        return sse_event(Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=use))

    async for event in events(inference, first):
        if isinstance(event, TextDelta):
            sent[event.row] += event.text
            yield chunk([CompletionChoice(index=event.row, text=event.text, finish_reason=None)])
        elif isinstance(event, Failed):
            yield error_event(event.error, "prompt")
        else:
            for i, row in enumerate(event.results):
                final = choice(i, row, rows[i], body)
                rest = unsent(final.text, sent[i])
                yield chunk([final.model_copy(update={"text": rest})])
            if body.stream_options and body.stream_options.include_usage:
                yield chunk([], tally(event.results, body.n or 1))
    yield DONE
