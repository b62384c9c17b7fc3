"""Files that are never half-written, and typed records read back by the model that wrote them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from tuneops.errors import UserError

Record = TypeVar("Record")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise


def write_json(path: Path, payload: Any) -> None:
    """JSON of plain values or of typed records (a model, or a list of them), written atomically."""
    plain = TypeAdapter(Any).dump_python(payload, mode="json")
    write_text(path, json.dumps(plain, indent=2) + "\n")


def read_json(path: Path, kind: type[Record] | Any = Any) -> Record:
    """A JSON file as `kind` (a record model, `list[Model]`, ...); a missing or malformed one is one line."""
    if not path.is_file():
        raise UserError(f"{path}: not found (run the stage that writes it first, e.g. `dvc repro`)")
    try:
        return TypeAdapter(kind).validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{path}: {where}: {first['msg']} (written by another version? rerun its stage)") from None


def dump(record: BaseModel) -> dict[str, Any]:
    return record.model_dump(mode="json")


@contextlib.contextmanager
def staged_dir(final_dir: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `final_dir` only if the block succeeds.

    A stage that fails leaves no output a later stage could take for valid.
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}."))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(staging, final_dir)


def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
