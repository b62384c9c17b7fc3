"""Texts to token ids: seeded subsets, truncation with its rate measured, and the processed splits on disk.

Pads nothing: the collator pads each batch to its longest member (the seed padded every tweet to 1,024).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuneops.config.records import LengthStats

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase


Columns = dict[str, list[list[int]] | list[int]]  # a split's token columns: input_ids, label / prompt_length


def subset(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded shuffle cut to `limit` rows (None = all rows, still shuffled)."""
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return shuffled if limit is None else shuffled.head(limit)


def usable(df: pd.DataFrame) -> pd.Series:
    """Rows with something to learn: validate reported the others. A classifier needs some text (a zero-token
    input has no last token to pool); a completion needs some completion (the prompt may be empty)."""
    column = "completion" if "completion" in df.columns else "text"
    return df[column].notna() & (df[column].str.strip() != "")


def length_stats(lengths: np.ndarray, max_length: int) -> LengthStats:
    return LengthStats(
        rows=int(len(lengths)),
        mean=round(float(lengths.mean()), 2),
        p50=float(np.percentile(lengths, 50)),
        p95=float(np.percentile(lengths, 95)),
        max=int(lengths.max()),
        truncation_rate=round(float((lengths > max_length).mean()), 5),
    )


def encode(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Columns, LengthStats]:
    """Token ids, attention masks and labels, truncated to max_length; and the lengths before truncation."""
    ids = tokenizer(df["text"].tolist())["input_ids"]  # untruncated first, to measure truncation
    stats = length_stats(np.array([len(x) for x in ids]), max_length)
    ids = [x[:max_length] for x in ids]
    columns = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": df["label"].tolist()}
    return columns, stats


def load_processed(processed_dir: Path) -> DatasetDict:
    """The tokenized splits, read-only: `datasets` would otherwise write cache files into the DVC output
    (a shuffle, a select), DVC would see it modified, and rerun everything after it."""
    import datasets

    datasets.disable_caching()
    return datasets.load_from_disk(str(processed_dir), keep_in_memory=True)


def encode_pairs(df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Columns, LengthStats]:
    """prompt + completion + eos as one sequence of ids, where the completion starts (`prompt_length`), and the
    pair's texts.

    Prompt and completion are tokenized apart, so the boundary is exact (a completion starts with its own
    space, as prepare-data recommends). A pair longer than max_length is dropped, not cut: a cut completion would
    teach the model to stop mid-answer, a cut prompt to answer a question it did not see. The stats count them.
    """
    prompts = tokenizer(df["prompt"].tolist())["input_ids"]
    completions = tokenizer(df["completion"].tolist())["input_ids"]
    ids = [p + c + [tokenizer.eos_token_id] for p, c in zip(prompts, completions, strict=True)]
    stats = length_stats(np.array([len(x) for x in ids]), max_length)
    fits = [i for i, x in enumerate(ids) if len(x) <= max_length]
    columns = {"input_ids": [ids[i] for i in fits], "prompt_length": [len(prompts[i]) for i in fits]}
    # the texts too: evaluate generates for these prompts and compares with these completions
    for name in ("prompt", "completion", "source_text"):
        columns[name] = [df[name].iloc[i] for i in fits]
    return columns, stats
