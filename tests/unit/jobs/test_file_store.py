"""Uploaded files: each upload its own id and filename over bytes stored once, result files named by their content,
files stored before blobs still read, expiry, and a bad file kept with its reasons."""

from __future__ import annotations

import hashlib
import io

import pytest

from tests.conftest import Clock
from tuneops.io.files import write_json
from tuneops.jobs.file_store import (
    ExpiresAfter,
    FileObject,
    FileStore,
    file_id,
    is_file_id,
    path_parts,
    upload_filename,
)

GOOD = "".join(f'{{"prompt": "day {i} was fine ->", "completion": " text {i}\\n"}}\n' for i in range(12)).encode()


def blobs(store: FileStore) -> list[str]:
    return sorted(p.name for p in (store.dir / "blobs").iterdir())


def test_ids_look_like_openais_and_a_result_files_is_its_content_hash():
    assert file_id(b"same") == file_id(b"same") != file_id(b"other")
    assert is_file_id(file_id(b"x")) and not is_file_id("file-../../etc") and not is_file_id("x")


def test_each_upload_is_a_file_of_its_own_over_bytes_stored_once(tmp_path):
    store = FileStore(tmp_path, track=False)
    first, second = store.add(GOOD, "train.jsonl", "fine-tune"), store.add(GOOD, "again.jsonl", "fine-tune")
    assert first.id != second.id and is_file_id(first.id) and is_file_id(second.id)
    assert (first.filename, second.filename) == ("train.jsonl", "again.jsonl")
    assert len(blobs(store)) == 1 and store.content_path(first.id) == store.content_path(second.id)
    assert store.delete(first.id) and store.get(first.id) is None and not store.delete(first.id)
    assert store.get(second.id) == second and store.content_path(second.id).read_bytes() == GOOD
    assert store.delete(second.id) and blobs(store) == []  # the last file of the bytes takes them along


def test_a_result_file_keeps_the_id_of_its_content(tmp_path):
    store = FileStore(tmp_path, track=False)
    made = store.add(b"step,train_loss\n1,0.5\n", "job-step_metrics.csv", "fine-tune-results")
    assert made.id == file_id(b"step,train_loss\n1,0.5\n") and made.status == "processed"
    assert store.add(b"step,train_loss\n1,0.5\n", "again.csv", "fine-tune-results") == made
    assert store.content_path(made.id).suffix == ".csv"


def test_files_stored_before_blobs_are_still_read_listed_and_deleted(tmp_path):
    store = FileStore(tmp_path, track=False)
    old_id = file_id(GOOD)
    store.dir.mkdir(parents=True)
    (store.dir / f"{old_id}.jsonl").write_bytes(GOOD)
    old = FileObject(
        id=old_id, bytes=len(GOOD), created_at=1, filename="old.jsonl", purpose="fine-tune", status="uploaded"
    )

    write_json(store.dir / f"{old_id}.json", old)  # exactly what the store wrote before blobs
    assert store.get(old_id) == old and store.content_path(old_id).read_bytes() == GOOD
    new = store.add(GOOD, "new.jsonl", "fine-tune")
    assert [f.id for f in store.list()] == [new.id, old_id]
    assert store.delete(old_id) and not (store.dir / f"{old_id}.jsonl").exists()
    assert store.content_path(new.id).read_bytes() == GOOD


def test_an_expired_file_is_gone_and_its_storage_removed_on_the_next_list(tmp_path):
    clock = Clock()
    store = FileStore(tmp_path, track=False, clock=clock)
    brief = store.add(GOOD, "brief.jsonl", "fine-tune", ExpiresAfter(anchor="created_at", seconds=3600))
    kept = store.add(GOOD + b"\n", "kept.jsonl", "fine-tune")
    assert brief.expires_at == brief.created_at + 3600 and kept.expires_at is None
    clock.now += 3599
    assert store.get(brief.id) == brief
    clock.now += 1
    assert store.get(brief.id) is None and not store.content_path(brief.id).exists() and not store.delete(brief.id)
    assert len(blobs(store)) == 2  # not removed by a read
    assert [f.id for f in store.list()] == [kept.id]
    assert len(blobs(store)) == 1 and not (store.dir / f"{brief.id}.json").exists()


def test_a_bad_file_is_stored_with_line_numbered_reasons(tmp_path):
    store = FileStore(tmp_path, track=False)
    bad = store.add(b'{"prompt": "a", "completion": "b"}\nnot json\n', "bad.jsonl", "fine-tune")
    assert bad.status == "error" and "line 2: not JSON" in bad.status_details
    assert "1 example(s): OpenAI's fine-tuning takes at least 10" in bad.status_details
    few = store.add(GOOD, "few.jsonl", "fine-tune")
    assert few.status == "processed" and few.status_details.startswith("warning: 12 examples")


class Broken:
    """An upload whose client goes away after 3 MiB (a read that fails, as Starlette's does on a disconnect)."""

    def __init__(self) -> None:
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        if self.sent >= 3 << 20:
            raise OSError("the client went away")
        self.sent += 1 << 20
        return b"x" * (1 << 20)


def test_an_upload_that_fails_midway_leaves_no_file_no_record_and_no_staged_bytes(tmp_path):
    store = FileStore(tmp_path, track=False)
    with pytest.raises(OSError, match="went away"):
        store.add_stream(Broken(), "train.jsonl", "fine-tune")
    assert store.list() == [] and store.staged() == [] and list((store.dir / "blobs").iterdir()) == []


def test_a_streamed_upload_is_stored_whole_and_hashed_as_it_came(tmp_path):
    store = FileStore(tmp_path, track=False)
    made = store.add_stream(io.BytesIO(GOOD), "train.jsonl", "fine-tune")
    assert made.bytes == len(GOOD) and store.content_path(made.id).read_bytes() == GOOD
    assert store.content_path(made.id).name == f"{hashlib.sha256(GOOD).hexdigest()}.jsonl" and store.staged() == []


@pytest.mark.parametrize("name", ["../x.jsonl", "a/b.jsonl", "a\\b.jsonl", "x\0.jsonl", " "])
def test_a_filename_with_path_parts_or_none_is_refused_before_anything_is_written(tmp_path, name):
    store = FileStore(tmp_path, track=False)
    with pytest.raises(ValueError):
        store.add(GOOD, name, "fine-tune")
    assert not store.dir.exists()
    assert upload_filename("train.v2.jsonl") == "train.v2.jsonl"


def test_an_id_with_path_parts_names_no_path(tmp_path):
    store = FileStore(tmp_path, track=False)
    assert path_parts("file-..") == ".." and path_parts("file-abc") is None
    assert store.get("../params") is None
    with pytest.raises(ValueError, match="path parts"):
        store.content_path("../../etc/passwd")
