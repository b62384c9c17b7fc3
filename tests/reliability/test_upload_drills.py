"""Upload drills: a large upload in flat memory, a full disk, a client gone mid-upload, uploads at once, and
hostile ids and filenames, each against the app `tuneops serve` runs on 127.0.0.1 (uvicorn) over a project's
data/files, each asserting that nothing is half-stored (bench/drills.py tabulates them). The store does not
`dvc add` here (no DVC repository in the drills' project; the serve tests cover tracking)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api.conftest import store  # noqa: F401  (a fixture, used by name: the registry the app is given)
from tests.conftest import ROOT, free_port
from tests.reliability.memory import rss_growth
from tuneops.jobs.file_store import FileStore
from tuneops.registry.catalog import Catalog
from tuneops.registry.mlflow_registry import MlflowRegistry
from tuneops.serve.app import create_app
from tuneops.serve.finetuning.shared import FineTuning

pytestmark = pytest.mark.slow

MB = 1 << 20


def lines(count: int, width: int = 900, tag: str = "") -> bytes:
    """`count` prompt/completion lines of about `width` bytes each."""
    return b"".join(
        json.dumps({"prompt": f"day {tag}{i} ->", "completion": " " + "x" * width + f" {i}\n"}).encode() + b"\n"
        for i in range(count)
    )


class Generated:
    """A file-like upload of `size` bytes of valid lines, made as it is read: the client holds one block."""

    def __init__(self, size: int) -> None:
        self.block, self.left = lines(1024), size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        cut = self.block.rfind(b"\n", 0, self.left) + 1  # whole lines only: 0 once not one more fits
        self.left = self.left - cut if cut else 0
        return self.block[:cut]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture
def served(
    project: Path,
    store: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, FileStore]]:
    """The app on a free local port, its files in `project` (no Prefect: no job uses any file)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    app = create_app(Catalog(MlflowRegistry(store.register()), 1), "m@champion")
    app.state.fine_tuning = FineTuning(project, "tuneops")
    files = app.state.fine_tuning.store = FileStore(project, track=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", files
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def upload(url: str, content: Any, name: str = "train.jsonl") -> httpx.Response:
    files = {"file": (name, content, "application/jsonl")}
    return httpx.post(f"{url}/v1/files", files=files, data={"purpose": "fine-tune"}, timeout=300)


def stored(files: FileStore) -> list[str]:
    """Every path under data/files: records, blobs and staged uploads."""
    return (
        sorted(str(p.relative_to(files.dir)) for p in files.dir.rglob("*") if p.is_file()) if files.dir.exists() else []
    )


def test_drill_a_128_mb_upload_streams_to_disk_with_the_servers_memory_flat(served, record_property):
    """A 128 MB upload streamed to disk: the server's RSS grows by a few MB, not by the file.

    Valid lines generated as they are sent (twice the size past which whole-file checks wait for the job)."""
    url, files = served
    start = time.monotonic()
    with rss_growth() as rose:
        answer = upload(url, Generated(128 * MB))
    grown = rose[0] / MB
    record_property("rss_growth_mb", round(grown, 1))
    record_property("upload_s", round(time.monotonic() - start, 1))
    assert answer.status_code == 200, answer.text
    made = answer.json()
    assert made["bytes"] >= 128 * MB - 2048 and made["status"] == "processed"
    assert "checked when a job prepares the data" in made["status_details"]
    assert files.content_path(made["id"]).stat().st_size == made["bytes"] and files.staged() == []
    assert grown < 48, f"RSS grew {grown:.0f} MB for a 128 MB upload"


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform == "linux"


@pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root on Linux")
def test_drill_a_full_disk_mid_upload_stores_nothing_and_a_later_upload_succeeds(served, record_property):
    """A full disk mid-upload (3 MB into 2 MB): 507, no record, no blob, no staged bytes; later it succeeds."""
    url, files = served
    files.dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(files.dir)], check=False)
    if mounted.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here")
    try:
        content = lines(3400)
        full = upload(url, content)
        assert full.status_code == 507, full.text
        assert full.json()["error"]["code"] == "insufficient_storage" and "nothing was stored" in full.text
        assert stored(files) == [] and httpx.get(f"{url}/v1/files").json()["data"] == []
        subprocess.run(["mount", "-o", "remount,size=64m", str(files.dir)], check=True)  # space freed
        start = time.monotonic()
        again = upload(url, content)
        record_property("time_to_recover_s", round(time.monotonic() - start, 3))
        assert again.status_code == 200 and httpx.get(f"{url}/v1/files/{again.json()['id']}/content").content == content
    finally:
        subprocess.run(["umount", "-l", str(files.dir)], check=False)


def test_drill_a_client_gone_mid_upload_leaves_no_file_and_no_entry(served):
    """A client gone mid-upload (2 of 8 MB sent): nothing under data/files; the next upload is the only file."""
    url, files = served
    boundary = "drill"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--{boundary}\r\n'
        'Content-Disposition: form-data; name="file"; filename="train.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {8 * MB}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as client:
        client.sendall(request + head + lines(2300))
        time.sleep(0.5)  # the server has the first 2 MB
    time.sleep(1.0)
    assert stored(files) == [] and httpx.get(f"{url}/v1/files").json()["data"] == []
    good = upload(url, lines(12))
    assert good.status_code == 200 and [f["id"] for f in httpx.get(f"{url}/v1/files").json()["data"]] == [
        good.json()["id"]
    ]


def test_drill_uploads_at_once_never_clobber_each_other(served):
    """Eight uploads at once (two of the same bytes): eight files, each reading back its own bytes, seven blobs."""
    url, files = served
    contents = [lines(40, width=200, tag=f"{i}-") for i in range(7)]
    contents.append(contents[0])
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: upload(url, c[1], f"part-{c[0]}.jsonl"), enumerate(contents)))
    assert [a.status_code for a in answers] == [200] * 8
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == 8
    for id_, content in zip(ids, contents, strict=True):
        assert httpx.get(f"{url}/v1/files/{id_}/content").content == content
    assert len(list((files.dir / "blobs").iterdir())) == 7 and files.staged() == []


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/v1/files/..%5C..%5Cparams.yaml/content", 400),
        ("DELETE", "/v1/files/file-abc%00", 400),
        ("DELETE", "/v1/files/file-..", 400),
        ("GET", "/v1/files/%2E%2E/content", 400),
        ("GET", "/v1/files/file-..%2F..%2Fparams.yaml", 404),  # the decoded slashes match no route
    ],
)
def test_drill_an_id_with_path_parts_is_refused_without_touching_the_disk(served, project, method, path, status):
    """Ids that would name a path elsewhere: refused in OpenAI's shape, data/files never even made."""
    url, files = served
    answer = httpx.request(method, f"{url}{path}", timeout=30)
    assert answer.status_code == status and set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert status == 404 or answer.json()["error"]["param"] == "file_id"
    assert not files.dir.exists() and (project / "params.yaml").is_file()


@pytest.mark.parametrize("name", ["../../escape.jsonl", "sub/train.jsonl", "..\\escape.jsonl"])
def test_drill_a_filename_with_path_parts_is_refused_without_touching_the_disk(served, project, name):
    """A filename with path parts: refused (400, param file) before data/files is even made."""
    url, files = served
    answer = upload(url, lines(12), name)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "file", answer.text
    assert not files.dir.exists() and not (project.parent / "escape.jsonl").exists()
