"""Files that are never half-written, and typed records read back by the model that wrote them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from tuneops.config.errors import UserError

Record = TypeVar("Record")


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """A file's hex digest, read in blocks (models are gigabytes)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: Path) -> str:
    return file_hash(path, "sha256")


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: reports must be readable as any new file is
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


def write_jsonl(path: Path, records: list[Any]) -> None:
    """One JSON object per line (records or plain values), written atomically."""
    plain = TypeAdapter(list[Any]).dump_python(records, mode="json")
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in plain))


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


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Did this write fail because the disk is full? torch.save says only "unexpected pos" (no errno), so
    that one counts when the folder's file system is (nearly) out of space."""
    low = shutil.disk_usage(folder).free < 64 * 2**20 if folder.exists() else False
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        if "unexpected pos" in str(exc) and low:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def said_when_disk_full(folder: Path, then: str) -> Iterator[None]:
    """Turn a full disk while writing under `folder` into one line that says so, and what happens next."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if disk_full(exc, folder):
            raise UserError(
                f"no space left on device while writing {folder}: free some space and run again; {then}"
            ) from None
        raise


def remove(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
