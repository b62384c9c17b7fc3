"""Predict with the registered champion (or a given version): labels and class probabilities, or, for a
generation model, completions.

    tuneops predict "I love this" "meh"
    tuneops predict --file tweets.csv --out preds.jsonl      (CSV/TSV/JSONL/Parquet with a `text` column)
    tuneops predict --max-tokens 20 --stop "\n" "$(printf 'so happy today\nsentiment: positive\n\n###\n\n')"

Inputs are sorted by length and padded per batch under torch.inference_mode; outputs keep the input order.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from tuneops.config.errors import UserError
from tuneops.data.sources import read_file
from tuneops.io.files import write_text
from tuneops.models.loading import predict_texts, set_threads

log = logging.getLogger("tuneops.predict")


def read_texts(path: Path, text_column: str = "text") -> list[str]:
    if not path.is_file():
        raise UserError(
            f"{path}: no such file (give --file a CSV/TSV/JSONL/Parquet file with a {text_column!r} column)"
        )
    df = read_file(path)
    if text_column not in df.columns:
        raise UserError(f"{path}: column {text_column!r} not found (columns: {', '.join(map(str, df.columns))})")
    missing = df[text_column].isna()
    if missing.any():  # a silent "" would get a confident label for no text at all
        rows = ", ".join(str(i + 1) for i in df.index[missing][:5])
        raise UserError(f"{path}: column {text_column!r}: {int(missing.sum())} row(s) with no text (row {rows})")
    return [str(v) for v in df[text_column]]


def predict(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64) -> list[dict]:
    set_threads(None)
    return predict_texts(model, tokenizer, texts, tokenizer.model_max_length, batch_size)


def complete(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_tokens: int,
    stop: list[str],
    temperature: float,
    batch_size: int,
) -> list[dict]:
    """Completions for prompts: greedy at temperature 0, KV-cached, batched by length, cut at the first stop."""
    from tuneops.inference.generation import generate

    set_threads(None)
    done = generate(
        model, tokenizer, prompts, max_new_tokens=max_tokens, stop=stop, temperature=temperature, batch_size=batch_size
    )
    return [{"completion": c.text, "finish_reason": c.finish_reason} for c in done]


def write_predictions(texts: list[str], results: list[dict], out: Path | None) -> None:
    lines = (json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, results, strict=True))
    if out is None:
        for line in lines:
            print(line)
        return
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give --out a file name, e.g. {out / 'predictions.jsonl'}")
    write_text(out, "".join(line + "\n" for line in lines))
    print(f"wrote {len(results)} predictions to {out}", file=sys.stderr)
