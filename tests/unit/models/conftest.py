"""What the models/ tests share: real tweets of uneven length, and GPT-2's architecture with the sample's tokenizer."""

from __future__ import annotations

import pytest
import torch

TWEETS = [
    " I`d have responded, if I were going",
    "Sooo SAD I will miss you here in San Diego!!!",
    "my boss is bullying me...",
    " what interview! leave me alone",
    "http://www.dothebouncy.com/smf - some shameless plugging for the best Rangers forum on earth",
    "2am feedings for the baby are fun when he is all smiles and coos",
]


@pytest.fixture(scope="module")
def gpt2(tokenizer):
    """GPT-2's architecture with the sample's byte-level BPE tokenizer, which, like GPT-2's, has no pad token."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=4, num_labels=3, pad_token_id=tokenizer.pad_token_id
    )
    return GPT2ForSequenceClassification(config).eval(), tokenizer
