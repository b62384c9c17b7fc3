"""Resumable training: what a checkpoint was trained from (a fingerprint of the data and params), whether to
resume from it (a pure decision), and only complete checkpoints kept (a killed save leaves half a folder)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from tuneops.io.files import remove, write_json
from tuneops.training.trainer import log

if TYPE_CHECKING:
    from transformers import TrainingArguments

FINGERPRINT = "fingerprint.json"


def fingerprint(processed_dir: Path, settings: dict[str, object]) -> str:
    """What a checkpoint was trained from: the tokenized data and every param that shapes training."""
    digest = hashlib.sha256()
    for state in sorted(processed_dir.rglob("*")):
        if state.is_file():
            digest.update(state.name.encode() + state.read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class CheckpointMarker(BaseModel):
    """models/checkpoints/fingerprint.json: what the checkpoints beside it were trained from."""

    fingerprint: str
    completed: bool = False


def resume_decision(saved: CheckpointMarker | None, fingerprint_: str, checkpoints: list[str]) -> tuple[bool, str]:
    """Resume from the last checkpoint, or start fresh? Only an unfinished run on the same data and params
    resumes; anything else would mix two trainings. Returns the decision and why, for the log."""
    same = saved is not None and saved.fingerprint == fingerprint_
    if not checkpoints:
        return False, "no checkpoint to resume from"
    if same and not saved.completed:
        return True, f"resuming from {checkpoints[-1]} (same data and params as the interrupted run)"
    why = "the last run finished" if same else "data or params changed"
    return False, f"starting fresh: {why} since {checkpoints[-1]} was saved"


def _whole_safetensors(path: Path) -> bool:
    """The header parses and the file is as long as the header says (a cut-short write is not)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        size = int.from_bytes(head, "little")
        try:
            header = json.loads(f.read(size))
        except ValueError:
            return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return path.stat().st_size == 8 + size + max(ends, default=0)


def checkpoint_problem(path: Path) -> str | None:
    """Why training cannot resume from this checkpoint (a file missing or cut short), or None when it is whole.

    The Trainer writes a checkpoint file by file; a kill or a full disk in between leaves a folder without its
    trainer_state.json or scheduler.pt, or with a truncated optimizer.pt, that every later resume would fail on.
    """
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (path / name).is_file():
            return f"no {name}"
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):  # torch.save writes zip archives
        if (path / name).is_file() and not zipfile.is_zipfile(path / name):
            return f"{name} is cut short"
    weights = [w for w in ("model.safetensors", "adapter_model.safetensors") if (path / w).is_file()]
    if not weights:
        return "no model weights"
    if not _whole_safetensors(path / weights[0]):
        return f"{weights[0]} is cut short"
    try:
        step = json.loads((path / "trainer_state.json").read_text())["global_step"]
    except (ValueError, KeyError):
        return "trainer_state.json is unreadable"
    return None if f"checkpoint-{step}" == path.name else f"trainer_state.json is for step {step}"


def set_aside(checkpoint_dir: Path, checkpoints: list[Path]) -> list[Path]:
    """Move incomplete checkpoints to checkpoint_dir/incomplete (kept for a look, out of the Trainer's way);
    return the complete ones."""
    complete = []
    for path in checkpoints:
        if (problem := checkpoint_problem(path)) is None:
            complete.append(path)
            continue
        target = checkpoint_dir / "incomplete" / path.name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
        log.warning("set aside %s (incomplete: %s) as %s", path, problem, target)
    return complete


def prepare_checkpoints(checkpoint_dir: Path, fingerprint_: str) -> Path | None:
    """The checkpoint to resume from, or None: then checkpoint_dir is emptied for a fresh start."""
    marker = checkpoint_dir / FINGERPRINT
    saved = CheckpointMarker.model_validate_json(marker.read_text()) if marker.is_file() else None
    found = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = set_aside(checkpoint_dir, found)
    resume, why = resume_decision(saved, fingerprint_, [p.as_posix() for p in complete])
    log.info("%s", why)
    if resume:
        return complete[-1]
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for child in checkpoint_dir.iterdir():  # its contents, not the folder: it may be a mount point
        remove(child)
    write_json(marker, CheckpointMarker(fingerprint=fingerprint_))
    return None


def prepare_checkpoints_once(args: TrainingArguments, checkpoint_dir: Path, fingerprint_: str) -> Path | None:
    """prepare_checkpoints under torchrun too: rank 0 decides and prepares while the other ranks wait (the
    Trainer's barrier); then they resume from the same checkpoint, the last one it kept (none after a fresh
    start, which empties the folder). A rank that decided alone could empty the folder another resumes from."""
    with args.main_process_first(local=False, desc="preparing the checkpoints"):
        if args.process_index == 0:
            return prepare_checkpoints(checkpoint_dir, fingerprint_)
        kept = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        return kept[-1] if kept else None
