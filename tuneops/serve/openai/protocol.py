"""OpenAI's request and response objects, as `tuneops serve` speaks them (field names from openai-python's
`types/completion*.py`, `types/chat/*.py` and `types/model.py`; vLLM's entrypoints/openai/protocol.py does the same).

A request becomes the engine's settings in one place, `to_sampling_params` (vLLM's CompletionRequest has the
same method): an OpenAI sampling parameter is a field here, set there, and a field of
tuneops.inference.sampling.SamplingParams that its `next_tokens` honours.

Requests forbid unknown fields: OpenAI answers an unknown argument with a 400 naming it, and a typo silently
ignored would change what a client thinks it asked for. Parameters tuneops cannot honour are accepted only at
their neutral value (`refused` says which); the README's table lists every parameter and what happens to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tuneops.inference.sampling import SamplingParams

if TYPE_CHECKING:
    from tuneops.registry.catalog import GenerationSettings

# OpenAI's caps: up to 4 stop sequences, logprobs up to 5 (completions) and top_logprobs up to 20 (chat).
MAX_STOP = 4
MAX_LOGPROBS = 5
MAX_TOP_LOGPROBS = 20
MAX_N = 16
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions, for a version that states none of its own
DEFAULT_TEMPERATURE = 1.0  # OpenAI's default


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(Request):
    include_usage: bool | None = None


class Sampled(Request):
    """What completions and chat completions share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Accepted at their neutral value only (0, {} or null): tuneops has no penalties and no logit bias.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None  # accepted and ignored (never logged)

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def token_budget(self) -> int | None:
        return self.max_tokens

    def wants_logprobs(self) -> bool:
        return False

    def echoes(self) -> bool:
        return False

    def to_sampling_params(self, defaults: GenerationSettings | None, turn_end: Sequence[str] = ()) -> SamplingParams:
        """The engine's settings for this request. What it leaves unset comes from the version's generation
        settings (its max_new_tokens and stop sequences), else OpenAI's defaults; `turn_end` (a chat template's
        end of turn) stops first whatever the request's stops."""
        stop = self.stops() if self.stop is not None else (defaults.stop if defaults is not None else [])
        default_max = defaults.max_new_tokens if defaults is not None else DEFAULT_MAX_TOKENS
        return SamplingParams(
            max_tokens=self.token_budget() or default_max,
            stop=(*turn_end, *(stop or [])),
            temperature=DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            logprobs=self.wants_logprobs(),
            echo=self.echoes(),
        )

    def refused(self) -> tuple[str, str] | None:
        """(param, why) for a parameter set to something tuneops cannot do, else None."""
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0):
                return name, f"{name} is not supported (only 0)"
        if self.logit_bias:
            return "logit_bias", "logit_bias is not supported (only {} or null)"
        stops = self.stops() or []
        if len(stops) > MAX_STOP:
            return "stop", f"stop takes at most {MAX_STOP} sequences, not {len(stops)}"
        if "" in stops:
            return "stop", "an empty stop sequence would end every completion before it starts"
        return None


class CompletionRequest(Sampled):
    prompt: str | list[str]
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None

    def wants_logprobs(self) -> bool:
        return self.logprobs is not None  # logprobs=0: the chosen token's log-probability only

    def echoes(self) -> bool:
        return bool(self.echo)

    def refused(self) -> tuple[str, str] | None:
        if self.best_of not in (None, self.n or 1):
            return "best_of", "best_of is not supported (only equal to n)"
        if self.suffix:
            return "suffix", "suffix (insertion) is not supported"
        if isinstance(self.prompt, list) and not self.prompt:
            return "prompt", "prompt is an empty list"
        return super().refused()


class ContentPart(Request):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `name` and the like: accepted, unused

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ResponseFormat(Request):
    type: Literal["text"]


class ChatCompletionRequest(Sampled):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, JsonValue]] | None = None
    tool_choice: JsonValue = None
    functions: list[dict[str, JsonValue]] | None = None
    function_call: JsonValue = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None  # nothing is stored either way
    metadata: dict[str, str] | None = None  # accepted and ignored

    def refused(self) -> tuple[str, str] | None:
        for name in ("tools", "functions"):
            if getattr(self, name):
                return name, f"{name} (function calling) is not supported"
        for name in ("tool_choice", "function_call"):
            if getattr(self, name) not in (None, "none"):
                return name, f"{name} is not supported"
        return super().refused()

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def wants_logprobs(self) -> bool:
        return bool(self.logprobs)


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tuneops"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Logprobs(BaseModel):
    text_offset: list[int]
    token_logprobs: list[float | None]
    tokens: list[str]
    top_logprobs: list[dict[str, float] | None]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: Logprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    """A completion, and (with stream) each chunk of one: the same shape, as OpenAI's."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
