"""`tuneops serve` in-process, /predict and /health: the version that answers and how it follows the alias, the
body cap, errors that never repeat the input, texts that are not valid Unicode, and the API key off loopback. A
tiny GPT-2 from the offline sample stands in for registered versions; the registry's alias lookup and loader are
plain functions here (tests/api/test_openai_api.py serves from a real MLflow registry)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from tests.conftest import LABELS
from tuneops.config.errors import UserError
from tuneops.config.params import RegisterParams
from tuneops.registry.catalog import Card, Catalog
from tuneops.serve.app import ModelInfo, Served, create_app, warm_up
from tuneops.serve.auth import check_exposure, is_loopback
from tuneops.serve.limits import Limits

NAME = "sentiment"
KEY = "k3y-only-the-client-knows"


@pytest.fixture(scope="module")
def classifier(sample: Any, tokenizer: Any) -> Any:
    from tuneops.models.loading import for_inference, load_classifier

    return for_inference(load_classifier(str(sample.model_dir), LABELS, tokenizer), tokenizer)


@pytest.fixture
def version(classifier: Any, tokenizer: Any) -> Callable[..., Served]:
    """A Served for a version number, as the registry loader makes one."""

    def make(number: str, alias: str | None = "champion") -> Served:
        info = ModelInfo(name=NAME, version=number, alias=alias, model_uri=f"models:/{NAME}/{number}")
        return Served(classifier, tokenizer, info)

    return make


class Versions:
    """The registry as serving asks it: where the alias points (`lookup`) and a version by number (`load`)."""

    def __init__(self, load: Callable[[str], Served], lookup: Callable[[], str | None] = lambda: None) -> None:
        self._load, self._lookup = load, lookup

    def cards(self) -> list[Card]:
        return []

    def alias_version(self, name: str, alias: str) -> str | None:
        return self._lookup()

    def load(self, name: str, version: str) -> Served | None:
        return self._load(version)


def app_for(
    load: Callable[..., Served],
    lookup: Callable[[], str | None] | None = None,
    limits: Limits | None = None,
    refresh_seconds: float = 30.0,
    **kwargs: Any,
) -> Any:
    """The app serving NAME: pinned to version 3 without `lookup`, else following its champion alias."""
    api_key = kwargs.pop("api_key", None)
    catalog = Catalog(Versions(load, lookup or (lambda: None)), 2, refresh_seconds=refresh_seconds, **kwargs)
    default = f"{NAME}@champion" if lookup is not None else f"{NAME}:3"
    return create_app(catalog, default, limits, api_key=api_key)


def answered_by(response: Any) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == response.json()["model"]["version"]
    return response.json()["model"]["version"]


def test_predict_and_health_name_the_version_that_answered(version, sample):
    client = TestClient(app_for(lambda n: version(n, alias=None)))
    ok = client.post("/predict", json=["so happy", "so sad"])
    assert answered_by(ok) == "3"
    assert ok.json()["model"] == {"name": NAME, "version": "3", "alias": None, "model_uri": f"models:/{NAME}/3"}
    assert [set(p["probabilities"]) for p in ok.json()["predictions"]] == [set(LABELS)] * 2
    health = client.get("/health")
    assert answered_by(health) == "3" and health.json()["labels"] == LABELS
    assert str(sample.model_dir) not in health.text and "/tmp" not in health.text


def test_the_server_follows_the_alias_when_it_moves(version):
    alias_points_at = iter(["1", "1", "2", "2"])  # the first request finds the alias, then checks it
    loaded: list[str] = []

    def load(number: str) -> Served:
        loaded.append(number)
        return version(number)

    app = app_for(load, lambda: next(alias_points_at), refresh_seconds=0)
    client = TestClient(app)
    assert answered_by(client.post("/predict", json=["so happy"])) == "1"
    assert answered_by(client.post("/predict", json=["so happy"])) == "2"  # the champion moved
    assert answered_by(client.get("/health")) == "2"
    assert loaded == ["1", "2"]  # each loaded once: on first use, and when the alias moved


def test_the_alias_is_checked_at_most_every_refresh_seconds(version):
    now = [0.0]
    lookups: list[float] = []

    def lookup() -> str:
        lookups.append(now[0])
        return "2"

    app = app_for(version, lookup, refresh_seconds=30, clock=lambda: now[0])
    client = TestClient(app)
    for t in (10.0, 29.0, 31.0, 40.0, 62.0, 71.0):
        now[0] = t
        client.post("/predict", json=["ok"])
    assert lookups == [10.0, 40.0, 71.0]  # found on first use, then checked every 30 s at most
    assert answered_by(client.post("/predict", json=["ok"])) == "2"


def test_a_failed_load_or_lookup_keeps_the_old_version_and_logs_why(version, caplog):
    caplog.set_level(logging.INFO, logger="tuneops.serve")
    answers = iter(["1", RuntimeError("registry unreachable"), "2"])

    def lookup() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def load(number: str) -> Served:
        if number != "1":
            raise OSError(f"artifacts of version {number} are missing")
        return version(number)

    client = TestClient(app_for(load, lookup, refresh_seconds=0))
    assert answered_by(client.post("/predict", json=["a"])) == "1"
    assert "keeping version 1: looking up alias champion failed: RuntimeError: registry unreachable" in caplog.text
    assert answered_by(client.post("/predict", json=["a"])) == "1"
    assert "keeping version 1: loading version 2 failed: OSError: artifacts of version 2 are missing" in caplog.text


def test_a_body_over_the_cap_is_refused_short_and_without_the_input(version):
    client = TestClient(app_for(version, limits=Limits(max_body_bytes=1000)))
    big = json.dumps(["marker " * 200])
    refused = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert refused.status_code == 413 and refused.json() == {
        "detail": "request body over 1000 bytes; send smaller batches"
    }
    assert client.post("/predict", json=["fits"]).status_code == 200


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap(version):
    """No Content-Length: the body is counted as it arrives, and the rest is never read."""
    chunk = b'"' + b"x" * 1000 + b'",'
    chunks = [b"[", *[chunk] * 1000, b'"end"]']  # about 1 MB against a 10 kB cap
    pulled, sent = asyncio.run(post_chunks(app_for(version, limits=Limits(max_body_bytes=10_000)), chunks))
    assert sent[0]["status"] == 413 and b"request body over 10000 bytes" in sent[1]["body"]
    assert pulled <= 12  # about 10 kB of the 1 MB


async def post_chunks(app: Any, chunks: list[bytes]) -> tuple[int, list[dict[str, Any]]]:
    """POST /predict straight into the ASGI app, one receive per chunk, as a server passes a chunked body on."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    pending: Iterator[bytes] = iter(chunks)
    pulled, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = next(pending, None)
        if body is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return pulled, sent


def test_validation_errors_say_where_and_what_but_never_repeat_the_input(version):
    client = TestClient(app_for(version))
    wrong = client.post("/predict", json={"texts": "marker-of-the-input " * 50})
    assert wrong.status_code == 422 and "marker-of-the-input" not in wrong.text
    assert all(set(e) == {"loc", "msg"} for e in wrong.json()["detail"])
    numbers = client.post("/predict", json=list(range(5000)))  # 10,000 errors (both shapes of the body)
    assert numbers.status_code == 422 and len(numbers.content) < 2000
    assert len(numbers.json()["detail"]) == 10 and numbers.json()["more_errors"] > 1000


def test_a_lone_surrogate_is_a_400_naming_the_text_not_a_500(version):
    client = TestClient(app_for(version))
    body = b'{"texts": ["fine", "\\ud800 x"]}'  # valid JSON, but no UTF-8 encodes it
    bad = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert bad.json() == {"detail": "text 1 is not valid Unicode: a lone surrogate at character 0"}


def test_the_limits_on_texts_still_say_which(version):
    client = TestClient(app_for(version, limits=Limits(max_texts=2, max_chars=10)))
    assert (
        client.post("/predict", json=["a", "b", "c"]).json()["detail"] == "too many texts: 3 > 2; send smaller batches"
    )
    assert client.post("/predict", json=["a", "x" * 11]).json()["detail"].startswith("text 1 is too long: 11")
    assert client.post("/predict", json=[]).status_code == 422


def test_with_a_key_every_route_but_health_needs_the_bearer_token(version, caplog):
    caplog.set_level(logging.DEBUG)
    client = TestClient(app_for(version, api_key=KEY))
    assert client.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
        refused = client.post("/predict", json=["hi"], headers=headers)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert KEY not in refused.text
    assert client.get("/docs").status_code == 401 and client.get("/openapi.json").status_code == 401
    assert answered_by(client.post("/predict", json=["hi"], headers={"Authorization": f"Bearer {KEY}"})) == "3"
    assert KEY not in caplog.text


def test_without_a_key_loopback_stays_open(version):
    assert TestClient(app_for(version)).post("/predict", json=["hi"]).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses_need_no_key(host):
    assert is_loopback(host)
    check_exposure(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", "localhost.example.org"])
def test_any_other_address_needs_a_key(host):
    assert not is_loopback(host)
    with pytest.raises(UserError, match=f"--host {host} is reachable from other machines: set TUNEOPS_API_KEY"):
        check_exposure(host, None)
    check_exposure(host, KEY)


def test_serve_on_all_addresses_without_a_key_refuses_to_start_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TUNEOPS_API_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "serve", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0 is reachable from other machines: set TUNEOPS_API_KEY to an API key "
        "(clients then send `Authorization: Bearer <key>`), or bind 127.0.0.1"
    ]


def test_a_pinned_version_that_does_not_exist_stops_serve_in_one_line(store):
    from tuneops.registry.mlflow_registry import MlflowRegistry

    catalog = Catalog(MlflowRegistry(store.register()), 1)
    with pytest.raises(UserError, match="tuneops-tweet-sentiment:9: no such registered version"):
        warm_up(catalog, "tuneops-tweet-sentiment:9", pinned=True)


def test_with_nothing_registered_serve_starts_and_says_what_to_run(tmp_path, caplog):
    from tuneops.registry.mlflow_registry import MlflowRegistry

    register = RegisterParams(
        model_name=NAME, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_name="e", alias="champion"
    )
    catalog = Catalog(MlflowRegistry(register), 1)
    assert warm_up(catalog, f"{NAME}@champion", pinned=False) is None
    assert "run `dvc repro`" in caplog.text
    client = TestClient(create_app(catalog, f"{NAME}@champion"))
    health = client.get("/health")
    assert health.status_code == 503 and "run `dvc repro`" in health.json()["detail"]
    missing = client.post("/v1/completions", json={"model": f"{NAME}@champion", "prompt": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert "`dvc repro` (or `tuneops demo`" in missing.json()["error"]["message"]
    assert client.get("/v1/models").json() == {"object": "list", "data": []}


def test_training_file_uploads_have_their_own_cap():
    """POST /v1/files carries whole training files: past the request cap, held to the upload cap."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from tuneops.serve.limits import BodyLimit

    async def size(request: Any) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    paths = ("/v1/files", "/v1/completions")
    app = Starlette(routes=[Route(path, size, methods=["POST"]) for path in paths])
    app.add_middleware(BodyLimit, max_bytes=1000, max_upload_bytes=5000)
    client = TestClient(app)
    assert client.post("/v1/completions", content=b"x" * 2000).status_code == 413
    assert client.post("/v1/files", content=b"x" * 2000).json() == {"bytes": 2000}
    refused = client.post("/v1/files", content=b"x" * 6000)
    assert refused.status_code == 413 and refused.json()["error"]["message"].startswith("request body over 5000")
