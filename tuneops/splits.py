"""The canonical dataset: any source's columns mapped onto `text, label, label_text`, its splits, and the
splits on disk (Parquet and a manifest) that the ingest stage writes and later stages read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tuneops.errors import UserError
from tuneops.files import sha256_file, staged_dir, write_json
from tuneops.params import DataParams
from tuneops.paths import MANIFEST_PATH, SPLITS, split_path
from tuneops.records import Manifest, SplitManifest

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


def text_key(text: pd.Series) -> pd.Series:
    """Texts that count as the same for leakage: case and runs of whitespace ignored (retweets, copies)."""
    return text.fillna("").str.lower().str.split().str.join(" ")


def carve(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a stratified `fraction` of `df`, keeping every copy of a text on one side.

    A random carve of rows puts a retweet in train and its copy in test: the split itself would leak, and
    validate's leakage check would stop the pipeline on data that had no split to leak. So texts are carved
    as groups (one row per distinct text, stratified by its first label), then every row follows its group.
    """
    from sklearn.model_selection import train_test_split

    keys = text_key(df["text"])
    groups = pd.DataFrame({"key": keys, "label": df["label"]}).drop_duplicates("key")
    stratify = groups["label"] if groups["label"].value_counts().min() >= 2 else None
    if stratify is None:
        log.warning("a class has fewer than 2 distinct texts: carving a split without stratification")
    _, held = train_test_split(groups["key"], test_size=fraction, random_state=seed, stratify=stratify)
    is_held = keys.isin(set(held))
    return df[~is_held].reset_index(drop=True), df[is_held].reset_index(drop=True)


def make_splits(frames: dict[str, pd.DataFrame], data: DataParams) -> dict[str, pd.DataFrame]:
    """The source's own splits, plus validation (and, for a single file, test) carved from train."""
    splits = dict(frames)
    if "test" not in splits:
        log.info("source has no test split: holding out %.0f%% of train, stratified", 100 * data.test_fraction)
        splits["train"], splits["test"] = carve(splits["train"], data.test_fraction, data.seed)
    if "validation" not in splits:
        log.info("carving a stratified validation split (%.0f%% of train)", 100 * data.validation_fraction)
        splits["train"], splits["validation"] = carve(splits["train"], data.validation_fraction, data.seed)
    return {name: splits[name] for name in SPLITS}


def write_splits(splits: dict[str, pd.DataFrame], data: DataParams, out_dir: Path) -> Manifest:
    """Each split as Parquet plus the manifest, all or nothing: a failure leaves the old folder in place."""
    manifest = Manifest(source=data.source, revision=data.revision, labels=data.labels, splits={})
    with staged_dir(out_dir) as staging:
        for name, df in splits.items():
            path = split_path(staging, name)
            df.to_parquet(path, index=False)
            counts = df["label_text"].value_counts()
            manifest.splits[name] = SplitManifest(
                rows=len(df),
                label_counts={label: int(counts.get(label, 0)) for label in data.labels},
                sha256=sha256_file(path),
            )
            log.info("%-10s %6d rows  %s", name, len(df), manifest.splits[name].label_counts)
        write_json(staging / MANIFEST_PATH.name, manifest)
    return manifest


def read_splits(interim_dir: Path) -> dict[str, pd.DataFrame]:
    return {split: pd.read_parquet(split_path(interim_dir, split)) for split in SPLITS}
