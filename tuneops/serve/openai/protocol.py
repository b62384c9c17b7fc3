"""OpenAI's request and response objects, as `tuneops serve` speaks them (field names from openai-python's
`types/completion*.py`, `types/chat/*.py` and `types/model.py`; vLLM's entrypoints/openai/protocol.py does the same).

A request becomes the engine's settings in one place, `to_sampling_params` (vLLM's CompletionRequest has the
same method): an OpenAI sampling parameter is a field here, set there, and a field of
tuneops.inference.sampling.SamplingParams that its `next_tokens` honours.

Requests forbid unknown fields: OpenAI answers an unknown argument with a 400 naming it, and a typo silently
ignored would change what a client thinks it asked for. A parameter OpenAI defines is either used, or accepted
and ignored where it cannot change the answer (`ignored` names them: caching, billing and tracking hints; the
route logs each name once), or refused where it would change the answer and tuneops cannot honour it (`refused`
says which, and accepts its neutral value); the README's table lists every parameter and what happens to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tuneops.inference.sampling import SamplingParams

if TYPE_CHECKING:
    from tuneops.registry.served import GenerationSettings

# OpenAI's caps: up to 4 stop sequences, logprobs up to 5 (completions) and top_logprobs up to 20 (chat).
MAX_STOP = 4
MAX_LOGPROBS = 5
MAX_TOP_LOGPROBS = 20
MAX_N = 16
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions, for a version that states none of its own
DEFAULT_TEMPERATURE = 1.0  # OpenAI's default
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # OpenAI's seed: a signed 64-bit integer

TokenId = Annotated[int, Field(ge=0, strict=True)]  # strict: `true` is not token 1


class Refusal(NamedTuple):
    """A parameter set to something tuneops does not do: which, why, and OpenAI's error code for it."""

    param: str
    message: str
    code: str = "unsupported_parameter"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # set, these change nothing here (routing, caching, billing, tracking hints): accepted and ignored, as vLLM does
    IGNORED: ClassVar[tuple[str, ...]] = ()

    def ignored(self) -> list[str]:
        """The parameters the client set that change nothing here (a nested one as `stream_options.x`)."""
        names = [name for name in self.IGNORED if getattr(self, name) is not None]
        for name, value in self:
            if isinstance(value, Request):
                names += [f"{name}.{inner}" for inner in value.ignored()]
        return names


class StreamOptions(Request):
    IGNORED = ("include_obfuscation",)  # obfuscation pads chunks against a side channel: the text is the same

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class Sampled(Request):
    """What completions and chat completions share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Accepted at their neutral value only (0, {} or null): tuneops has no penalties and no logit bias.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def token_budget(self) -> int | None:
        return self.max_tokens

    def wants_logprobs(self) -> bool:
        return False

    def alternatives(self) -> int:
        """How many of the most likely tokens to give at each place (logprobs k, top_logprobs k)."""
        return 0

    def echoes(self) -> bool:
        return False

    def to_sampling_params(self, defaults: GenerationSettings | None, turn_end: Sequence[str] = ()) -> SamplingParams:
        """The engine's settings for this request. What it leaves unset comes from the version's generation
        settings (its max_new_tokens and stop sequences), else OpenAI's defaults; `turn_end` (a chat template's
        end of turn) stops first whatever the request's stops."""
        stop = self.stops() if self.stop is not None else (defaults.stop if defaults is not None else [])
        budget = self.token_budget()  # 0 is a budget (echo scoring the prompt), not "unset"
        if budget is None:
            budget = defaults.max_new_tokens if defaults is not None else DEFAULT_MAX_TOKENS
        return SamplingParams(
            max_tokens=budget,
            stop=(*turn_end, *(stop or [])),
            temperature=DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            logprobs=self.wants_logprobs(),
            echo=self.echoes(),
            top_logprobs=self.alternatives(),
        )

    def refused(self) -> Refusal | None:
        """The first parameter set to something tuneops cannot do or that is invalid beside the others, else None."""
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0):
                return Refusal(name, f"{name} is not supported (only 0)")
        if self.logit_bias:
            return Refusal("logit_bias", "logit_bias is not supported (only {} or null)")
        stops = self.stops() or []
        if len(stops) > MAX_STOP:
            return Refusal("stop", f"stop takes at most {MAX_STOP} sequences, not {len(stops)}")
        if "" in stops:
            return Refusal("stop", "an empty stop sequence would end every completion before it starts")
        return None


class CompletionRequest(Sampled):
    IGNORED = ("user",)

    # a text, texts, one prompt's token ids, or several prompts' token ids (OpenAI's four forms)
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]
    max_tokens: int | None = Field(default=None, ge=0)  # 0: with echo, score the prompt and generate nothing
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text or a list of token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]  # type: ignore[list-item]  # one text, or one prompt's token ids
        return list(self.prompt)  # type: ignore[arg-type]  # texts, or lists of token ids

    def wants_logprobs(self) -> bool:
        return self.logprobs is not None  # logprobs=0: the chosen token's log-probability only

    def alternatives(self) -> int:
        return self.logprobs or 0

    def echoes(self) -> bool:
        return bool(self.echo)

    def refused(self) -> Refusal | None:
        if self.best_of not in (None, self.n or 1):
            return Refusal("best_of", "best_of is not supported (only equal to n)")
        if self.suffix:
            return Refusal("suffix", "suffix (insertion) is not supported")
        if isinstance(self.prompt, list) and not self.prompt:
            return Refusal("prompt", "prompt is an empty list", "invalid_value")
        if (empty := next((i for i, p in enumerate(self.prompts()) if p == []), None)) is not None:
            return Refusal("prompt", f"prompt[{empty}] is an empty list of token ids", "invalid_value")
        if self.max_tokens == 0 and not self.echo:
            # as vLLM: 0 new tokens is only for scoring the prompt (echo); alone it would answer nothing
            return Refusal(
                "max_tokens", "max_tokens 0 is only for echo (scoring the prompt); ask for 1 or more", "invalid_value"
            )
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
    # Each of these changes nothing a tuneops model answers: where a request is queued or billed (service_tier),
    # caching (prompt_cache_*), what is kept or tracked (store, metadata, user, safety_identifier), hints to
    # models trained to follow them (reasoning_effort: a tuneops model has no reasoning to spend effort on;
    # verbosity), speculation that only saves time (prediction), and tool calling's parallelism with no tools.
    IGNORED = (
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "store",
        "metadata",
        "user",
        "reasoning_effort",
        "verbosity",
        "prediction",
        "parallel_tool_calls",
    )

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
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, JsonValue] | None = None
    safety_identifier: str | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prediction: dict[str, JsonValue] | None = None
    # these would change the answer and are not done here: refused when set
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, JsonValue] | None = None
    web_search_options: dict[str, JsonValue] | None = None
    moderation: dict[str, JsonValue] | None = None

    def refused(self) -> Refusal | None:
        for name in ("tools", "functions"):
            if getattr(self, name):
                return Refusal(name, f"{name} (function calling) is not supported")
        for name in ("tool_choice", "function_call"):
            if getattr(self, name) not in (None, "none"):
                return Refusal(name, f"{name} is not supported")
        if self.modalities is not None and set(self.modalities) != {"text"}:
            return Refusal("modalities", 'only text output is supported (modalities ["text"])')
        for name, what in (
            ("audio", "audio output"),
            ("web_search_options", "web search"),
            ("moderation", "moderation"),
        ):
            if getattr(self, name) is not None:
                return Refusal(name, f"{name} ({what}) is not supported")
        if self.top_logprobs and not self.logprobs:
            return Refusal("top_logprobs", "top_logprobs needs logprobs: true", "invalid_value")
        return super().refused()

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def wants_logprobs(self) -> bool:
        return bool(self.logprobs)

    def alternatives(self) -> int:
        return self.top_logprobs or 0


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
