"""Serving drills: one client's bad parameter, a client gone mid-stream, 64 clients at the context limit and a client
that reads one byte a second, each against a real server on 127.0.0.1 (uvicorn, as `tuneops serve` runs it) over
a real MLflow registry holding the sample's tiny GPT-2 (256 positions; tests/api/conftest.py), each asserting that
the others are served and the server stays bounded (bench/drills.py tabulates them)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn

from tests.api.conftest import CLASSIFIER, GENERATOR, store  # noqa: F401  (store: a fixture, used by name)
from tests.conftest import free_port
from tests.reliability.memory import rss_growth
from tuneops.registry.catalog import Catalog
from tuneops.registry.mlflow_registry import MlflowRegistry
from tuneops.serve.app import Batching, create_app
from tuneops.serve.limits import Limits

pytestmark = pytest.mark.slow

CONTEXT = 256  # the sample GPT-2's n_positions
QUEUE_CAP = 8 * CONTEXT  # serve.max_queued_tokens here: 8 requests at the context limit
LONG = {"model": GENERATOR, "prompt": "the beach", "max_tokens": 240, "temperature": 1.0, "seed": 5, "stop": []}


@pytest.fixture(scope="module")
def server(store: Any) -> Iterator[tuple[str, Any]]:  # noqa: F811
    """The app `tuneops serve` runs, on a free local port: its URL and the app (its batcher's stats)."""
    catalog = Catalog(MlflowRegistry(store.register()), 4, refresh_seconds=30)
    limits = Limits(max_queued_tokens=QUEUE_CAP)
    app = create_app(catalog, f"{CLASSIFIER}@champion", limits, batching=Batching(window_ms=200, max_batch_size=32))
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 2}, timeout=60).raise_for_status()  # loaded
    try:
        yield url, app
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def settled(app: Any, what: str, done: Any, limit_s: float = 30.0) -> float:
    """Seconds until `done()` holds (the worker caught up), failing past `limit_s`."""
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < limit_s, f"{what}: {app.state.batcher.stats}"
        time.sleep(0.01)
    return time.monotonic() - start


def test_drill_a_seed_of_2_64_fails_its_own_request_not_the_one_batched_beside_it(server):
    """A seed of 2**64 beside another client's request in one batch window: only its own request fails (400)."""
    url, _ = server
    body = {"model": GENERATOR, "prompt": "the beach", "max_tokens": 4, "temperature": 1.0}
    with ThreadPoolExecutor(2) as pool:
        bad, good = pool.map(
            lambda seed: httpx.post(f"{url}/v1/completions", json={**body, "seed": seed}, timeout=60), [2**64, 1]
        )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "seed", bad.text
    assert good.status_code == 200 and good.json()["choices"][0]["text"], good.text


def test_drill_a_client_gone_mid_stream_stops_its_row_within_one_decoding_step(server, record_property):
    """A streaming client gone after its first tokens of 240: its row leaves the call within one decoding step."""
    url, app = server
    stats = app.state.batcher.stats
    before = stats.cancelled
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{url}/v1/completions", json={**LONG, "stream": True}) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_lines()
        assert [next(chunks) for _ in range(4)]  # decoding has begun
        left = time.monotonic()
    # the response and its connection are closed here
    recovered = settled(app, "the gone client's row never left its call", lambda: stats.cancelled > before)
    record_property("time_to_recover_s", round(time.monotonic() - left, 3))
    assert stats.steps_after_cancel <= 1 and 0 < stats.cancelled_tokens < LONG["max_tokens"], stats
    assert recovered < 10 and stats.queued_tokens == 0
    after = httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 4}, timeout=60)
    assert after.status_code == 200  # the worker is free for the next client


def test_drill_64_clients_at_the_context_limit_get_429_past_the_queue_cap_not_a_growing_queue(server, record_property):
    """64 clients at once at the context limit: the queue stays under its token cap, the rest get 429 + retry-after.

    Each sends 250 token ids + 6 to generate (the model's 256 positions): the queue holds at most
    serve.max_queued_tokens, the rest get OpenAI's 429 with retry-after, and a retry is answered."""
    url, app = server
    stats = app.state.batcher.stats
    stats.most_queued_tokens = 0
    body = {"model": GENERATOR, "prompt": [50] * 250, "max_tokens": 6, "temperature": 0}
    limits = httpx.Limits(max_connections=64)
    with rss_growth() as grown, httpx.Client(timeout=120, limits=limits) as http, ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda _: http.post(f"{url}/v1/completions", json=body), range(64)))
    record_property("rss_growth_mb", round(grown[0] / 2**20, 1))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) == {200, 429} and codes.count(200) >= QUEUE_CAP // CONTEXT, codes
    busy = next(a for a in answers if a.status_code == 429)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(busy.json()["error"]) == {"message", "type", "param", "code"}
    assert stats.most_queued_tokens <= QUEUE_CAP, stats
    refused_at = time.monotonic()
    time.sleep(int(busy.headers["retry-after"]))  # as OpenAI's client does before its retry
    assert httpx.post(f"{url}/v1/completions", json=body, timeout=60).status_code == 200
    record_property("time_to_recover_s", round(time.monotonic() - refused_at, 3))  # a refused client answered
    assert stats.queued_tokens == 0
    assert grown[0] < 256 * 2**20, f"RSS grew {grown[0] / 2**20:.0f} MB"


def test_drill_a_client_reading_one_byte_a_second_does_not_hold_the_worker(server):
    """A streaming client reading one byte a second: the worker finishes its rows and serves others meanwhile.

    The client's receive buffer is 1 kB and each chunk ~1 kB (logprobs: 5); its answer waits in its own queue."""
    url, app = server
    stats = app.state.batcher.stats
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    body = json.dumps({**LONG, "max_tokens": 48, "stream": True, "logprobs": 5}).encode()  # ~1 kB a chunk
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    slow.sendall(head.encode() + b"\r\n\r\n" + body)
    read = slow.recv(1)
    try:
        start = time.monotonic()
        others = []
        for i in range(3):
            others.append(httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 4, "seed": i}, timeout=60))
            time.sleep(max(0.0, start + i + 1 - time.monotonic()))
            read += slow.recv(1)  # one byte a second
        assert all(o.status_code == 200 for o in others)
        # the slow client's rows are done (its tokens left the queue) while it has read a few bytes of them
        settled(app, "the worker waited on the slow client", lambda: stats.queued_tokens == 0)
        assert len(read) == 4 and read.startswith(b"HTTP")
    finally:
        slow.close()
