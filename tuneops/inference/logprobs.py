"""Log-probabilities as OpenAI's Completions API answers them (`logprobs`, `top_logprobs`, `echo`): each token's
text, its log-probability under the model (before temperature and top_p), and the most likely tokens at its place.
Generation (tuneops.inference.generation) scores the prompt once after the prefill and each new token per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Tokens:
    """Tokens and their log-probabilities under the model (before temperature and top_p): each token's text, its
    log-probability (None for an echoed prompt's first token: nothing precedes it), and the `top_logprobs` most
    likely tokens at its place with theirs, most likely first (none for that first token)."""

    tokens: list[str] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    top: list[list[tuple[str, float]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def since(self, start: int) -> Tokens:
        """The tokens from `start` on (a streamed chunk's own)."""
        return Tokens(self.tokens[start:], self.logprobs[start:], self.top[start:])

    def add(self, token: str, logprob: float | None, top: list[tuple[str, float]]) -> None:
        self.tokens.append(token)
        self.logprobs.append(logprob)
        self.top.append(top)


class TokenTexts:
    """Each token's own text (as OpenAI's logprobs show it), decoded once per generate call."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.pieces: dict[int, str] = {}

    def __call__(self, ids: list[int]) -> list[str]:
        """The ids' texts, decoding in one call only the ids not seen yet."""
        new = list(dict.fromkeys(i for i in ids if i not in self.pieces))
        if new:
            self.pieces.update(zip(new, self.tokenizer.batch_decode([[i] for i in new]), strict=True))
        return [self.pieces[i] for i in ids]


def _top(logp: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """The k most likely tokens at each place (each row of `logp`) with their log-probabilities, most likely first."""
    if k == 0:
        return [[] for _ in range(logp.shape[0])]
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return [list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]


def _score(
    scored: Tokens, texts: TokenTexts, ids: list[int], logprobs: list[float], tops: list[list[tuple[int, float]]]
) -> None:
    """Add tokens to a row's scored ones, each with the most likely tokens at its place (one decode call)."""
    decoded = texts(ids + [i for top in tops for i, _ in top])
    alternatives = iter(decoded[len(ids) :])
    for text, logprob, top in zip(decoded[: len(ids)], logprobs, tops, strict=True):
        scored.add(text, logprob, [(next(alternatives), lp) for _, lp in top])


def score_prompts(
    logits: torch.Tensor,
    ids: torch.Tensor,
    prompts: Sequence[list[int]],
    scored: Sequence[Tokens],
    texts: TokenTexts,
    top_logprobs: int,
) -> None:
    """Each prompt token's log-probability given the tokens before it (echo with logprobs); the first has none.
    `logits`, `ids`: the left-padded batch's prefill; `prompts`, `scored`: each row's prompt ids and its tokens."""
    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
    chosen = logp.gather(-1, ids[:, 1:, None])[..., 0]
    for j, (prompt, row) in enumerate(zip(prompts, scored, strict=True)):
        place = slice(logp.shape[1] - (len(prompt) - 1), None)  # left padding: the row's own places
        row.add(texts(prompt[:1])[0], None, [])
        tops = _top(logp[j, place], top_logprobs)
        _score(row, texts, prompt[1:], chosen[j, place].tolist(), tops)


def score_step(
    logits: torch.Tensor, tokens: torch.Tensor, scored: Sequence[Tokens], texts: TokenTexts, top_logprobs: int
) -> None:
    """Each new token's log-probability under the model (before temperature and top_p) and the most likely ones."""
    logp = torch.log_softmax(logits, dim=-1)
    chosen = logp.gather(-1, tokens[:, None])[:, 0].tolist()
    tops = _top(logp, top_logprobs)
    for j, (row, token) in enumerate(zip(scored, tokens.tolist(), strict=True)):
        _score(row, texts, [token], [chosen[j]], [tops[j]])
