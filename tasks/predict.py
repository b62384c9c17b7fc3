"""Predict with the registered champion (or a given version): labels and class probabilities.

    tuneops predict "I love this" "meh"
    tuneops predict --file tweets.csv --out preds.jsonl      (CSV/TSV with a `text` column, or JSONL)

Inputs are sorted by length and padded per batch under torch.inference_mode; outputs keep the input order.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from tasks.common import UserError, write_text
from tasks.config import RegisterParams
from tasks.loaders import read_file
from tasks.modeling import for_inference, predict_texts, set_threads

log = logging.getLogger("tuneops.predict")


def model_uri(register: RegisterParams, version: int | None = None) -> str:
    name = register.model_name
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{register.alias}"


def load_registered(register: RegisterParams, version: int | None = None) -> tuple[Any, Any]:
    """Model and tokenizer of a registered version, straight from the MLflow Model Registry."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from tasks.register import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(register))
    uri = model_uri(register, version)
    try:
        parts = mlflow.transformers.load_model(uri, return_type="components")
    except MlflowException as exc:
        raise UserError(f"{uri}: {exc.message.splitlines()[0]} (run `dvc repro` to register a model)") from None
    return for_inference(parts["model"], parts["tokenizer"]), parts["tokenizer"]


def read_texts(path: Path, text_column: str = "text") -> list[str]:
    df = read_file(path)
    if text_column not in df.columns:
        raise UserError(f"{path}: column {text_column!r} not found (columns: {', '.join(map(str, df.columns))})")
    return ["" if v is None or v != v else str(v) for v in df[text_column]]


def predict(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64) -> list[dict]:
    set_threads(None)
    return predict_texts(model, tokenizer, texts, tokenizer.model_max_length, batch_size)


def write_predictions(texts: list[str], results: list[dict], out: Path | None) -> None:
    lines = (json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, results, strict=True))
    if out is None:
        for line in lines:
            print(line)
        return
    write_text(out, "".join(line + "\n" for line in lines))
    print(f"wrote {len(results)} predictions to {out}", file=sys.stderr)
