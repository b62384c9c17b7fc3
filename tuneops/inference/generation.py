"""Batched text generation from a causal LM: what evaluate, `tuneops predict` and the OpenAI-compatible server call.

Fast where `transformers.pipeline("text-generation")` is slow (one prompt at a time): prompts tokenized once,
batches of similar length (little padding), left padding with the mask and positions built by position
(models.batches.left_pad: GPT-2's quirks), a KV cache so each step feeds one token per row, inference mode, and
rows that finish leave the batch. Greedy (temperature 0) gives the same tokens as `model.generate` on each
prompt alone. Stop sequences are matched per row on the decoded text as it grows, and text is handed to
`on_text` only once no stop sequence can still claim it, so a server can stream it as it comes
(tuneops.inference.detokenize); how each next token is chosen is tuneops.inference.sampling's, how prompts are
tokenized and fitted tuneops.inference.prompts', and the log-probabilities kept tuneops.inference.logprobs'.

The custom loop is 1.0x transformers' generate here, not faster: bench/generate_speed.py --quick (GPT-2 small,
32 tweets x 32 new tokens, the same length-sorted batches, 2 threads, load 2.0) measured 176.7 tokens/s against
generate's 176.0 (best of 3 alternated: 177.3 vs 172.8), the same text for 32/32 prompts, and 120.7 for
transformers' continuous batching (generate_batch). Both spend a step in the same forward with a DynamicCache. It
stays for what generate lacks: a seeded generator per row (a seeded request samples the same text whatever joins
its call; generate draws every row from one RNG), per-row streaming that holds back a possible stop sequence
(transformers' streamers take batch size 1), rows leaving the batch when they finish (generate keeps computing
padding for them), and echo with the prompt's log-probabilities.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch

from tuneops.inference.detokenize import IncrementalText
from tuneops.inference.logprobs import Tokens, TokenTexts, score_prompts, score_step
from tuneops.inference.prompts import Prompt, encode_to_fit, is_token_ids
from tuneops.inference.sampling import SamplingParams, generator, next_tokens
from tuneops.models.batches import left_pad, length_sorted_batches
from tuneops.models.loading import is_generator

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

FinishReason = Literal["stop", "length"]


OnText = Callable[[int, str, Tokens | None], None]  # (the prompt's index, text that became final, its tokens)


@dataclass(frozen=True)
class Completion:
    """One prompt's generated text; `text` never holds the stop sequence (it ends where the first one began)."""

    text: str
    finish_reason: FinishReason  # stop: a stop sequence or eos; length: max_new_tokens reached
    prompt_tokens: int
    completion_tokens: int  # every token generated, the eos or the tokens that made up the stop included
    # with logprobs=True: every generated token (with echo=True the prompt's first), as OpenAI's Completions API
    # answers them
    logprobs: Tokens | None = None

    @property
    def tokens(self) -> list[str] | None:
        return None if self.logprobs is None else self.logprobs.tokens

    @property
    def token_logprobs(self) -> list[float | None] | None:
        return None if self.logprobs is None else self.logprobs.logprobs


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
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
    on_text: OnText | None = None,
    truncate_prompt: bool = False,
    bf16: bool = False,
    seeds: Sequence[int] | None = None,
    top_logprobs: int = 0,
) -> list[Completion]:
    """`generate_with` with the sampling settings as keywords (evaluate's and the tests' form); see there."""
    params = SamplingParams(
        max_tokens=max_new_tokens,
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        logprobs=logprobs,
        echo=echo,
        top_logprobs=top_logprobs,
    )
    return generate_with(
        model,
        tokenizer,
        prompts,
        params,
        batch_size=batch_size,
        seeds=seeds,
        on_text=on_text,
        truncate_prompt=truncate_prompt,
        bf16=bf16,
    )


def generate_with(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    params: SamplingParams,
    *,
    batch_size: int = 32,
    seeds: Sequence[int] | None = None,
    generators: Sequence[torch.Generator | None] | None = None,
    on_text: OnText | None = None,
    truncate_prompt: bool = False,
    bf16: bool = False,
    stopped: Callable[[int], bool] | None = None,
) -> list[Completion]:
    """Complete each prompt (a text, or token ids used as they are) as `params` says; the answers come back in the
    prompts' order.

    Each row samples from its own generator seeded `seeds[row]` (by default `params.seed + row`), so the same seed
    gives the same text whatever the batch size or the other prompts; `generators` hands in rows' generators
    already built (the server builds them per request, so a seed torch refuses fails that request alone).
    `on_text(row, delta, tokens)` gets each row's text as it becomes final, with the tokens that brought it when
    `params.logprobs` (else None); a row's deltas join into its Completion.text (with echo, the prompt first) and
    their tokens into its `logprobs`, but for tokens that brought no text (an eos, a stop sequence's). A
    prompt that leaves fewer than max_tokens of the model's positions is a ValueError, unless `truncate_prompt`
    (then its first tokens are dropped). fp32 by default, so evaluation's greedy text is exactly the model's;
    `bf16` runs an fp32 model under bf16 autocast. For serving where bf16 is native, cast the model once instead
    (`model.to(torch.bfloat16)`, no flag needed): autocast recasts every weight at every step, so it generated no
    faster than fp32 on this AMX CPU, while bf16 weights gave 2x the tokens/s (both change some greedy tokens).
    `stopped(row)`, asked after every decoding step, ends a row there (a server's client gone): it leaves the batch,
    its Completion what it had ("length").
    """
    if not is_generator(model):
        raise ValueError(f"model: a {type(model).__name__} does not generate text (a causal language model does)")
    _check_args(prompts, batch_size, seeds, generators)
    prompts = list(prompts)  # a datasets Column or any sequence: indexed many times below
    encoded = encode_to_fit(tokenizer, prompts, model, params.max_tokens, truncate_prompt)
    seeds = params.seeds(len(prompts)) if seeds is None else seeds
    run = _Run(params, bf16, _eos_ids(model, tokenizer), _pad_id(tokenizer), on_text, TokenTexts(tokenizer), stopped)
    out: list[Completion | None] = [None] * len(prompts)
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        rows = [
            _Row(
                int(i),
                encoded[i],
                IncrementalText(tokenizer, params.stop, encoded[i]),
                _echo_text(prompts[i], encoded[i], tokenizer, params.echo),
                seeds[i],
                generator=None if generators is None else generators[i],
            )
            for i in batch
        ]
        for row in _run_batch(model, tokenizer, rows, run):
            out[row.index] = row.completion(params)
    return out  # type: ignore[return-value]  # every index was filled by its batch


@dataclass(frozen=True)
class _Run:
    """One generate call: the request's settings and what the model and tokenizer fix for every batch."""

    params: SamplingParams
    bf16: bool
    eos_ids: frozenset[int]
    pad_id: int
    on_text: OnText | None
    texts: TokenTexts  # each token id's own text, decoded once a call (logprobs)
    stopped: Callable[[int], bool] | None = None


def _check_args(
    prompts: Sequence[Prompt],
    batch_size: int,
    seeds: Sequence[int] | None,
    generators: Sequence[torch.Generator | None] | None,
) -> None:
    """The arguments' own errors besides the settings' (SamplingParams checks those), each naming its argument."""
    if isinstance(prompts, str):
        raise ValueError("prompts: a list of strings, not one string")
    if not all(isinstance(p, str) or is_token_ids(p) for p in prompts):
        raise ValueError("prompts: every prompt must be a string or a list of token ids")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be 1 or more, got {batch_size}")
    for name, given in (("seeds", seeds), ("generators", generators)):
        if given is not None and len(given) != len(prompts):
            raise ValueError(f"{name}: {len(given)} {name} for {len(prompts)} prompts")


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every token that ends a completion: the tokenizer's eos and the generation config's (it may list several)."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    return frozenset(i for i in ids if i is not None)


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _echo_text(prompt: Prompt, ids: list[int], tokenizer: PreTrainedTokenizerBase, echo: bool) -> str:
    """The prompt as echoed: as given, or as the model saw it when it was cut to fit or given as token ids."""
    if not echo:
        return ""
    if isinstance(prompt, str) and len(ids) >= len(tokenizer(prompt)["input_ids"]):
        return prompt
    return tokenizer.decode(ids)


@dataclass
class _Row:
    index: int  # the prompt's place in the caller's list
    prompt_ids: list[int]
    text: IncrementalText
    echo: str
    seed: int
    generator: torch.Generator | None = None  # sampling.next_tokens draws this row's tokens from it
    finish: FinishReason | None = None
    generated: list[int] = field(default_factory=list)
    scored: Tokens = field(default_factory=Tokens)  # with logprobs: the echoed prompt's tokens, then the generated
    streamed: int = 0  # how many of `scored` went to on_text

    def completion(self, params: SamplingParams) -> Completion:
        return Completion(
            text=self.echo + self.text.text,
            finish_reason=self.finish or "length",
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=len(self.generated),
            logprobs=self.scored if params.logprobs else None,
        )

    def send(self, run: _Run, text: str) -> None:
        """Hand `text` to on_text with the tokens scored since the last time (None without logprobs)."""
        tokens = self.scored.since(self.streamed) if run.params.logprobs else None
        self.streamed = len(self.scored)
        if run.on_text is not None:
            run.on_text(self.index, text, tokens)


@torch.inference_mode()
def _run_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: list[_Row], run: _Run) -> list[_Row]:
    """Generate for one batch of rows; each row's state (tokens, text, finish) is filled in place."""
    from transformers import DynamicCache

    p, device = run.params, next(model.parameters()).device
    for row in rows:
        if not p.greedy and row.generator is None:
            row.generator = generator(row.seed, device)
    score_prompt = p.echo and p.logprobs
    if p.max_tokens == 0 and not score_prompt:
        return _send_echo(rows, run)
    forward = _Forward(model, DynamicCache(config=model.config), run.bf16)
    ids, mask, positions = (t.to(device) for t in left_pad([r.prompt_ids for r in rows], run.pad_id))
    logits = forward(ids, mask, positions, last_only=not score_prompt)
    if score_prompt:
        score_prompts(logits, ids, [r.prompt_ids for r in rows], [r.scored for r in rows], run.texts, p.top_logprobs)
    _send_echo(rows, run)  # after scoring: a streamed echo carries its tokens' logprobs
    if p.max_tokens == 0:
        return rows
    logits = logits[:, -1, :].float()  # as generate() does: choose from fp32 logits
    active = rows
    for step in range(p.max_tokens):
        tokens = next_tokens(logits, p, active)
        if p.logprobs:
            score_step(logits, tokens, [r.scored for r in active], run.texts, p.top_logprobs)
        _advance(tokenizer, active, tokens, run, last=step == p.max_tokens - 1)
        kept = [
            j for j, row in enumerate(active) if row.finish is None and not (run.stopped and run.stopped(row.index))
        ]
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

    def __init__(self, model: PreTrainedModel, cache: Cache, bf16: bool) -> None:
        params = inspect.signature(model.forward).parameters
        # transformers 5 renames past_key_values to cache (GPT-2 already); take whichever the model has
        self.cache_name = "cache" if "cache" in params else "past_key_values"
        self.can_keep = "logits_to_keep" in params  # the prefill's lm_head on the last position only
        self.model, self.cache, self.bf16 = model, cache, bf16
        self.device = next(model.parameters()).device.type

    def __call__(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, last_only: bool = True
    ) -> torch.Tensor:
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


def _send_echo(rows: list[_Row], run: _Run) -> list[_Row]:
    for row in rows:
        if run.on_text and row.echo:
            row.send(run, row.echo)
    return rows


def _advance(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[_Row],
    tokens: torch.Tensor,
    run: _Run,
    last: bool,
) -> None:
    """Append each row's new token, decode the text it brought, end rows on eos, a stop sequence or the limit."""
    for row, token in zip(rows, tokens.tolist(), strict=True):
        row.generated.append(token)
        if token in run.eos_ids:
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
        if run.on_text and (delta := row.text.ready(row.finish is not None)):
            row.send(run, delta)
