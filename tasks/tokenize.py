"""Stage `tokenize`: validated splits -> token ids in data/processed (datasets `save_to_disk`).

    python -m tasks.tokenize          (dvc.yaml runs it; reads data.max_*_samples, data.seed, model, tokenize)

Truncates to `tokenize.max_length` and pads nothing: the collator pads each batch to its longest member.
Takes the seeded subsets (`data.max_train_samples`, `data.max_eval_samples`) as the seed tutorial does, and
drops empty texts (validate reported them; a zero-token input has no last token to classify).
Writes reports/tokenization.json: token lengths per split (mean, p50, p95, max) and the truncation rate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.common import UserError, read_json, run_main, stage_parser, staged_dir, write_json
from tasks.config import DataParams, ModelParams, TokenizeParams, load_params
from tasks.ingest import SPLITS
from tasks.modeling import load_tokenizer

log = logging.getLogger("tuneops.tokenize")


def subset(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded shuffle cut to `limit` rows (None = all rows, still shuffled)."""
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return shuffled if limit is None else shuffled.head(limit)


def length_stats(lengths: np.ndarray, max_length: int) -> dict[str, float]:
    return {
        "rows": int(len(lengths)),
        "mean": round(float(lengths.mean()), 2),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncation_rate": round(float((lengths > max_length).mean()), 5),
    }


def encode(df: pd.DataFrame, tokenizer: Any, max_length: int) -> tuple[dict[str, list], dict[str, float]]:
    ids = tokenizer(df["text"].tolist())["input_ids"]  # untruncated first, to measure truncation
    stats = length_stats(np.array([len(x) for x in ids]), max_length)
    ids = [x[:max_length] for x in ids]
    columns = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": df["label"].tolist()}
    return columns, stats


def tokenize(data: DataParams, model: ModelParams, params: TokenizeParams, interim_dir: Path,
             verdict_path: Path, out_dir: Path, report_path: Path) -> dict:  # fmt: skip
    from datasets import Dataset, DatasetDict

    if not verdict_path.is_file() or not read_json(verdict_path).get("passed"):
        raise UserError(
            f"{verdict_path}: no passing data-quality verdict (run `dvc repro validate` and fix its errors)"
        )
    tokenizer = load_tokenizer(model.name, model.revision)
    limits = {"train": data.max_train_samples, "validation": data.max_eval_samples, "test": data.max_eval_samples}
    report, splits = {"max_length": params.max_length, "splits": {}}, {}
    for split in SPLITS:
        df = pd.read_parquet(interim_dir / f"{split}.parquet")
        usable = df["text"].notna() & (df["text"].str.strip() != "")
        if (~usable).any():
            log.info("%s: dropping %d empty text(s)", split, int((~usable).sum()))
        df = subset(df[usable], limits[split], data.seed)
        columns, report["splits"][split] = encode(df, tokenizer, params.max_length)
        splits[split] = Dataset.from_dict(columns)
        log.info("%-10s %s", split, report["splits"][split])
    with staged_dir(out_dir) as staging:
        DatasetDict(splits).save_to_disk(str(staging))
    write_json(report_path, report)
    return report


def load_processed(processed_dir: Path) -> Any:
    """The tokenized splits, read-only: `datasets` would otherwise write cache files into the DVC output
    (a shuffle, a select), DVC would see it modified, and rerun everything after it."""
    import datasets

    datasets.disable_caching()
    return datasets.load_from_disk(str(processed_dir), keep_in_memory=True)


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    params = load_params(args.params)
    verdict = Path("reports/data_quality_verdict.json")
    tokenize(params.data, params.model, params.tokenize, Path("data/interim"), verdict, Path("data/processed"),
             Path("reports/tokenization.json"))  # fmt: skip


if __name__ == "__main__":
    run_main(main)
