"""Prompts as the model sees them: texts tokenized in one call, token ids checked against the model's vocabulary
and used as they are, each left room for the tokens to generate in the model's positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Prompt = str | Sequence[int]  # a text, or the token ids the model is to see exactly as given


def is_token_ids(prompt: object) -> bool:
    return isinstance(prompt, Sequence) and not isinstance(prompt, str) and all(type(t) is int for t in prompt)


def check_token_ids(ids: Sequence[int], vocab: int, row: int) -> list[int]:
    """A token-id prompt as the model takes it. An id past the model's embedding table would be an IndexError on
    CPU and, on CUDA, a device-side assert that breaks every later request of the process: refused first."""
    if not ids:
        raise ValueError(f"prompt {row}: an empty list of token ids")
    if (bad := next((t for t in ids if not 0 <= t < vocab), None)) is not None:
        raise ValueError(f"prompt {row}: token id {bad} is not in the model's vocabulary (0 to {vocab - 1})")
    return list(ids)


def vocab_size(model: PreTrainedModel) -> int:
    """The ids the model has embeddings for (its config's vocab_size can lag a resize)."""
    return int(model.get_input_embeddings().num_embeddings)


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt], vocab: int) -> list[list[int]]:
    """Every prompt's token ids: texts tokenized in one call, token ids checked and used as they are."""
    texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    encoded: list[list[int]] = [[] for _ in prompts]
    if texts:
        for i, ids in zip(texts, tokenizer([prompts[i] for i in texts])["input_ids"], strict=True):
            encoded[i] = list(ids) or [_start_id(tokenizer)]
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            encoded[i] = check_token_ids(prompt, vocab, i)
    return encoded


def classifier_ids(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[Prompt], limit: int | None
) -> list[list[int]]:
    """Each prompt's token ids, cut to `limit` when given; an empty text still gets one token (eos)."""
    texts = [p for p in prompts if isinstance(p, str)]
    tokenized = iter(tokenizer(texts, truncation=limit is not None, max_length=limit)["input_ids"] if texts else [])
    vocab = vocab_size(model)
    encoded = [
        list(next(tokenized)) if isinstance(p, str) else check_token_ids(p, vocab, row)[:limit]
        for row, p in enumerate(prompts)
    ]
    return [ids or [tokenizer.eos_token_id] for ids in encoded]


def _start_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """What an empty text prompt starts from: the beginning-of-text token, as GPT-2 was trained (OpenAI does too)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _max_positions(model: PreTrainedModel) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def encode_to_fit(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    model: PreTrainedModel,
    max_new_tokens: int,
    truncate: bool,
) -> list[list[int]]:
    """Token ids of every prompt (one tokenizer call), each checked to leave room for max_new_tokens."""
    if not prompts:
        return []
    encoded = encode_prompts(tokenizer, prompts, vocab_size(model))
    positions = _max_positions(model)
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
