"""Outputs checked against the hashes DVC recorded in dvc.lock, before anything trusts them.

`dvc status` compares timestamps it remembers, not contents: a corrupted cache object that `dvc checkout`
copied into the workspace reads "up to date", and a model evaluated from it scored NaN. So evaluate and
register hash what they are about to use, the way DVC does, and compare with dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import JsonValue

from tuneops.config.errors import UserError
from tuneops.io.files import file_hash


def file_md5(path: Path) -> str:
    return file_hash(path, "md5")  # DVC 3's hash of a file: plain md5 of its bytes


def dir_listing(folder: Path) -> list[dict[str, str]]:
    """DVC's listing of a folder: every file's md5 by relative path, sorted by path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [{"md5": file_md5(p), "relpath": p.relative_to(folder).as_posix()} for p in files]


def dvc_md5(path: Path) -> str:
    """The md5 dvc.lock records for `path`: the file's, or for a folder the md5 of its listing plus `.dir`."""
    if path.is_dir():
        return hashlib.md5(json.dumps(dir_listing(path), sort_keys=True).encode()).hexdigest() + ".dir"
    return file_md5(path)


def read_lock(lock_path: Path) -> dict[str, JsonValue]:
    """dvc.lock parsed, or {} before any `dvc repro` wrote it."""
    return (yaml.safe_load(lock_path.read_text()) or {}) if lock_path.is_file() else {}


def outs_by_stage(lock: dict[str, JsonValue]) -> dict[str, dict[str, str | None]]:
    """stage -> {output path: the md5 dvc.lock recorded for it}."""
    return {
        stage: {out["path"]: out.get("md5") for out in entry.get("outs", [])}
        for stage, entry in (lock.get("stages") or {}).items()
    }


def recorded(lock: dict[str, JsonValue], path: Path) -> tuple[str, str] | None:
    """The stage whose outs hold `path` in a parsed dvc.lock, and the md5 it recorded; or None."""
    for stage, outs in outs_by_stage(lock).items():
        if md5 := outs.get(path.as_posix()):
            return stage, md5
    return None


def verify_outputs(lock_path: Path, *paths: Path) -> None:
    """Raise UserError naming the first path whose content is not what dvc.lock recorded (nothing is checked
    before any `dvc repro`: a run outside DVC has nothing recorded to check against)."""
    lock = read_lock(lock_path)
    for path in paths:
        found = recorded(lock, path)
        if found is None or not path.exists():
            continue
        stage, expected = found
        if (actual := dvc_md5(path)) != expected:
            raise UserError(
                f"{path}: its content (md5 {actual}) is not what {lock_path} recorded ({expected}): a corrupted DVC "
                f"cache, or files changed by hand. Rebuild it with `dvc repro --force --single-item {stage}` (or, if "
                f"you built it yourself on purpose, `dvc commit {stage}`); nothing was used from it"
            )
