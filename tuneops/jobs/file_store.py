"""OpenAI's file objects, kept by tuneops: uploads stored content-addressed in data/files/, tracked by DVC.

An upload's id is derived from its content (`file-<first 24 hex digits of its sha256>`), so the same bytes are
one file however often they arrive. Each file is `data/files/<id>.jsonl` (.csv for a result file: the bytes)
beside `data/files/<id>.json` (its OpenAI file object). After every change the folder is `dvc add`-ed
(data/files.dvc) and, when the project has a default DVC remote, pushed to it, so the data a job trained on is
in the DVC remote with the model.

A `fine-tune` upload is checked when it arrives (`check_training_file`, prepare-data's checks): a file that
fails an error-severity check gets `status: "error"` and the reasons in `status_details`, and a job on it
fails at `validating_files` with them.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from filelock import FileLock
from pydantic import BaseModel

from tuneops.config.errors import UserError
from tuneops.config.paths import FILES_DIR, FILES_LOCK_PATH, PARAMS_PATH
from tuneops.io.files import read_json, remove, write_json

log = logging.getLogger("tuneops.files")

Purpose = Literal["fine-tune", "fine-tune-results"]
SUFFIXES = {"fine-tune": ".jsonl", "fine-tune-results": ".csv"}
ID_PREFIX = "file-"
ID_HEX = 24


class FileObject(BaseModel):
    """OpenAI's `file` object (openai.types.FileObject)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Purpose
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None
    expires_at: int | None = None


def file_id(content: bytes) -> str:
    """The id of these bytes: the same content is the same file."""
    return ID_PREFIX + hashlib.sha256(content).hexdigest()[:ID_HEX]


def is_file_id(text: str) -> bool:
    hex_part = text.removeprefix(ID_PREFIX)
    return text.startswith(ID_PREFIX) and len(hex_part) == ID_HEX and all(c in "0123456789abcdef" for c in hex_part)


def check_training_file(path: Path, params_path: Path) -> list[str]:
    """The reasons a fine-tune file cannot be trained on, or []: `tuneops prepare-data`'s checks (the registry,
    tuneops/quality/checks.py) that fail with error severity, lengths counted in the tokens of params.yaml's
    model. The one call site."""
    from tuneops.quality.prepare import check_all  # start-up: pandas and numpy, only once a file is checked
    from tuneops.quality.reading import model_lengths, read_pairs  # start-up: as the line above

    try:
        pairs = read_pairs(path)
    except UserError as exc:  # not JSON, not an object, ...: one line naming the line
        return [str(exc).removeprefix(f"{path}: ")]
    lengths, _ = model_lengths(None, None, params_path)
    return [f"{f.record.check}: {f.record.message}" for f in check_all(pairs, lengths) if f.record.verdict == "error"]


class FileStore:
    """data/files/ of a project: add, read, list and delete file objects; every change `dvc add`-ed."""

    def __init__(self, root: Path, track: bool = True) -> None:
        self.root = root.resolve()
        self.dir = self.root / FILES_DIR
        self.track = track

    def content_path(self, id_: str) -> Path:
        """The bytes, named so readers know the format: .jsonl (fine-tune) or .csv (fine-tune-results)."""
        found = [p for p in (self.dir / f"{id_}{s}" for s in SUFFIXES.values()) if p.is_file()]
        return found[0] if found else self.dir / f"{id_}{SUFFIXES['fine-tune']}"

    def _meta_path(self, id_: str) -> Path:
        return self.dir / f"{id_}.json"

    def _locked(self) -> FileLock:
        """One writer at a time (the API server's requests and the workers' result files), on this machine."""
        lock = self.root / FILES_LOCK_PATH
        lock.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(lock, preserve_lock_file=True)

    def add(self, content: bytes, filename: str, purpose: Purpose) -> FileObject:
        id_ = file_id(content)
        with self._locked():
            if self._meta_path(id_).is_file():
                return self.get(id_)
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"{id_}{SUFFIXES[purpose]}"
            path.write_bytes(content)
            problems = check_training_file(path, self.root / PARAMS_PATH) if purpose == "fine-tune" else []
            record = FileObject(
                id=id_,
                bytes=len(content),
                created_at=int(time.time()),
                filename=Path(filename).name or id_,
                purpose=purpose,
                status="error" if problems else "processed",
                status_details="; ".join(problems) if problems else None,
            )
            write_json(self._meta_path(id_), record)
            self._dvc_track()
        return record

    def get(self, id_: str) -> FileObject | None:
        meta = self._meta_path(id_)
        return read_json(meta, FileObject) if is_file_id(id_) and meta.is_file() else None

    def list(self, purpose: str | None = None) -> list[FileObject]:
        """Newest first (OpenAI's default order)."""
        found = [read_json(p, FileObject) for p in self.dir.glob(f"{ID_PREFIX}*.json")] if self.dir.is_dir() else []
        found = [f for f in found if purpose is None or f.purpose == purpose]
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    def delete(self, id_: str) -> bool:
        with self._locked():
            if self.get(id_) is None:
                return False
            remove(self.content_path(id_), self._meta_path(id_))
            self._dvc_track()
        return True

    def _dvc_track(self) -> None:
        """`dvc add data/files`, then `dvc push` of it when a default remote is set; failures are logged, the
        file stays stored (the next change tracks the whole folder again)."""
        if not self.track:
            return
        for args in (["add", "-q", str(FILES_DIR)], ["push", "-q", f"{FILES_DIR}.dvc"]):
            done = subprocess.run(
                [sys.executable, "-m", "dvc", *args], cwd=self.root, capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                why = " ".join((done.stderr or done.stdout).split())[:300]
                log.warning("`dvc %s` failed in %s (the file is stored all the same): %s", args[0], self.root, why)
                return
