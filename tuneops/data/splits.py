"""The canonical dataset: any source's columns mapped onto `text, label, label_text` (task: classification) or
`prompt, completion, source_text` (task: generation), its splits, and the splits on disk (Parquet and a
manifest) that the ingest stage writes and later stages read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tuneops.config.errors import UserError
from tuneops.config.params import DataParams, GenerationParams, template_fields
from tuneops.config.paths import MANIFEST_PATH, SPLITS, split_path
from tuneops.config.records import Manifest, SplitManifest
from tuneops.data.chat import chat_example
from tuneops.data.preference import has_preferences, preference_rows
from tuneops.data.templates import render
from tuneops.io.files import sha256_file, staged_dir, write_json

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("tuneops.splits")


def pick_columns(df: pd.DataFrame, origin: str, data: DataParams) -> tuple[str, str]:
    text_col, label_col = data.text_column, data.label_column
    if {text_col, label_col} - set(df.columns) and {"prompt", "completion"} <= set(df.columns):
        return "prompt", "completion"  # OpenAI fine-tuning JSONL, as the seed article prepares it
    for key, column in (("data.text_column", text_col), ("data.label_column", label_col)):
        if column not in df.columns:
            have = ", ".join(map(str, df.columns))
            raise UserError(f"{origin}: column {column!r} not found (columns: {have}); set {key}")
    return text_col, label_col


def label_ids(values: pd.Series, origin: str, column: str, labels: list[str]) -> pd.Series:
    """Labels arrive as names or as ids; both become ids, anything else is named with its rows."""
    by_name = {name.strip().lower(): i for i, name in enumerate(labels)}
    by_id = {str(i): i for i in range(len(labels))}
    as_text = values.map(lambda v: None if v is None or v != v else str(v).strip())
    ids = as_text.map(lambda v: by_name.get(v.lower(), by_id.get(v)) if v is not None else None)
    bad = ids.isna()
    if bad.any():
        rows = [int(i) + 1 for i in values.index[bad][:5]]
        shown = ", ".join(f"row {r}: {as_text.iloc[r - 1]!r}" for r in rows)
        raise UserError(
            f"{origin}: column {column!r}: {int(bad.sum())} label(s) outside {labels} ({shown}); "
            "fix the data or data.labels"
        )
    return ids.astype("int64")


def to_canonical(df: pd.DataFrame, origin: str, data: DataParams) -> pd.DataFrame:
    text_col, label_col = pick_columns(df, origin, data)
    df = df.reset_index(drop=True)
    text = df[text_col].map(lambda v: None if v is None or v != v else str(v))
    if label_col == "completion":
        text = text.map(lambda v: v.strip() if v is not None else None)
    label = label_ids(df[label_col], origin, label_col, data.labels)
    return pd.DataFrame(
        {
            "text": text.astype("string"),
            "label": label,
            "label_text": label.map(lambda i: data.labels[i]).astype("string"),
        }
    )


def _row_label(origin: str, index: int) -> str:
    kind = "line" if origin.endswith((".jsonl", ".ndjson")) else "row"
    return f"{origin}: {kind} {index + 1}"  # blank JSONL lines are skipped, so a line is the n-th record


def _chat_pairs(df: pd.DataFrame, origin: str, tokenizer: PreTrainedTokenizerBase) -> pd.DataFrame:
    rows = []
    tools = df["tools"] if "tools" in df.columns else [None] * len(df)  # OpenAI's function-calling examples
    for i, (messages, tools_) in enumerate(zip(df["messages"], tools, strict=True)):
        try:
            example = chat_example(tokenizer, messages, tools_ if isinstance(tools_, list) else None)
        except ValueError as exc:
            raise UserError(f"{_row_label(origin, i)}: field 'messages': {exc}") from None
        spans = [list(span) for span in example.prompt_spans]
        rows.append((example.prompt, example.completion, example.user_text, spans, example.completion_weight))
    return pd.DataFrame(rows, columns=[*PAIR_COLUMNS, "prompt_spans", "completion_weight"])


def _templated_pairs(df: pd.DataFrame, origin: str, gen: GenerationParams) -> pd.DataFrame:
    fields = template_fields(gen.prompt_template) + template_fields(gen.completion_template)
    for field in dict.fromkeys(fields):
        if field not in df.columns:
            have = ", ".join(map(str, df.columns))
            hint = " (run `tuneops prepare-data` on it)" if field in ("prompt", "completion") else ""
            raise UserError(
                f"{origin}: column {field!r} not found (columns: {have}); set generation.prompt_template and "
                f"generation.completion_template to its columns{hint}"
            )
        missing = df[field].isna()
        if missing.any():
            raise UserError(f"{_row_label(origin, int(missing.to_numpy().argmax()))}: field {field!r} is missing")
    records = df.to_dict("records")
    first = template_fields(gen.prompt_template)[0]
    return pd.DataFrame(
        {
            "prompt": [render(gen.prompt_template, r) for r in records],
            "completion": [render(gen.completion_template, r) for r in records],
            "source_text": [str(r[first]) for r in records],
        }
    )


PAIR_COLUMNS = ["prompt", "completion", "source_text"]


def to_pairs(
    df: pd.DataFrame, origin: str, gen: GenerationParams, tokenizer: PreTrainedTokenizerBase | None = None
) -> pd.DataFrame:
    """A source's rows as prompt/completion pairs: chat JSONL rendered with the model's chat template
    (tuneops.data.chat; `tokenizer` carries it), preference JSONL likewise with the other reply as `rejected`
    (tuneops.data.preference), other sources through the templates.

    `source_text` is the prompt template's first field (the user's last message, for chat): what the copy
    baseline of evaluate answers with. Every pair also has `prompt_spans`, the character spans of its prompt that
    train too (a conversation's earlier assistant replies), and `completion_weight` (0: a last reply with
    `weight: 0`, learned from as context only).
    """
    df = df.reset_index(drop=True)
    if has_preferences(df):  # OpenAI's preference JSONL (DPO): the preferred reply is the completion
        if tokenizer is None:
            raise ValueError("preference data needs the model's tokenizer (its chat template) to render it")
        pairs = preference_rows(df, origin, tokenizer)
        return pairs.assign(prompt_spans=[[] for _ in range(len(pairs))], completion_weight=1.0)
    if "messages" not in df.columns:
        pairs = _templated_pairs(df, origin, gen).astype("string")
        return pairs.assign(prompt_spans=[[] for _ in range(len(pairs))], completion_weight=1.0)
    if tokenizer is None:
        raise ValueError("chat data needs the model's tokenizer (its chat template) to render it")
    pairs = _chat_pairs(df, origin, tokenizer)
    return pairs.astype({name: "string" for name in PAIR_COLUMNS})


def text_key(text: pd.Series) -> pd.Series:
    """Texts that count as the same for leakage: case and runs of whitespace ignored (retweets, copies)."""
    return text.fillna("").str.lower().str.split().str.join(" ")


def input_column(df: pd.DataFrame) -> str:
    """What a model reads: `text` for classification, `prompt` for generation."""
    return "prompt" if "prompt" in df.columns else "text"


LABEL_LIKE = 20  # completions with at most this many distinct values are labels (classification as completion)


def strata(df: pd.DataFrame) -> pd.Series | None:
    """What a carve stratifies by: the label; for pairs, the completion when completions are labels (so the
    classification-as-completion split is the classification split, row for row); else nothing."""
    if "label" in df.columns:
        return df["label"]
    if "completion" in df.columns and df["completion"].nunique() <= LABEL_LIKE:
        return df["completion"]
    return None


def carve(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a `fraction` of `df` (stratified by label where there are labels), keeping every copy of an
    input on one side.

    A random carve of rows puts a retweet in train and its copy in test: the split itself would leak, and
    validate's leakage check would stop the pipeline on data that had no split to leak. So inputs are carved
    as groups (one row per distinct text, stratified by its first label), then every row follows its group.
    """
    from sklearn.model_selection import train_test_split

    keys = text_key(df[input_column(df)])
    labels = strata(df)
    groups = pd.DataFrame({"key": keys, "label": labels}).drop_duplicates("key")
    stratify = groups["label"] if labels is not None and groups["label"].value_counts().min() >= 2 else None
    if stratify is None and labels is not None:
        log.warning("a class has fewer than 2 distinct texts: carving a split without stratification")
    _, held = train_test_split(groups["key"], test_size=fraction, random_state=seed, stratify=stratify)
    is_held = keys.isin(set(held))
    return df[~is_held].reset_index(drop=True), df[is_held].reset_index(drop=True)


def make_splits(frames: dict[str, pd.DataFrame], data: DataParams) -> dict[str, pd.DataFrame]:
    """The source's own splits, plus validation (and, for a single file, test) carved from train."""
    splits = dict(frames)
    if "test" not in splits:
        log.info("source has no test split: holding out %.0f%% of train", 100 * data.test_fraction)
        splits["train"], splits["test"] = carve(splits["train"], data.test_fraction, data.seed)
    if "validation" not in splits:
        log.info("carving a validation split (%.0f%% of train)", 100 * data.validation_fraction)
        splits["train"], splits["validation"] = carve(splits["train"], data.validation_fraction, data.seed)
    return {name: splits[name] for name in SPLITS}


def write_splits(splits: dict[str, pd.DataFrame], data: DataParams, out_dir: Path) -> Manifest:
    """Each split as Parquet plus the manifest, all or nothing: a failure leaves the old folder in place."""
    labelled = all("label_text" in df.columns for df in splits.values())
    labels = data.labels if labelled else []  # generation: pairs, no labels
    manifest = Manifest(source=data.source, revision=data.revision, labels=labels, splits={})
    with staged_dir(out_dir) as staging:
        for name, df in splits.items():
            path = split_path(staging, name)
            df.to_parquet(path, index=False)
            counts = df["label_text"].value_counts() if labelled else pd.Series(dtype="int64")
            manifest.splits[name] = SplitManifest(
                rows=len(df),
                label_counts={label: int(counts.get(label, 0)) for label in labels},
                sha256=sha256_file(path),
            )
            log.info("%-10s %6d rows  %s", name, len(df), manifest.splits[name].label_counts)
        write_json(staging / MANIFEST_PATH.name, manifest)
    return manifest


def read_splits(interim_dir: Path) -> dict[str, pd.DataFrame]:
    return {split: pd.read_parquet(split_path(interim_dir, split)) for split in SPLITS}
