"""OpenAI's file objects, kept by tuneops in data/files/, tracked by DVC.

Each upload is a file of its own: its own id (`file-` + 24 random hex digits) and its own filename, so two uploads
of the same bytes are two files, and deleting one leaves the other. The bytes are stored once however often they
arrive: `data/files/blobs/<sha256>.jsonl` (.csv for a result file), shared by every file object that names it in
`data/files/<id>.json` (its OpenAI file object and its blob) and removed with the last of them. A result file
(purpose `fine-tune-results`, written by a job) keeps the id of its content, `file-<first 24 hex digits of its
sha256>`, because the jobs routes name a job's result file by its content. Files stored before blobs (id =
content hash, bytes in `data/files/<id>.jsonl`) are read as they are. After every change the folder is
`dvc add`-ed (data/files.dvc) and, when the project has a default DVC remote, pushed to it, so the data a job
trained on is in the DVC remote with the model.

A `fine-tune` upload is checked when it arrives (tuneops.jobs.file_check, every format OpenAI fine-tuning takes):
a file that fails an error-severity check gets `status: "error"` and the reasons in `status_details`, and a job on
it fails at `validating_files` with them; warnings go to `status_details` of a "processed" file.

An upload never stays half-stored: its bytes stream in 1 MiB chunks (memory flat however large the file) into a
hidden temporary file beside the blobs (`.upload-*`, which .dvcignore keeps out of `dvc add`), hashed on the way,
are checked there (file_check: one line at a time), and only then, under the lock, become the blob (os.replace)
and get their file object. A full disk, a check that raises or a client gone mid-upload removes the temporary file
and leaves nothing else; two uploads at once each have their own temporary file and id. An id or filename with path
parts (`..`, `/`, `\\`, NUL) is refused before any path is made.

`expires_after` (OpenAI's expiration policy) sets `expires_at`. An expired file is gone at once for every read
(get, list, content: a 404), and its storage is removed on the next list or write (add, delete), under the lock.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

from filelock import FileLock
from pydantic import BaseModel, Field

from tuneops.config.paths import FILES_DIR, FILES_LOCK_PATH, PARAMS_PATH
from tuneops.io.files import read_json, remove, write_json
from tuneops.jobs.file_check import check_training_file

log = logging.getLogger("tuneops.files")

Purpose = Literal["fine-tune", "fine-tune-results"]
SUFFIXES = {"fine-tune": ".jsonl", "fine-tune-results": ".csv"}
ID_PREFIX = "file-"
ID_HEX = 24
BLOBS = "blobs"
MIN_EXPIRY_S = 3600  # OpenAI's bounds on expires_after.seconds: an hour ...
MAX_EXPIRY_S = 2_592_000  # ... to 30 days
CHUNK_BYTES = 1 << 20  # an upload is copied this much at a time: the server holds one chunk, never the file
STAGING_PREFIX = ".upload-"  # an upload's temporary file in blobs/: hidden, never a blob's or a record's name
PATH_PARTS = ("..", "/", "\\", "\0")  # what turns a name into a path elsewhere


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


class StoredFile(FileObject):
    """data/files/<id>.json: the file object and the sha256 of its blob (None: stored before blobs, the bytes in
    data/files/<id>.jsonl)."""

    sha256: str | None = None

    def public(self) -> FileObject:
        return FileObject.model_validate(self.model_dump(exclude={"sha256"}))


class ExpiresAfter(BaseModel):
    """OpenAI's `expires_after` of an upload: the file expires `seconds` after it was created."""

    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY_S, le=MAX_EXPIRY_S)


def file_id(content: bytes) -> str:
    """The id of a result file: its content's (the jobs routes find a job's result file by it)."""
    return ID_PREFIX + hashlib.sha256(content).hexdigest()[:ID_HEX]


def new_file_id() -> str:
    """An upload's id: random (uuid4), so every upload is a file of its own."""
    return ID_PREFIX + uuid.uuid4().hex[:ID_HEX]


def is_file_id(text: str) -> bool:
    hex_part = text.removeprefix(ID_PREFIX)
    return text.startswith(ID_PREFIX) and len(hex_part) == ID_HEX and all(c in "0123456789abcdef" for c in hex_part)


def path_parts(text: str) -> str | None:
    """The first path part in an id or a filename (`..`, `/`, `\\`, NUL), None when it has none: such a name is
    refused before any path is built from it."""
    return next((part for part in PATH_PARTS if part in text), None)


def upload_filename(filename: str) -> str:
    """The filename an upload keeps; ValueError for one with path parts or none at all."""
    if not filename.strip():
        raise ValueError("the file has no filename: send the file's name with its bytes")
    if (part := path_parts(filename)) is not None:
        raise ValueError(f"filename {filename[:100]!r} has path parts ({part!r}): send the file's own name")
    return filename


class FileStore:
    """data/files/ of a project: add, read, list and delete file objects; every change `dvc add`-ed."""

    def __init__(self, root: Path, track: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.root = root.resolve()
        self.dir = self.root / FILES_DIR
        self.track = track
        self.clock = clock  # expiry's now: tests pass their own

    def content_path(self, id_: str) -> Path:
        """The bytes of any file, blob or stored before blobs, named so readers know the format: .jsonl
        (fine-tune) or .csv (fine-tune-results). An unknown id's path does not exist."""
        if (part := path_parts(id_)) is not None:
            raise ValueError(f"file id {id_[:100]!r} has path parts ({part!r})")
        record = self._record(id_)
        return self._bytes_path(record) if record is not None else self.dir / f"{id_}{SUFFIXES['fine-tune']}"

    def _bytes_path(self, record: StoredFile) -> Path:
        if record.sha256 is None:  # stored before blobs
            return self.dir / f"{record.id}{SUFFIXES[record.purpose]}"
        return self._blob(record.sha256, record.purpose)

    def _blob(self, sha256: str, purpose: Purpose) -> Path:
        return self.dir / BLOBS / f"{sha256}{SUFFIXES[purpose]}"

    def _meta_path(self, id_: str) -> Path:
        return self.dir / f"{id_}.json"

    def _locked(self) -> FileLock:
        """One writer at a time (the API server's requests and the workers' result files), on this machine."""
        lock = self.root / FILES_LOCK_PATH
        lock.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(lock, preserve_lock_file=True)

    def add(
        self, content: bytes, filename: str, purpose: Purpose, expires_after: ExpiresAfter | None = None
    ) -> FileObject:
        """A new file object for these bytes (an upload), or a result file's own (the same bytes, the same id)."""
        if purpose == "fine-tune-results":
            with self._locked():
                if (known := self.get(file_id(content))) is not None:
                    return known
        return self.add_stream(io.BytesIO(content), filename, purpose, expires_after)

    def add_stream(
        self, source: BinaryIO, filename: str, purpose: Purpose, expires_after: ExpiresAfter | None = None
    ) -> FileObject:
        """`add` for bytes read from `source` a chunk at a time (an upload of any size in flat memory): staged in a
        temporary file, checked, then stored whole under the lock, or not at all (the staged file removed)."""
        filename = upload_filename(filename)
        staged, sha256, size = self._stage(source, purpose)
        try:
            found = check_training_file(staged, self.root / PARAMS_PATH) if purpose == "fine-tune" else None
            with self._locked():
                self._purge_expired()
                id_ = ID_PREFIX + sha256[:ID_HEX] if purpose == "fine-tune-results" else self._unused_id()
                if (known := self.get(id_)) is not None:
                    return known
                now = int(self.clock())
                record = StoredFile(
                    id=id_,
                    bytes=size,
                    created_at=now,
                    filename=filename,
                    purpose=purpose,
                    status=found.status if found else "processed",
                    status_details=found.details if found else None,
                    expires_at=now + expires_after.seconds if expires_after else None,
                    sha256=sha256,
                )
                self._commit(staged, record)
                self._dvc_track()
        finally:
            staged.unlink(missing_ok=True)
        return record.public()

    def _stage(self, source: BinaryIO, purpose: Purpose) -> tuple[Path, str, int]:
        """Copy `source` into a hidden temporary file beside the blobs (the same file system: os.replace is
        atomic), a chunk at a time: its path, sha256 and size. Removed again if the copy fails (a full disk)."""
        blobs = self.dir / BLOBS
        blobs.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=blobs, prefix=STAGING_PREFIX, suffix=SUFFIXES[purpose])
        staged, digest, size = Path(name), hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := source.read(CHUNK_BYTES):
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())  # on disk before a file object names it
            os.chmod(staged, 0o644)  # mkstemp makes 0600: the bytes are read by workers as any new file is
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return staged, digest.hexdigest(), size

    def _commit(self, staged: Path, record: StoredFile) -> None:
        """The staged bytes become the blob (the same bytes stored before: the same name, replaced whole), then the
        record names them; a record that cannot be written takes a blob no other record names along."""
        assert record.sha256 is not None
        blob = self._blob(record.sha256, record.purpose)
        shared = blob.is_file()
        os.replace(staged, blob)
        try:
            write_json(self._meta_path(record.id), record)
        except BaseException:
            if not shared:
                blob.unlink(missing_ok=True)
            raise

    def staged(self) -> list[Path]:
        """The temporary files of uploads being stored now (a killed server leaves its own: hidden, never served)."""
        blobs = self.dir / BLOBS
        return sorted(blobs.glob(f"{STAGING_PREFIX}*")) if blobs.is_dir() else []

    def _unused_id(self) -> str:
        while self._meta_path(id_ := new_file_id()).is_file():  # ~92 random bits: a repeat is for the careful
            pass
        return id_

    def _record(self, id_: str) -> StoredFile | None:
        """The stored record of a live file: None for an unknown id, a malformed one, or an expired file."""
        if not is_file_id(id_):  # never a path from a malformed id
            return None
        meta = self._meta_path(id_)
        if not meta.is_file():
            return None
        record = read_json(meta, StoredFile)
        return None if self._expired(record) else record

    def _expired(self, record: StoredFile) -> bool:
        return record.expires_at is not None and record.expires_at <= self.clock()

    def get(self, id_: str) -> FileObject | None:
        record = self._record(id_)
        return record.public() if record is not None else None

    def _all(self) -> list[StoredFile]:
        """Every stored record, expired ones too."""
        return [read_json(p, StoredFile) for p in self.dir.glob(f"{ID_PREFIX}*.json")] if self.dir.is_dir() else []

    def list(self, purpose: str | None = None) -> list[FileObject]:
        """Newest first (OpenAI's default order); expired files are removed first."""
        if any(self._expired(r) for r in self._all()):
            with self._locked():
                if self._purge_expired():
                    self._dvc_track()
        found = [r.public() for r in self._all() if not self._expired(r)]
        found = [f for f in found if purpose is None or f.purpose == purpose]
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    def delete(self, id_: str) -> bool:
        with self._locked():
            record = self._record(id_)
            if record is None:
                return False
            self._remove(record)
            self._purge_expired()
            self._dvc_track()
        return True

    def _remove(self, record: StoredFile) -> None:
        """The file object, and its bytes unless another file object names them (under the lock)."""
        remove(self._meta_path(record.id))
        path = self._bytes_path(record)
        if not any(self._bytes_path(r) == path for r in self._all()):
            remove(path)

    def _purge_expired(self) -> bool:
        """Remove the expired files (under the lock); whether there were any."""
        expired = [r for r in self._all() if self._expired(r)]
        for record in expired:
            log.info("file %s (%s) expired at %d: removed", record.id, record.filename, record.expires_at)
            self._remove(record)
        return bool(expired)

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
