"""Held-out preference accuracy: summed log-probabilities of each completion's tokens given its prompt, on a model
small enough to check by hand (a bigram table), padding masked by position."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from tuneops.evaluation.lm_scoring import completion_logprobs, preference_accuracy

# next-token logits by the current token: after 0, token 1 is e^2 times likelier than token 2; after 1 or 2, uniform
TABLE = [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
PAD = 0  # also a real token, as GPT-2's eos is: the mask must come from positions


class Bigram(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(TABLE))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[input_ids])


def logp(prev: int, token: int) -> float:
    row = TABLE[prev]
    return row[token] - math.log(sum(math.exp(x) for x in row))


def test_the_completion_tokens_alone_are_summed_and_padding_never_counts():
    ids = [[0, 0, 1, 1], [0, 2]]  # padded together: the second row's pads (0) would score log p(0 | 2) each
    got = completion_logprobs(Bigram(), PAD, ids, [2, 1], batch_size=2)
    assert got == pytest.approx([logp(0, 1) + logp(1, 1), logp(0, 2)])


def test_preference_accuracy_is_the_share_of_pairs_whose_preferred_completion_is_likelier():
    rows = Dataset.from_dict(
        {
            "input_ids": [[0, 1], [0, 2], [0, 1]],  # preferred: 1, 2, 1 after the prompt [0]
            "rejected_input_ids": [[0, 2], [0, 1], [0, 1, 1]],  # rejected: 2, 1, then 1 1 (longer: less likely)
            "prompt_length": [1, 1, 1],
        }
    )
    # pair 1: log p(1|0) > log p(2|0); pair 2: the reverse; pair 3: 1 beats 1 then 1 (one more negative term)
    assert preference_accuracy(Bigram(), PAD, rows, batch_size=2) == pytest.approx(2 / 3)


def test_a_tie_is_not_a_preference():
    rows = Dataset.from_dict({"input_ids": [[0, 1]], "rejected_input_ids": [[0, 1]], "prompt_length": [1]})
    assert preference_accuracy(Bigram(), PAD, rows, batch_size=1) == 0.0
