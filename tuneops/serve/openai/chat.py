"""POST /v1/chat/completions, OpenAI's Chat Completions for a generation model: the messages rendered with the
chat template its registered tokenizer carries (the one it was trained with: tuneops.data.chat), the answer cut
at the template's end of turn, whole or streamed as server-sent events. With `logprobs: true` each token comes
with its log-probability and the `top_logprobs` most likely tokens at its place (the model's own distribution,
before temperature and top_p); a streamed chunk carries its own tokens'."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import APIRouter, Request, Response
from fastapi.sse import EventSourceResponse

from tuneops.data.chat import render, turn_end
from tuneops.data.templates import check_messages
from tuneops.inference.batching import Event, Failed, InferenceRequest, TextDelta
from tuneops.inference.logprobs import Tokens
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
    generated,
    json_logprob,
    new_id,
    resolve,
    results,
    sse_event,
    submit,
    tally,
    unsent,
)
from tuneops.serve.openai.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    TokenLogprob,
    TopLogprob,
    Usage,
)

router = APIRouter()


@router.post("/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, response: Response
) -> ChatCompletion | EventSourceResponse:
    """OpenAI's Chat Completions for a generation model, its messages rendered with the version's chat template."""
    check_sampled(body, request.app.state.limits.max_tokens_limit)
    check_text([m.text() for m in body.messages], "messages")
    served = await resolve(request, body.model)
    if not served.generates:
        message = f"`{body.model}` is a classification model, not a chat model: use POST /v1/completions"
        raise APIError(404, message, param="model", code="model_not_supported")
    if not served.tokenizer.chat_template:
        raise APIError(400, f"`{body.model}` has no chat template", param="model", code="model_not_supported")
    try:
        prompt = render(served.tokenizer, check_messages(messages(body)), add_generation_prompt=True)
        end = turn_end(served.tokenizer)
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages", code="invalid_value") from None
    n = body.n or 1
    # a reply runs to the template's end of turn: the version's stop sequences are for completions ("\n" would
    # cut a ChatML reply at its first line)
    defaults = replace(served.generation, stop=[]) if served.generation is not None else None
    params = body.to_sampling_params(defaults, [end] if end else [])
    inference = InferenceRequest(served, [prompt] * n, params, asyncio.get_running_loop(), stream=bool(body.stream))
    first = await submit(request, inference, "messages")
    response.headers[VERSION_HEADER] = served.info.version
    reply = Reply(new_id("chatcmpl"), int(time.time()), body.model)
    if body.stream:
        return event_stream(stream(reply, inference, first, body), served, inference)
    answers = generated(await results(inference, first, "messages"))
    choices = [
        ChatChoice(
            index=i,
            message=ChatMessage(content=row.text),
            logprobs=logprobs(row.logprobs) if body.logprobs and row.logprobs is not None else None,
            finish_reason=row.finish_reason,
        )
        for i, row in enumerate(answers)
    ]
    return ChatCompletion(
        id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=tally(answers, n)
    )


def messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """OpenAI's messages as the chat template takes them (`developer` is the newer name for `system`)."""
    roles = {"developer": "system"}
    return [{"role": roles.get(m.role, m.role), "content": m.text()} for m in body.messages]


def logprobs(tokens: Tokens) -> ChoiceLogprobs:
    """Each token with its log-probability and the most likely tokens at its place (as many as top_logprobs)."""
    content = [
        TokenLogprob(
            token=token,
            logprob=json_logprob(lp),
            bytes=utf8(token),
            top_logprobs=[TopLogprob(token=t, logprob=json_logprob(v), bytes=utf8(t)) for t, v in top],
        )
        for token, lp, top in zip(tokens.tokens, tokens.logprobs, tokens.top, strict=True)
        if lp is not None
    ]
    return ChoiceLogprobs(content=content)


def utf8(token: str) -> list[int]:
    """A token's text as UTF-8 bytes (a token holding part of a character decodes to U+FFFD, so its bytes are
    that replacement character's, as vLLM gives them)."""
    return list(token.encode("utf-8", errors="replace"))


async def stream(
    reply: Reply, inference: InferenceRequest, first: Event, body: ChatCompletionRequest
) -> AsyncIterator[bytes]:
    """The assistant role, each answer's text as it comes, its rest and finish reason, usage when asked, [DONE]."""
    n = body.n or 1
    sent = [""] * n

    def chunk(choices: list[ChunkChoice], use: Usage | None = None) -> bytes:
        return sse_event(
            ChatCompletionChunk(id=reply.id, created=reply.created, model=reply.model, choices=choices, usage=use)
        )

    yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content="")) for i in range(n)])
    tokens_sent = [0] * n
    async for event in events(inference, first):
        if isinstance(event, TextDelta):
            sent[event.row] += event.text
            lp = logprobs(event.logprobs) if body.logprobs and event.logprobs is not None else None
            tokens_sent[event.row] += len(event.logprobs or ())
            yield chunk([ChunkChoice(index=event.row, delta=Delta(content=event.text), logprobs=lp)])
        elif isinstance(event, Failed):
            yield error_event(event.error, "messages")
        else:
            for i, row in enumerate(generated(event.results)):
                rest = unsent(row.text, sent[i])
                left = row.logprobs.since(tokens_sent[i]) if body.logprobs and row.logprobs is not None else None
                if rest or left:  # the rest of the text, and tokens that brought none (the end of turn's)
                    lp = logprobs(left) if left else None
                    yield chunk([ChunkChoice(index=i, delta=Delta(content=rest), logprobs=lp)])
                yield chunk([ChunkChoice(index=i, delta=Delta(), finish_reason=row.finish_reason)])
            if body.stream_options and body.stream_options.include_usage:
                yield chunk([], tally(event.results, n))
    yield DONE
