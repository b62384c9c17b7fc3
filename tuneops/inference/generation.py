"""Batched text generation from a causal LM: what evaluate, `tuneops predict` and the OpenAI-compatible server call.

Fast where `transformers.pipeline("text-generation")` is slow (one prompt at a time): prompts tokenized once,
batches of similar length (little padding), left padding with the mask and positions built by position
(modeling.left_pad: GPT-2's quirks), a KV cache so each step feeds one token per row, inference mode, and
rows that finish leave the batch. Greedy (temperature 0) gives the same tokens as `model.generate` on each
prompt alone. Stop sequences are matched per row on the decoded text as it grows, and text is handed to
`on_text` only once no stop sequence can still claim it, so a server can stream it as it comes.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from tuneops.models.loading import is_generator, left_pad, length_sorted_batches

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Completion:
    """One prompt's generated text; `text` never holds the stop sequence (it ends where the first one began)."""

    text: str
    finish_reason: FinishReason  # stop: a stop sequence or eos; length: max_new_tokens reached
    prompt_tokens: int
    completion_tokens: int  # every token generated, the eos or the tokens that made up the stop included
    # with logprobs=True: the log-probability of each generated token under the model (before temperature and
    # top_p), and each token's own text; with echo=True as well the prompt's tokens come first, the very first
    # one None (nothing precedes it), as OpenAI's Completions API answers
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 32,
    logprobs: bool = False,
    echo: bool = False,
    on_text: Callable[[int, str], None] | None = None,
    truncate_prompt: bool = False,
    bf16: bool = False,
    seeds: Sequence[int] | None = None,
) -> list[Completion]:
    """Complete each prompt; the answers come back in the prompts' order.

    temperature 0 is greedy; above 0 samples from the temperature-scaled distribution cut to its top_p mass. Each
    row samples from its own generator seeded with `seed + row` (or `seeds[row]`), so the same seed gives the
    same text whatever the batch size or the other prompts. `on_text(row, delta)` gets each row's text as it
    becomes final; the deltas of a row join into its Completion.text (with echo, the prompt first). A prompt
    that leaves fewer than max_new_tokens of the model's positions is a ValueError, unless `truncate_prompt`
    (then its first tokens are dropped). fp32 by default, so evaluation's greedy text is exactly the model's;
    `bf16` runs an fp32 model under bf16 autocast. For serving where bf16 is native, cast the model once instead
    (`model.to(torch.bfloat16)`, no flag needed): autocast recasts every weight at every step, so it generated no
    faster than fp32 on this AMX CPU, while bf16 weights gave 2x the tokens/s (both change some greedy tokens).
    """
    if not is_generator(model):
        raise ValueError(f"model: a {type(model).__name__} does not generate text (a causal language model does)")
    stops = _check_args(prompts, max_new_tokens, stop, temperature, top_p, batch_size, seeds)
    prompts = list(prompts)  # a datasets Column or any sequence: indexed many times below
    encoded = _encode(tokenizer, prompts, _max_positions(model), max_new_tokens, truncate_prompt)
    if seeds is None:
        base = random.SystemRandom().randrange(2**31) if seed is None else seed
        seeds = [base + row for row in range(len(prompts))]
    settings = _Settings(
        max_new_tokens=max_new_tokens,
        stops=stops,
        temperature=temperature,
        top_p=top_p,
        logprobs=logprobs,
        echo=echo,
        bf16=bf16,
        eos_ids=_eos_ids(model, tokenizer),
        pad_id=_pad_id(tokenizer),
        on_text=on_text,
    )
    out: list[Completion | None] = [None] * len(prompts)
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        rows = [
            _Row(
                int(i),
                encoded[i],
                _Text(tokenizer, stops),
                _echo_text(prompts[i], encoded[i], tokenizer, echo),
                seeds[i],
            )
            for i in batch
        ]
        for row in _run_batch(model, tokenizer, rows, settings):
            out[row.index] = row.completion(tokenizer, settings)
    return out  # type: ignore[return-value]  # every index was filled by its batch


@dataclass(frozen=True)
class _Settings:
    max_new_tokens: int
    stops: tuple[str, ...]
    temperature: float
    top_p: float
    logprobs: bool
    echo: bool
    bf16: bool
    eos_ids: frozenset[int]
    pad_id: int
    on_text: Callable[[int, str], None] | None


def _check_args(
    prompts: Sequence[str],
    max_new_tokens: int,
    stop: Sequence[str],
    temperature: float,
    top_p: float,
    batch_size: int,
    seeds: Sequence[int] | None,
) -> tuple[str, ...]:
    """The arguments' own errors, each naming its argument (the server answers them with a 400)."""
    if isinstance(prompts, str):
        raise ValueError("prompts: a list of strings, not one string")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts: every prompt must be a string")
    if isinstance(stop, str):
        stop = (stop,)
    if not all(isinstance(s, str) and s for s in stop):
        raise ValueError("stop: every stop sequence must be a non-empty string")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: must be 0 or more, got {max_new_tokens}")
    if not temperature >= 0:
        raise ValueError(f"temperature: must be 0 or more, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: must be in (0, 1], got {top_p}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be 1 or more, got {batch_size}")
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"seeds: {len(seeds)} seeds for {len(prompts)} prompts")
    return tuple(dict.fromkeys(stop))


def _max_positions(model: Any) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def _encode(
    tokenizer: Any, prompts: Sequence[str], positions: int | None, max_new_tokens: int, truncate: bool
) -> list[list[int]]:
    """Token ids of every prompt (one tokenizer call), each checked to leave room for max_new_tokens."""
    if not prompts:
        return []
    encoded = tokenizer(list(prompts))["input_ids"]
    # an empty prompt starts from the beginning-of-text token, as GPT-2 was trained (OpenAI does the same)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = [list(ids) or [start] for ids in encoded]
    if positions is None:
        return encoded
    room = positions - max_new_tokens
    if room < 1:
        raise ValueError(
            f"max_new_tokens: {max_new_tokens} leaves no room for a prompt in the model's {positions} positions"
        )
    for row, ids in enumerate(encoded):
        if len(ids) > room:
            if not truncate:
                raise ValueError(
                    f"prompt {row}: {len(ids)} tokens + max_new_tokens {max_new_tokens} = {len(ids) + max_new_tokens}"
                    f" tokens, more than the model's {positions} positions; shorten the prompt or lower max_new_tokens"
                )
            encoded[row] = ids[-room:]
    return encoded


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every token that ends a completion: the tokenizer's eos and the generation config's (it may list several)."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    return frozenset(i for i in ids if i is not None)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _echo_text(prompt: str, ids: list[int], tokenizer: Any, echo: bool) -> str:
    """The prompt as echoed: as given, or as the model saw it when it was cut to fit."""
    if not echo:
        return ""
    return prompt if len(ids) >= len(tokenizer(prompt)["input_ids"]) else tokenizer.decode(ids)


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Where the earliest stop sequence begins in text[start:] (as an index into text), or None."""
    found = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(found) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop sequence, so cannot be sent yet."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class _Text:
    """One row's completion text, decoded a token at a time, cut at the first stop sequence.

    Decoding only the last few tokens each step (vLLM's incremental detokenization): the window from the
    previous piece's first token gives tokenizers that merge across tokens (SentencePiece's leading space)
    their context, and a window whose text ends in U+FFFD waits for the rest of its UTF-8 character.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.start = self.read = 0  # ids[start:read] is the last decoded piece; ids[read:] not decoded yet
        self.text = ""
        self.sent = 0  # characters handed to on_text
        self.stopped = False

    def windows(self) -> tuple[list[int], list[int]]:
        return self.ids[self.start : self.read], self.ids[self.start :]

    def take(self, before: str, after: str, final: bool) -> None:
        """Add the text that the new tokens brought (`after` minus `before`, the two windows decoded)."""
        if self.read == len(self.ids):
            return  # no new token (the row ended on eos)
        if (after.endswith("\ufffd") and not final) or not after.startswith(before):
            if not final:
                return  # half a UTF-8 character (or a tokenizer that rewrites): wait for the next token
            before, after = self.text, self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if not after.startswith(before):
                return  # cannot happen with byte-level BPE; never rewrite text already sent
        self.start, self.read = self.read, len(self.ids)
        scan_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=1) + 1)
        self.text += after[len(before) :]
        if (cut := find_stop(self.text, self.stops, scan_from)) is not None:
            self.text, self.stopped = self.text[:cut], True

    def ready(self, final: bool) -> str:
        """The text that no stop sequence can claim any more and was not sent yet (all of it once final)."""
        end = len(self.text) if final or self.stopped else len(self.text) - held_back(self.text, self.stops)
        delta, self.sent = self.text[self.sent : end], max(self.sent, end)
        return delta


@dataclass
class _Row:
    index: int  # the prompt's place in the caller's list
    prompt_ids: list[int]
    text: _Text
    echo: str
    seed: int
    finish: FinishReason | None = None
    generated: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_logprobs: list[float | None] = field(default_factory=list)
    generator: torch.Generator | None = None

    def completion(self, tokenizer: Any, settings: _Settings) -> Completion:
        token_logprobs = tokens = None
        if settings.logprobs:
            token_logprobs = [*self.prompt_logprobs, *self.logprobs]
            ids = (self.prompt_ids if settings.echo else []) + self.generated
            tokens = tokenizer.batch_decode([[i] for i in ids]) if ids else []
        return Completion(
            text=self.echo + self.text.text,
            finish_reason=self.finish or "length",
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=len(self.generated),
            token_logprobs=token_logprobs,
            tokens=tokens,
        )


@torch.inference_mode()
def _run_batch(model: Any, tokenizer: Any, rows: list[_Row], s: _Settings) -> list[_Row]:
    """Generate for one batch of rows; each row's state (tokens, text, finish) is filled in place."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    for row in rows:
        if s.temperature > 0:
            row.generator = torch.Generator(device=device).manual_seed(row.seed)
        if s.on_text and row.echo:
            s.on_text(row.index, row.echo)
    score_prompt = s.echo and s.logprobs
    if s.max_new_tokens == 0 and not score_prompt:
        return rows
    forward = _Forward(model, DynamicCache(config=model.config), s.bf16)
    ids, mask, positions = (t.to(device) for t in left_pad([r.prompt_ids for r in rows], s.pad_id))
    logits = forward(ids, mask, positions, last_only=not score_prompt)
    if score_prompt:
        _score_prompts(rows, logits, ids)
    logits = logits[:, -1, :].float()  # as generate() does: choose from fp32 logits
    active = rows
    for step in range(s.max_new_tokens):
        tokens = _next_tokens(logits, active, s)
        _advance(tokenizer, active, tokens, logits if s.logprobs else None, s, last=step == s.max_new_tokens - 1)
        kept = [j for j, row in enumerate(active) if row.finish is None]
        if not kept:
            break
        if len(kept) < len(active):  # finished rows leave the batch: no more compute for them
            index = torch.tensor(kept, device=device)
            forward.cache.batch_select_indices(index)
            mask, positions, tokens = mask[index], positions[index], tokens[index]
            active = [active[j] for j in kept]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        positions = positions[:, -1:] + 1
        logits = forward(tokens[:, None], mask, positions)[:, -1, :].float()
    return rows


class _Forward:
    """The model's forward with its KV cache, under bf16 autocast when asked."""

    def __init__(self, model: Any, cache: Any, bf16: bool) -> None:
        params = inspect.signature(model.forward).parameters
        # transformers 5 renames past_key_values to cache (GPT-2 already); take whichever the model has
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self.can_keep = "logits_to_keep" in params  # the prefill's lm_head on the last position only
        self.model, self.cache, self.bf16 = model, cache, bf16
        self.device = next(model.parameters()).device.type

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, last_only: bool = True) -> Any:
        keep = {"logits_to_keep": 1} if last_only and self.can_keep else {}
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self.cache_name: self.cache},
                **keep,
            )
        return out.logits


def _score_prompts(rows: list[_Row], logits: torch.Tensor, ids: torch.Tensor) -> None:
    """Each prompt token's log-probability given the tokens before it (echo with logprobs)."""
    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    for j, row in enumerate(rows):
        n = len(row.prompt_ids)
        row.prompt_logprobs = [None, *logp[j, logp.shape[1] - (n - 1) :].tolist()]


def _next_tokens(logits: torch.Tensor, rows: list[_Row], s: _Settings) -> torch.Tensor:
    """The next token of every row: the argmax (greedy), or a draw from each row's own seeded generator."""
    if s.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1:
        probs = top_p_filter(probs, s.top_p)
    return torch.cat([torch.multinomial(probs[j], 1, generator=row.generator) for j, row in enumerate(rows)])


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability reaches top_p (nucleus sampling); one stays."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the mass before it already reaches top_p
    outside[..., 0] = False
    return probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))


def _advance(
    tokenizer: Any, rows: list[_Row], tokens: torch.Tensor, logits: torch.Tensor | None, s: _Settings, last: bool
) -> None:
    """Append each row's new token, decode the text it brought, end rows on eos, a stop sequence or the limit."""
    if logits is not None:
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None])[:, 0].tolist()
        for row, logprob in zip(rows, chosen, strict=True):
            row.logprobs.append(logprob)
    for row, token in zip(rows, tokens.tolist(), strict=True):
        row.generated.append(token)
        if token in s.eos_ids:
            row.finish = "stop"
        else:
            row.text.ids.append(token)
    finals = [row.finish is not None or last for row in rows]
    windows = [w for row in rows for w in row.text.windows()]
    decoded = tokenizer.batch_decode(windows, skip_special_tokens=True)  # one call for the whole batch
    for j, (row, final) in enumerate(zip(rows, finals, strict=True)):
        row.text.take(decoded[2 * j], decoded[2 * j + 1], final)
        if row.text.stopped:
            row.finish = "stop"
        elif last and row.finish is None:
            row.finish = "length"
        if s.on_text and (delta := row.text.ready(row.finish is not None)):
            s.on_text(row.index, delta)
