"""The offline sample: labelled short texts, a byte-level BPE tokenizer and a GPT-2, all made here.

Nothing is downloaded and nothing is copied from elsewhere: the texts come from a seeded generator, the
tokenizer is trained on them with GPT-2's recipe (byte-level BPE, `<|endoftext|>` as eos and no pad token,
so GPT-2's pad quirk is exercised), and the model is GPT-2's architecture built from a config. The test suite
and `tuneops demo` use them, so a clone with no Hub and nothing beside it tests and shows every stage.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast


LABELS = ("negative", "neutral", "positive")
EOS = "<|endoftext|>"

# Words that carry the sentiment, and the rest of a tweet around them. Neutral texts carry none.
FEELING = {
    "negative": ["hate", "can't stand", "am so tired of", "really miss", "am annoyed by", "regret"],
    "positive": ["love", "adore", "am so happy about", "really enjoy", "am excited about", "can't wait for"],
}
VERDICT = {
    "negative": ["awful", "terrible", "the worst", "so sad", "broken again", "a total mess", "boring"],
    "positive": ["amazing", "great", "the best", "so much fun", "beautiful", "perfect", "awesome"],
}
THINGS = [
    "the new phone",
    "this rainy weather",
    "monday mornings",
    "the traffic downtown",
    "my coffee",
    "the concert",
    "our road trip",
    "the last episode",
    "the pizza place",
    "my new job",
    "the gym",
    "this song",
    "the beach",
    "the weekend",
    "my laptop",
    "the game last night",
    "school",
    "the bus ride",
    "the garden",
    "my cat",
]
NEUTRAL = [
    "going to {thing} at {time}",
    "anyone know when {thing} starts?",
    "just talked about {thing} with {who}",
    "heading out to {thing} {when}",
    "{who} asked about {thing}",
    "reading about {thing} {when}",
    "is {thing} open {when}?",
    "thinking of {thing} for {when}",
    "{who} and I are at {thing}",
]
OPINION = [
    "I {feeling} {thing}",
    "{thing} is {verdict}",
    "{thing} was {verdict} {when}",
    "honestly {thing} is {verdict}",
    "{who} says {thing} is {verdict}",
    "I {feeling} {thing} {when}",
    "ugh or yay? {thing} is {verdict}",
]
WHO = ["my sister", "@jamie", "my boss", "mom", "the neighbours", "@alex_92", "my friends"]
WHEN = ["today", "tonight", "this week", "tomorrow", "again", "right now", "on friday"]
TIME = ["5pm", "noon", "8:30", "10am", "half past six"]
ENDINGS = ["", "", "!", "!!", ".", " :)", " :(", " lol", " #mood", "..."]


def _text_and_span(label: str, rng: random.Random) -> tuple[str, str]:
    """A text and the span of it that carries its sentiment (the whole text when neutral, as in Kaggle's)."""
    slots = {"thing": rng.choice(THINGS), "who": rng.choice(WHO), "when": rng.choice(WHEN), "time": rng.choice(TIME)}
    if label == "neutral":
        template = rng.choice(NEUTRAL)
        text, span = template.format(**slots), None
    else:
        template = rng.choice(OPINION)
        feeling, verdict = rng.choice(FEELING[label]), rng.choice(VERDICT[label])
        text = template.format(feeling=feeling, verdict=verdict, **slots)
        span = feeling if "{feeling}" in template else verdict
    ending = rng.choice(ENDINGS)
    if label == "neutral" and ending in (" :)", " :("):
        ending = ""  # a smiley is a sentiment
    text = (text[0].upper() + text[1:] if rng.random() < 0.5 else text) + ending
    return text, span or text


def _text(label: str, rng: random.Random) -> str:
    return _text_and_span(label, rng)[0]


def sample_texts(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """`n` distinct short texts with balanced `sentiment` labels (columns text, sentiment), seeded."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n:
        label = LABELS[len(rows) % len(LABELS)]
        text = _text(label, rng)
        if text.lower() not in seen:  # distinct, so the splits cannot leak into each other
            seen.add(text.lower())
            rows.append((text, label))
    return pd.DataFrame(rows, columns=["text", "sentiment"])


def sample_spans(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """sample_texts with Kaggle's span-extraction column: `selected_text`, the words that carry the sentiment."""
    rng, seen, rows = random.Random(seed), set(), []
    while len(rows) < n:
        label = LABELS[len(rows) % len(LABELS)]
        text, span = _text_and_span(label, rng)
        if text.lower() not in seen:
            seen.add(text.lower())
            rows.append((text, span, label))
    return pd.DataFrame(rows, columns=["text", "selected_text", "sentiment"])


def write_sample(dest: Path, n_train: int = 600, n_test: int = 150, seed: int = 0) -> Path:
    """train.csv + test.csv in `dest`, the layout of the Kaggle tweets (a folder of split files): text,
    selected_text (the span carrying the sentiment, for task: generation) and sentiment."""
    df = sample_spans(n_train + n_test, seed)
    dest.mkdir(parents=True, exist_ok=True)
    df.iloc[:n_train].to_csv(dest / "train.csv", index=False)
    df.iloc[n_train:].to_csv(dest / "test.csv", index=False)
    return dest


def build_tokenizer(texts: list[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, GPT-2's way: any string encodes, eos and no pad."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    bpe.add_special_tokens([EOS])  # added last, so eos is the highest id, as GPT-2's 50256 is
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=1024
    )


def build_gpt2(
    dest: Path, tokenizer: PreTrainedTokenizerBase, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, seed: int = 0
) -> Path:
    """A randomly initialised GPT-2 language model with `tokenizer`, saved like the Hub's `gpt2` (no head)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    GPT2LMHeadModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def build_sample(dest: Path, seed: int = 0) -> tuple[Path, Path]:
    """The data folder and a GPT-2 model folder (with its tokenizer) under `dest`."""
    data_dir = write_sample(dest / "data", seed=seed)
    texts = pd.concat(pd.read_csv(data_dir / f"{s}.csv")["text"] for s in ("train", "test")).tolist()
    model_dir = build_gpt2(dest / "gpt2-from-config", build_tokenizer(texts), seed=seed)
    return data_dir, model_dir
