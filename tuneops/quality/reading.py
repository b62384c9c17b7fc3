"""prepare-data's input: a file of prompt/completion pairs read as str, and how long its examples are in the
model's own tokens (or in characters when no tokenizer can be loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from tuneops.config.errors import TransientError, UserError
from tuneops.config.params import load_params
from tuneops.data.sources import read_file
from tuneops.quality import measures as pc
from tuneops.quality.measures import Lengths

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FIELDS = ("prompt", "completion")
CHARS_PER_TOKEN = 4  # English text in GPT-2's BPE: only for the fallback when no tokenizer can be loaded


def read_pairs(path: Path) -> pd.DataFrame:
    """The file's rows, indexed by line (JSONL) or data row (CSV, TSV, Parquet) from 1, with prompt and
    completion (in any casing) as str; bad input is a UserError naming the file and the line."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    df = read_file(path)  # not UTF-8, not JSON, not an object: one line naming file and line
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        text = path.read_bytes().decode("utf-8-sig")
        df.index = pd.Index([n for n, line in enumerate(text.splitlines(), start=1) if line.strip()], name="line")
    else:
        df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    unit = df.index.name
    for column in df.columns:
        if str(column).lower() in FIELDS:
            bad = df[column].map(lambda v: isinstance(v, (list, dict, tuple)))
            if bad.any():
                at = int(df.index[bad][0])
                kind = type(df[column][at]).__name__
                raise UserError(f"{path}: {unit} {at}: field {column!r} is a {kind}, expected text")
            df[column] = pc.as_text(df[column])
    return df


def char_lengths(limit: int) -> Lengths:
    return Lengths(pc.char_lengths, limit, "characters")


def token_lengths(tokenizer: PreTrainedTokenizerBase, limit: int) -> Lengths:
    """Lengths in the model's own tokens: prompt and completion tokenized apart (as the tokenize stage does,
    to know where the completion starts) plus the eos that ends every example."""
    eos = 1 if tokenizer.eos_token is not None else 0
    known: dict[str, int] = {}  # --fix measures the same texts again after each round: tokenize each once

    def measure(prompts: pd.Series, completions: pd.Series) -> pd.Series:
        def count(texts: pd.Series) -> list[int]:
            new = list(dict.fromkeys(t for t in texts if t not in known))
            if new:
                ids = tokenizer(new, add_special_tokens=False, verbose=False)["input_ids"]
                known.update(zip(new, map(len, ids), strict=True))
            return [known[t] for t in texts]

        return (
            pd.Series(count(prompts), index=prompts.index, dtype="int64")
            + pd.Series(count(completions), index=completions.index, dtype="int64")
            + eos
        )

    return Lengths(measure, limit, "tokens")


def context_length(name: str, revision: str | None, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The model's positions (its config), else what its tokenizer says it takes; None when neither says."""
    from tuneops.models.loading import max_positions  # start-up: transformers

    try:
        return max_positions(name, revision)
    except (UserError, TransientError, ValueError):  # a tokenizer-only folder has no config
        said = getattr(tokenizer, "model_max_length", None)
        return int(said) if isinstance(said, int) and 0 < said < 10**6 else None


class ChatTokenizer(NamedTuple):
    """The tokenizer a job renders chat with, named as params.yaml names it; None and why when it cannot be loaded."""

    model: str
    tokenizer: PreTrainedTokenizerBase | None
    why_not: str | None = None


def chat_tokenizer(params_path: Path) -> ChatTokenizer:
    """params.yaml's model.name with its chat template (generation.chat_template where it ships none), loaded as
    ingest loads it, so a check renders chat as a job will."""
    from tuneops.models.loading import load_chat_tokenizer  # start-up: transformers

    try:
        params = load_params(params_path)
    except UserError as exc:
        return ChatTokenizer("params.yaml's model", None, str(exc))
    model, declared = params.model, params.generation.chat_template
    try:
        return ChatTokenizer(model.name, load_chat_tokenizer(model.name, model.revision, declared))
    except (UserError, TransientError) as exc:
        return ChatTokenizer(model.name, None, str(exc))


def model_lengths(model: str | None, max_tokens: int | None, params_path: Path) -> tuple[Lengths, str | None]:
    """How to measure examples: in the tokens of --model, else of params.yaml's model.name. When the default
    model cannot be loaded (the Hub out of reach), characters instead, and a note that says so."""
    from tuneops.models.loading import load_tokenizer  # start-up: transformers

    revision = None
    if model is None:
        try:
            params_model = load_params(params_path).model
        except UserError as exc:
            return fallback(max_tokens, f"no model to count tokens with ({exc})")
        model, revision = params_model.name, params_model.revision
        try:
            tokenizer = load_tokenizer(model, revision)
        except (UserError, TransientError) as exc:
            return fallback(max_tokens, f"params.yaml's model.name {model!r} cannot be loaded ({exc})")
    else:
        try:
            tokenizer = load_tokenizer(model)
        except (UserError, TransientError) as exc:
            raise UserError(f"--model {model}: {exc}; pass --model DIR, a local model or tokenizer folder") from None
    limit = max_tokens or context_length(model, revision, tokenizer)
    if limit is None:
        raise UserError(f"--model {model}: its context length is not in its files; pass --max-tokens N")
    return token_lengths(tokenizer, limit), None


def fallback(max_tokens: int | None, why: str) -> tuple[Lengths, str]:
    limit = CHARS_PER_TOKEN * (max_tokens or 1024)
    note = (
        f"{why}. Counting characters instead ({limit}, ~{CHARS_PER_TOKEN} a token); pass --model DIR (a local "
        "model or tokenizer folder) to count the model's own tokens"
    )
    return char_lengths(limit), note
