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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.data.sources import read_file
from tuneops.inference.generation import generate_with
from tuneops.inference.sampling import SamplingParams
from tuneops.io.files import write_text
from tuneops.models.hardware import set_threads
from tuneops.models.loading import predict_texts

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("tuneops.predict")

Prediction = dict[str, object]  # one JSON line: {"label", "probabilities"} or {"completion", "finish_reason"}


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


def predict(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int = 64
) -> list[Prediction]:
    set_threads(None)
    return predict_texts(model, tokenizer, texts, tokenizer.model_max_length, batch_size)


def complete(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_tokens: int,
    stop: Sequence[str],
    temperature: float,
    batch_size: int,
) -> list[Prediction]:
    """Completions for prompts: greedy at temperature 0, KV-cached, batched by length, cut at the first stop;
    the same SamplingParams the server builds from a request."""
    set_threads(None)
    params = SamplingParams(max_tokens=max_tokens, stop=tuple(stop), temperature=temperature)
    done = generate_with(model, tokenizer, prompts, params, batch_size=batch_size)
    return [{"completion": c.text, "finish_reason": c.finish_reason} for c in done]


def write_predictions(texts: list[str], results: list[Prediction], out: Path | None) -> None:
    lines = (json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, results, strict=True))
    if out is None:
        for line in lines:
            print(line)
        return
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give --out a file name, e.g. {out / 'predictions.jsonl'}")
    write_text(out, "".join(line + "\n" for line in lines))
    print(f"wrote {len(results)} predictions to {out}", file=sys.stderr)
