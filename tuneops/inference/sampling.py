"""How the next token is chosen: `SamplingParams`, the one settings object a completion request becomes (vLLM's
SamplingParams), and `next_tokens`, the step that applies it to a batch's logits.

    HTTP body --protocol.*Request.to_sampling_params()--> SamplingParams --batching (groups by it)--> generation

Adding an OpenAI sampling parameter touches two files: its field on the protocol model (which sets it in
`to_sampling_params`), and here, a field on SamplingParams and the lines of `next_tokens` that honour it.
Batching needs no change (requests with unequal settings never share a call: `normalized` compares every field),
and neither does the decode loop (it hands `next_tokens` the logits and the rows).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    """A generation request's settings; requests whose `normalized()` settings are equal share one call.

    temperature 0 is greedy; above 0 samples from the temperature-scaled distribution cut to its top_p mass.
    Each row draws from its own generator seeded `seed + row`, so the same seed gives the same text whatever the
    batch. `logprobs`: each token's log-probability, with the `top_logprobs` most likely tokens at its place (both
    from the model's own distribution, before temperature and top_p, as vLLM's default `raw_logprobs`: what the
    model thinks, whatever the sampling settings); `echo`: the prompt first (scored with logprobs).
    """

    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool = False
    echo: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        """Each setting's own errors, naming it (generate's callers get a ValueError, the server a 400)."""
        if isinstance(self.stop, str):  # a tuple of one string's characters would stop on any of them
            raise ValueError("stop: a tuple of stop sequences, not one string")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError("stop: every stop sequence must be a non-empty string")
        if self.max_tokens < 0:
            raise ValueError(f"max_new_tokens (max_tokens): must be 0 or more, got {self.max_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature: must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs: must be 0 or more, got {self.top_logprobs}")
        object.__setattr__(self, "stop", tuple(dict.fromkeys(self.stop)))  # each stop once, in order (frozen)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def normalized(self) -> SamplingParams:
        """What a shared call needs equal. Seeds need not be: each row samples from its own generator (seeded
        `seed + row`), so a seeded request gives the same text whatever joins its batch. Greedy decoding ignores
        top_p as well: every greedy request of a version with the same max_tokens and stops shares a call."""
        return dataclasses.replace(self, seed=None, top_p=1.0 if self.greedy else self.top_p)

    def seeds(self, rows: int) -> list[int]:
        """One seed per row: `seed + row`, or from a random base when the request gave none."""
        base = random.SystemRandom().randrange(2**31) if self.seed is None else self.seed
        return [base + row for row in range(rows)]


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A row's own generator, seeded. torch takes a seed from -2**63 to 2**64 - 1; another is a ValueError naming
    `seed` (torch's own message, "Overflow when unpacking long long", names nothing)."""
    try:
        return torch.Generator(device=device).manual_seed(seed)
    except (OverflowError, RuntimeError, ValueError):
        raise ValueError(f"seed: {seed} is outside the range a generator takes (-2**63 to 2**64 - 1)") from None


class Drawn(Protocol):
    """What `next_tokens` reads of a row besides its logits: its own seeded generator (None when greedy)."""

    @property
    def generator(self) -> torch.Generator | None: ...


def next_tokens(logits: torch.Tensor, params: SamplingParams, rows: Sequence[Drawn]) -> torch.Tensor:
    """The next token of every row: the argmax (greedy), or a draw from each row's own seeded generator."""
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1:
        probs = top_p_filter(probs, params.top_p)
    return torch.cat([torch.multinomial(probs[j], 1, generator=row.generator) for j, row in enumerate(rows)])


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability reaches top_p (nucleus sampling); one stays."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the mass before it already reaches top_p
    outside[..., 0] = False
    return probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
