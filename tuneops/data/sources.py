"""Read a data source (Hub id, file or directory of split files) into raw DataFrames, one per split.

Every mistake in the user's data becomes a UserError naming the file and, where known, the line and column.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd

from tuneops.config.errors import TransientError, UserError
from tuneops.io import hub

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
SPLIT_NAMES = {"train": "train", "test": "test", "validation": "validation", "valid": "validation", "dev": "validation"}


def looks_like_path(source: str) -> bool:
    """A Hub id is `name` or `namespace/name`; anything else (a suffix, ./, ~, deeper nesting) is a path."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or Path(source).suffix.lower() in FORMATS
        or "\\" in source
    )


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{path}: the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(
            f"{path}: line {line}: bytes that are not UTF-8 ({raw[exc.start : exc.start + 4]!r}); "
            "re-save the file as UTF-8"
        ) from None


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    text = _decode(path)
    try:
        # keep_default_na=False: a tweet that says "NA" or "null" is text, not a missing value.
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.ParserError as exc:
        msg = str(exc)
        if match := re.search(r"EOF inside string starting at row (\d+)", msg):
            line = int(match.group(1)) + 1
            raise UserError(f'{path}: line {line}: unbalanced quote (a field opens " and never closes)') from None
        if match := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg):
            want, line, saw = match.groups()
            raise UserError(f"{path}: line {line}: expected {want} fields, saw {saw}") from None
        raise UserError(f"{path}: cannot parse: {' '.join(msg.split())}") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    if df.empty:
        raise UserError(f"{path}: has a header ({', '.join(map(str, df.columns))}) but no data rows")
    return df


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        rows.append(record)
    return pd.DataFrame.from_records(rows)


def _read_parquet(path: Path) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise UserError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
    if df.empty:
        raise UserError(f"{path}: has columns ({', '.join(map(str, df.columns))}) but no rows")
    return df


def read_file(path: Path) -> pd.DataFrame:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise UserError(f"{path}: unknown format {path.suffix or '(no suffix)'!r}; use one of {known}")
    if kind in ("csv", "tsv"):
        return _read_delimited(path, "," if kind == "csv" else "\t")
    return _read_jsonl(path) if kind == "jsonl" else _read_parquet(path)


def _split_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        split = SPLIT_NAMES.get(path.stem.lower())
        if split is None or path.suffix.lower() not in FORMATS:
            continue
        if split in found:
            raise UserError(f"{directory}: two files for split {split!r}: {found[split].name}, {path.name}")
        found[split] = path
    if "train" not in found:
        raise UserError(f"{directory}: no train file (expected train.csv, train.jsonl, train.parquet, ...)")
    return found


def load_local(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    """Split name -> (raw frame, origin for messages). A single file is one unsplit `train`."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory (check data.source in params.yaml)")
    files = _split_files(path) if path.is_dir() else {"train": path}
    return {split: (read_file(file), str(file)) for split, file in files.items()}


def load_hub(dataset_id: str, revision: str | None) -> dict[str, tuple[pd.DataFrame, str]]:
    hub.probe(f"Hub dataset {dataset_id!r}")  # seconds, not the client's half minute of retries
    import datasets  # slow import, only needed for the Hub

    try:
        dsd = datasets.load_dataset(dataset_id, revision=revision)
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise TransientError(f"Hub dataset {dataset_id!r}: {' '.join(str(exc).split())[:300]}") from None
    except Exception as exc:  # DatasetNotFoundError and friends: a wrong id is the user's to fix
        raise UserError(
            f"Hub dataset {dataset_id!r}: {' '.join(str(exc).split())[:300]} "
            "(a typo? or point data.source at a local file or directory)"
        ) from None
    splits = {SPLIT_NAMES.get(name, name): name for name in dsd}
    if "train" not in splits:
        raise UserError(f"Hub dataset {dataset_id!r}: no train split (has {', '.join(dsd)})")
    return {
        split: (dsd[name].to_pandas(), f"hub:{dataset_id}[{name}]")
        for split, name in splits.items()
        if split in ("train", "validation", "test")
    }


def load_source(source: str, revision: str | None) -> dict[str, tuple[pd.DataFrame, str]]:
    path = Path(source).expanduser()
    if path.exists() or looks_like_path(source):
        return load_local(path)
    return load_hub(source, revision)
