"""Uploaded files: an id is the content's hash; a bad file is kept with its reasons."""

from __future__ import annotations

from tuneops.jobs.file_store import FileStore, file_id, is_file_id


def test_a_file_id_is_its_content_hash():
    assert file_id(b"same") == file_id(b"same") != file_id(b"other")
    assert is_file_id(file_id(b"x")) and not is_file_id("file-../../etc") and not is_file_id("x")


def test_the_store_keeps_one_file_per_content_and_marks_a_bad_file_with_its_reasons(tmp_path):
    store = FileStore(tmp_path, track=False)
    good = "".join(f'{{"prompt": "day {i} was fine ->", "completion": " text {i}\\n"}}\n' for i in range(3)).encode()
    first = store.add(good, "train.jsonl", "fine-tune")
    assert store.add(good, "again.jsonl", "fine-tune") == first and first.status == "processed"
    bad = store.add(b'{"prompt": "a", "completion": "b"}\nnot json\n', "bad.jsonl", "fine-tune")
    assert bad.status == "error" and "line 2" in bad.status_details
    assert [f.id for f in store.list()] == sorted([first.id, bad.id], key=lambda i: i == first.id)
    assert store.content_path(first.id).read_bytes() == good
    assert store.delete(bad.id) and store.get(bad.id) is None and not store.delete(bad.id)
