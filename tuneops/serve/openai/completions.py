"""POST /v1/completions, OpenAI's Completions: text for each prompt (a generation model) or its label (a
classification model), whole or streamed as server-sent events.

A prompt is a text or token ids (the model sees exactly those ids; echo gives their decoded text). With
`logprobs: k` each token comes with its log-probability and the k most likely tokens at its place plus the chosen
one (OpenAI: up to k + 1), from the model's own distribution before temperature and top_p (vLLM's default);
`echo` puts the prompt's tokens first, the first one's log-probability null (nothing precedes it). With
`max_tokens: 0` and echo that is the prompt scored and nothing generated: how evaluation harnesses
(lm-eval-harness) read a model's log-likelihood of a text. A streamed chunk carries its own tokens' logprobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.sse import EventSourceResponse

from tuneops.inference.batching import Classified, Event, Failed, InferenceRequest, TextDelta
from tuneops.inference.generation import Completion as Generated
from tuneops.inference.logprobs import Tokens
from tuneops.inference.prompts import Prompt, check_token_ids, vocab_size
from tuneops.registry.served import Served
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
    json_logprob,
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
    prompts = body.prompts()
    check_text([p for p in prompts if isinstance(p, str)], "prompt")
    n = body.n or 1
    if len(prompts) * n > limits.max_texts:
        raise APIError(
            400,
            f"{len(prompts)} prompts x n={n} is over this server's limit of {limits.max_texts} completions a request",
            param="prompt",
            code="invalid_value",
        )
    served = await resolve(request, body.model)
    check_token_prompts(prompts, served)
    params = body.to_sampling_params(served.generation) if served.generates else None
    rows = [p for p in prompts for _ in range(n)]
    inference = InferenceRequest(served, rows, params, asyncio.get_running_loop(), stream=bool(body.stream))
    first = await submit(request, inference, "prompt")
    response.headers[VERSION_HEADER] = served.info.version
    reply = Reply(new_id("cmpl"), int(time.time()), body.model)
    shown = [shown_text(p, served) for p in rows]
    if body.stream:
        return event_stream(stream(reply, inference, first, shown, body), served, inference)
    answers = await results(inference, first, "prompt")
    choices = [choice(i, row, shown[i], body) for i, row in enumerate(answers)]
    return Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=tally(answers, n))


def check_token_prompts(prompts: list[Prompt], served: Served) -> None:
    """Token-id prompts hold only ids the model has (an id past its table would fail its whole batch's call)."""
    vocab = vocab_size(served.model)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            try:
                check_token_ids(prompt, vocab, i)
            except ValueError as exc:
                raise APIError(400, str(exc), param="prompt", code="invalid_value") from None


def shown_text(prompt: Prompt, served: Served) -> str:
    """A prompt as echo shows it: its text, or its token ids decoded."""
    return prompt if isinstance(prompt, str) else served.tokenizer.decode(prompt)


def choice(i: int, row: Generated | Classified, prompt: str, body: CompletionRequest) -> CompletionChoice:
    if isinstance(row, Classified):
        logprobs = None if body.logprobs is None else classified_logprobs(row, body.logprobs, prompt, bool(body.echo))
        text = prompt + row.label if body.echo else row.label
        return CompletionChoice(index=i, text=text, logprobs=logprobs, finish_reason="stop")
    logprobs = None if body.logprobs is None or row.logprobs is None else generated_logprobs(row.logprobs)
    # generate() put the prompt in front itself when asked to echo
    return CompletionChoice(index=i, text=row.text, logprobs=logprobs, finish_reason=row.finish_reason)


def classified_logprobs(row: Classified, k: int, prompt: str, echo: bool) -> Logprobs:
    top = dict(sorted(row.logprobs.items(), key=lambda kv: -kv[1])[:k])
    top.setdefault(row.label, row.logprobs[row.label])  # the answer's own, as for generated tokens (k = 0 too)
    return Logprobs(
        text_offset=[len(prompt) if echo else 0],
        token_logprobs=[row.logprobs[row.label]],
        tokens=[row.label],
        top_logprobs=[top],
    )


def generated_logprobs(tokens: Tokens, offset: int = 0) -> Logprobs:
    """Each token, where its text starts (from `offset`: what the choice's earlier chunks sent), its
    log-probability, and the most likely tokens at its place with the chosen one (up to k + 1, as OpenAI)."""
    offsets, at = [], offset
    for token in tokens.tokens:
        offsets.append(at)
        at += len(token)
    top: list[dict[str, float] | None] = []
    for token, logprob, alternatives in zip(tokens.tokens, tokens.logprobs, tokens.top, strict=True):
        place = None if logprob is None else {text: json_logprob(lp) for text, lp in alternatives}
        if place is not None:
            place.setdefault(token, json_logprob(logprob))
        top.append(place)
    logprobs = [None if lp is None else json_logprob(lp) for lp in tokens.logprobs]
    return Logprobs(text_offset=offsets, token_logprobs=logprobs, tokens=tokens.tokens, top_logprobs=top)


async def stream(
    reply: Reply, inference: InferenceRequest, first: Event, prompts: list[str], body: CompletionRequest
) -> AsyncIterator[bytes]:
    """Each row's text as it comes with its tokens' logprobs when asked, then each row's rest (text and tokens)
    with its finish reason, usage when asked, [DONE]."""
    sent, tokens_sent = [""] * len(prompts), [0] * len(prompts)

    def chunk(choices: list[CompletionChoice], use: Usage | None = None) -> bytes:
        return sse_event(Completion(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=use))

    async for event in events(inference, first):
        if isinstance(event, TextDelta):
            lp = None
            if body.logprobs is not None and event.logprobs is not None:
                lp = generated_logprobs(event.logprobs, len(sent[event.row]))
                tokens_sent[event.row] += len(event.logprobs)
            sent[event.row] += event.text
            yield chunk([CompletionChoice(index=event.row, text=event.text, logprobs=lp, finish_reason=None)])
        elif isinstance(event, Failed):
            yield error_event(event.error, "prompt")
        else:
            for i, row in enumerate(event.results):
                final = choice(i, row, prompts[i], body)
                update: dict[str, object] = {"text": unsent(final.text, sent[i])}
                if isinstance(row, Generated) and final.logprobs is not None and row.logprobs is not None:
                    update["logprobs"] = generated_logprobs(row.logprobs.since(tokens_sent[i]), len(sent[i]))
                yield chunk([final.model_copy(update=update)])
            if body.stream_options and body.stream_options.include_usage:
                yield chunk([], tally(event.results, body.n or 1))
    yield DONE
