"""Texts to token ids: seeded subsets, truncation with its rate measured, and the processed splits on disk.

Pads nothing: the collator pads each batch to its longest member (the seed padded every tweet to 1,024).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuneops.config.records import LengthStats

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase


log = logging.getLogger("tuneops.tokenize")
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
    """prompt + completion (+ eos) as one sequence of ids, where the completion starts (`prompt_length`), the
    token spans that train (`loss_spans`: the completion, and a conversation's earlier assistant replies), and
    the pair's texts.

    The prompt's ids are exactly what serving gets when it tokenizes the same prompt (a test checks); the
    completion's are the whole text's from there on, as the model would write them. Where the whole text's
    tokens do not start with the prompt's (a token across the boundary) the completion is tokenized on its own,
    and the rows are counted in the log. eos ends a completion unless it holds eos already (ChatML's end of turn,
    <|im_end|>, is SmolLM2's eos). A pair longer than max_length is dropped, not cut: a cut completion would teach
    the model to stop mid-answer, a cut prompt to answer a question it did not see. The stats count them.
    """
    rows = df.to_dict("records")
    prompts = tokenizer([r["prompt"] for r in rows], return_offsets_mapping=True)
    wholes = tokenizer([r["prompt"] + r["completion"] for r in rows])["input_ids"]
    ids, prompt_lengths, loss_spans, merged = [], [], [], 0
    for k, row in enumerate(rows):
        prompt, whole = prompts["input_ids"][k], wholes[k]
        if whole[: len(prompt)] != prompt:
            merged += 1
            whole = prompt + tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id not in whole[len(prompt) :]:
            whole = [*whole, tokenizer.eos_token_id]
        spans = token_spans(prompts["offset_mapping"][k], _spans(row))
        if float(row.get("completion_weight", 1.0)) > 0:
            spans.append([len(prompt), len(whole)])
        ids.append(whole)
        prompt_lengths.append(len(prompt))
        loss_spans.append(spans)
    if merged:
        log.warning("%d pair(s) have a token across the prompt/completion boundary: completion tokenized alone", merged)
    stats = length_stats(np.array([len(x) for x in ids]), max_length)
    fits = [i for i, x in enumerate(ids) if len(x) <= max_length]
    columns = {
        "input_ids": [ids[i] for i in fits],
        "prompt_length": [prompt_lengths[i] for i in fits],
        "loss_spans": [loss_spans[i] for i in fits],
    }
    # the texts too: evaluate generates for these prompts and compares with these completions
    for name in ("prompt", "completion", "source_text"):
        columns[name] = [df[name].iloc[i] for i in fits]
    return columns, stats


def token_spans(offsets: list[tuple[int, int]], char_spans: list[list[int]]) -> list[list[int]]:
    """Character spans as spans of the tokens that start inside them (special tokens, at (0, 0), never do)."""
    spans = []
    for start, end in char_spans:
        inside = [t for t, (a, b) in enumerate(offsets) if start <= a < end and b > a]
        if inside:
            spans.append([inside[0], inside[-1] + 1])
    return spans


def _spans(row: dict[str, object]) -> list[list[int]]:
    spans = row.get("prompt_spans")
    return [] if spans is None else [[int(s), int(e)] for s, e in spans]


def encode_preferences(
    df: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> tuple[Columns, LengthStats]:
    """Preference pairs (train.objective: dpo): encode_pairs' columns for prompt + completion (the preferred
    reply), the same for prompt + rejected (`rejected_input_ids`; the prompt's tokens, and so `prompt_length`,
    are the same), and the `rejected` text. A pair either of whose sequences is over max_length is dropped.

    TRL's DPOTrainer (1.16) tokenizes prompt/chosen/rejected texts itself and takes no pre-tokenized rows, so
    train hands it the texts; these ids are what evaluate scores (loss, preference accuracy) with, masked by
    position as at every other stage."""
    chosen, _ = encode_pairs(df, tokenizer, max_length=2**62)  # nothing dropped yet: both sides decide
    rejected, _ = encode_pairs(df.assign(completion=df["rejected"]), tokenizer, max_length=2**62)
    longer = np.array([max(len(a), len(b)) for a, b in zip(chosen["input_ids"], rejected["input_ids"], strict=True)])
    stats = length_stats(longer, max_length)
    fits = np.flatnonzero(longer <= max_length)
    columns = {name: [values[i] for i in fits] for name, values in chosen.items()}
    columns["rejected_input_ids"] = [rejected["input_ids"][i] for i in fits]
    columns["rejected"] = [df["rejected"].iloc[i] for i in fits]
    return columns, stats
