"""OpenAI's routes in-process, served from a real MLflow registry (tests/api/conftest.py): model ids, completions
from a classification and a generation model, stop sequences, seeds, streaming, chat, OpenAI-shaped errors, the
LRU cache of versions, an alias followed, and concurrent requests batched into shared calls."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import CHAT, CLASSIFIER, FINE_TUNED, GENERATOR, LABELS
from tuneops.registry.catalog import Catalog
from tuneops.registry.mlflow_registry import MlflowRegistry
from tuneops.serve.app import Batching, create_app
from tuneops.serve.limits import Limits

KEY = "sk-only-the-client-knows"


def make_app(store: Any, cache_size: int = 4, window_ms: float = 5.0, **kwargs: Any) -> Any:
    catalog = Catalog(MlflowRegistry(store.register()), cache_size, refresh_seconds=kwargs.pop("refresh_seconds", 30))
    batching = Batching(window_ms=window_ms, max_batch_size=32)
    return create_app(catalog, f"{CLASSIFIER}@champion", kwargs.pop("limits", None), batching=batching, **kwargs)


@pytest.fixture(scope="module")
def client(store: Any) -> Any:
    with TestClient(make_app(store)) as client:
        yield client


def complete(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    return response.json()["error"]


def test_models_lists_each_alias_version_and_fine_tuned_id(client):
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    ids = [m["id"] for m in listed["data"]]
    assert ids == [
        f"{CLASSIFIER}@champion",
        f"{CLASSIFIER}:1",
        f"{CLASSIFIER}:2",
        f"{GENERATOR}@champion",
        f"{GENERATOR}:1",
        FINE_TUNED,
    ]
    assert all(m["object"] == "model" and m["owned_by"] == "tuneops" and m["created"] > 1.7e9 for m in listed["data"])
    one = client.get(f"/v1/models/{FINE_TUNED}")
    assert one.status_code == 200 and one.json()["id"] == FINE_TUNED
    assert error(client.get("/v1/models/nope:3"), 404)["code"] == "model_not_found"


def test_a_classification_model_answers_its_label_with_the_labels_logprobs(client):
    answer = complete(client, model=f"{CLASSIFIER}:1", prompt=["so happy", "so sad"], logprobs=3, max_tokens=1)
    assert answer["object"] == "text_completion" and answer["model"] == f"{CLASSIFIER}:1"
    for choice in answer["choices"]:
        assert choice["text"] in LABELS and choice["finish_reason"] == "stop"
        logprobs = choice["logprobs"]
        assert logprobs["tokens"] == [choice["text"]]
        top = logprobs["top_logprobs"][0]
        assert set(top) == set(LABELS) and max(top, key=top.get) == choice["text"]
        assert math.isclose(sum(math.exp(v) for v in top.values()), 1.0, rel_tol=1e-4)
        assert logprobs["token_logprobs"] == [top[choice["text"]]]
    usage = answer["usage"]
    assert usage["completion_tokens"] == 2 and usage["total_tokens"] == usage["prompt_tokens"] + 2
    fewer = complete(client, model=f"{CLASSIFIER}:1", prompt="so happy", logprobs=1)["choices"][0]["logprobs"]
    assert len(fewer["top_logprobs"][0]) == 1
    label_only = complete(client, model=f"{CLASSIFIER}:1", prompt="so happy", logprobs=0)["choices"][0]["logprobs"]
    assert label_only["top_logprobs"] == [{label_only["tokens"][0]: label_only["token_logprobs"][0]}]
    echoed = complete(client, model=f"{CLASSIFIER}:1", prompt="so happy", echo=True)["choices"][0]["text"]
    assert echoed.startswith("so happy") and echoed.removeprefix("so happy") in LABELS


def test_predict_and_completions_agree_on_the_champion(client):
    predicted = client.post("/predict", json=["so happy"]).json()["predictions"][0]["label"]
    answer = client.post("/v1/completions", json={"model": f"{CLASSIFIER}@champion", "prompt": "so happy"})
    assert answer.headers["X-Model-Version"] == "2" and answer.json()["choices"][0]["text"] == predicted


def test_greedy_generation_is_repeatable_and_counts_its_tokens(client):
    body = {"model": GENERATOR, "prompt": ["I love my cat", "the traffic downtown"], "max_tokens": 6, "temperature": 0}
    first, again = complete(client, **body), complete(client, **body)
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]
    assert all(c["finish_reason"] in ("stop", "length") for c in first["choices"])
    assert first["usage"]["completion_tokens"] <= 12
    by_ft_id = complete(client, **{**body, "model": FINE_TUNED})
    assert [c["text"] for c in by_ft_id["choices"]] == [c["text"] for c in first["choices"]]


def test_a_stop_sequence_ends_the_text_before_it(client):
    body = {"model": GENERATOR, "prompt": "I love my cat", "max_tokens": 8, "temperature": 0, "stop": []}
    full = complete(client, **body)["choices"][0]
    assert full["finish_reason"] == "length" and len(full["text"]) > 4
    stop = full["text"][3:5]
    cut = complete(client, **{**body, "stop": [stop]})["choices"][0]
    assert cut["finish_reason"] == "stop" and cut["text"] == full["text"][: full["text"].index(stop)]


def test_a_seed_gives_the_same_sample_alone_or_in_a_batch(client):
    body = {"model": GENERATOR, "prompt": "the beach", "max_tokens": 6, "temperature": 1.0, "seed": 7}
    alone = complete(client, **body)["choices"][0]["text"]
    assert complete(client, **body)["choices"][0]["text"] == alone
    several = complete(client, **{**body, "prompt": ["the beach", "my laptop", "the gym"]})["choices"]
    assert several[0]["text"] == alone


def test_n_completions_per_prompt(client):
    answer = complete(client, model=GENERATOR, prompt=["a", "b"], n=2, max_tokens=3, temperature=1.0, seed=1)
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]


def events(response: Any) -> list[Any]:
    """The server-sent events of a streamed answer: each `data:` payload, JSON but the closing [DONE]."""
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    payloads = [f.removeprefix("data: ") for f in frames]
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def test_a_streamed_completion_adds_up_to_the_same_text(client):
    body = {"model": GENERATOR, "prompt": "I love my cat", "max_tokens": 8, "temperature": 0}
    whole = complete(client, **body)["choices"][0]
    chunks = events(
        client.post("/v1/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}})
    )
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == whole["text"]
    finished = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finished == [whole["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_a_streamed_classification_is_its_label(client):
    chunks = events(client.post("/v1/completions", json={"model": CLASSIFIER, "prompt": "so sad", "stream": True}))
    assert len(chunks) == 1 and chunks[0]["choices"][0]["text"] in LABELS
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"


def test_chat_renders_the_versions_template_and_stops_at_the_turns_end(client, tokenizer):
    import copy

    from tuneops.config.params import ChatTemplate
    from tuneops.data.chat import render, turn_end, with_chat_template

    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "how is the beach?"}]
    body = {"model": f"{GENERATOR}@champion", "messages": messages, "max_tokens": 6, "temperature": 0}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    chat = answer.json()
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
    # registered with its template in its tags only (before tokenizers carried it): served with that one
    declared = with_chat_template(copy.deepcopy(tokenizer), ChatTemplate(**CHAT))
    prompt = render(declared, messages, add_generation_prompt=True)
    same = complete(client, model=GENERATOR, prompt=prompt, max_tokens=6, temperature=0, stop=[turn_end(declared)])
    assert chat["choices"][0]["message"]["content"] == same["choices"][0]["text"]
    assert chat["usage"] == same["usage"]
    chunks = events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == chat["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == chat["choices"][0]["finish_reason"]


def test_chat_with_a_classification_model_says_to_use_completions(client):
    body = {"model": CLASSIFIER, "messages": [{"role": "user", "content": "hi"}]}
    refused = error(client.post("/v1/chat/completions", json=body), 404)
    assert refused["param"] == "model" and "/v1/completions" in refused["message"]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"max_tokens": 100_000}, "max_tokens", "invalid_value"),
        ({"logprobs": 6}, "logprobs", "invalid_value"),
        ({"n": 2, "best_of": 3}, "best_of", "unsupported_parameter"),
        ({"suffix": "the end"}, "suffix", "unsupported_parameter"),
        ({"logit_bias": {"50256": -100}}, "logit_bias", "unsupported_parameter"),
        ({"presence_penalty": 0.5}, "presence_penalty", "unsupported_parameter"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "unsupported_parameter"),
        ({"prompt": [[1, 2], []]}, "prompt", "invalid_value"),
        ({"prompt": [1, 2, -3]}, "prompt", "invalid_value"),
        ({"prompt": [1, 2, 10**9]}, "prompt", "invalid_value"),
        ({"prompt": [True, 2]}, "prompt", "invalid_value"),
        ({"seed": 2**63}, "seed", "invalid_value"),
        ({"seed": -(2**63) - 1}, "seed", "invalid_value"),
        ({"temprature": 0.5}, "temprature", "unknown_parameter"),
        ({"prompt": None}, "prompt", "invalid_value"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(client, extra, param, code):
    refused = error(client.post("/v1/completions", json={"model": GENERATOR, "prompt": "hi", **extra}), 400)
    assert (refused["param"], refused["code"], refused["type"]) == (param, code, "invalid_request_error")


def test_neutral_values_of_unsupported_parameters_are_accepted(client):
    neutral = {"presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "best_of": 1, "user": "u1", "n": 1}
    assert complete(client, model=GENERATOR, prompt="hi", max_tokens=2, **neutral)["choices"]


def test_unknown_model_and_too_long_prompt(client):
    unknown = error(client.post("/v1/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}), 404)
    assert unknown["param"] == "model" and "GET /v1/models" in unknown["message"]
    assert error(client.post("/v1/completions", json={"model": f"{GENERATOR}:9", "prompt": "hi"}), 404)
    long = error(client.post("/v1/completions", json={"model": GENERATOR, "prompt": "word " * 300}), 400)
    assert long["code"] == "context_length_exceeded" and "maximum context length is 256 tokens" in long["message"]
    chat = {"model": GENERATOR, "messages": [{"role": "user", "content": "word " * 300}]}
    assert error(client.post("/v1/chat/completions", json=chat), 400)["param"] == "messages"
    surrogate = b'{"model": "%s", "prompt": "\\ud800"}' % GENERATOR.encode()
    bad = client.post("/v1/completions", content=surrogate, headers={"content-type": "application/json"})
    assert error(bad, 400)["message"] == "prompt[0] is not valid Unicode: a lone surrogate at character 0"


def test_body_cap_and_api_key_answer_in_openais_shape(store):
    client = TestClient(make_app(store, limits=Limits(max_body_bytes=2000), api_key=KEY))
    auth = {"Authorization": f"Bearer {KEY}"}
    refused = client.get("/v1/models")
    assert error(refused, 401)["code"] == "invalid_api_key" and KEY not in refused.text
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/models", headers=auth).status_code == 200
    big = {"model": GENERATOR, "prompt": "x" * 5000}
    assert (
        "request body over 2000 bytes" in error(client.post("/v1/completions", json=big, headers=auth), 413)["message"]
    )
    health = client.get("/health")
    assert health.status_code == 200 and "/tmp" not in health.text and "sqlite" not in health.text


def test_one_server_serves_old_versions_from_a_bounded_cache(store):
    with TestClient(make_app(store, cache_size=1)) as client:
        for model in (f"{CLASSIFIER}:1", f"{CLASSIFIER}:2", f"{CLASSIFIER}:1"):
            answer = client.post("/v1/completions", json={"model": model, "prompt": "ok"})
            assert answer.headers["X-Model-Version"] == model[-1]
        info = client.app.state.catalog.cache_info()
        assert (info.maxsize, info.currsize, info.misses) == (1, 1, 3)  # v1 was evicted by v2, loaded again
    with TestClient(make_app(store, cache_size=2)) as client:
        for model in (f"{CLASSIFIER}:1", f"{CLASSIFIER}:2", f"{CLASSIFIER}:1"):
            client.post("/v1/completions", json={"model": model, "prompt": "ok"})
        assert client.app.state.catalog.cache_info().misses == 2


def test_an_alias_id_follows_the_alias_when_it_moves(store):
    from mlflow import MlflowClient

    registry = MlflowClient(store.uri)
    with TestClient(make_app(store, refresh_seconds=0)) as client:
        body = {"model": f"{CLASSIFIER}@champion", "prompt": "ok"}
        assert client.post("/v1/completions", json=body).headers["X-Model-Version"] == "2"
        registry.set_registered_model_alias(CLASSIFIER, "champion", "1")
        try:
            assert client.post("/v1/completions", json=body).headers["X-Model-Version"] == "1"
        finally:
            registry.set_registered_model_alias(CLASSIFIER, "champion", "2")


def test_concurrent_requests_share_one_call_and_get_their_own_answers(store):
    """A window long enough for all to arrive: one generate call for eight greedy requests, each answered as if
    alone; a request with other settings (another max_tokens) runs in a call of its own."""
    app = make_app(store, window_ms=500)
    prompts = ["I love my cat", "the beach", "so sad today", "my laptop", "the gym", "a", "the bus ride", "ok"]

    async def ask(client: httpx.AsyncClient, prompt: str, max_tokens: int = 5) -> str:
        body = {"model": GENERATOR, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        response = await client.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["text"]

    async def run() -> tuple[list[str], list[str], int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await ask(client, "warm up")  # load the model first, so all eight wait on one batch
            before = app.state.batcher.stats.calls
            together = await asyncio.gather(*(ask(client, p) for p in prompts), ask(client, "odd one", 3))
            batched_calls = app.state.batcher.stats.calls - before
            alone = [await ask(client, p) for p in prompts]
            return together[:-1], alone, batched_calls

    together, alone, calls = asyncio.run(run())
    app.state.batcher.close()
    assert together == alone
    assert calls == 2  # eight greedy requests alike, and the one with another max_tokens


def test_scoring_a_text_as_evaluation_harnesses_do(client):
    """lm-eval-harness's loglikelihood request: max_tokens 0, echo, logprobs. The prompt comes back as the text,
    its tokens each with a log-probability (the first null: nothing precedes it) and the k most likely tokens at
    its place plus the chosen one; nothing is generated. The same prompt echoed with new tokens scores alike."""
    prompt = "I love my cat so much"
    scored = complete(client, model=GENERATOR, prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    (choice,) = scored["choices"]
    lp = choice["logprobs"]
    assert choice["text"] == prompt and choice["finish_reason"] == "length"
    assert "".join(lp["tokens"]) == prompt and lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert scored["usage"]["completion_tokens"] == 0 and scored["usage"]["prompt_tokens"] == len(lp["tokens"])
    for token, logprob, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
        assert logprob <= 0 and top[token] == logprob and 2 <= len(top) <= 3  # k, plus the chosen when not among them
    assert lp["text_offset"] == [len("".join(lp["tokens"][:i])) for i in range(len(lp["tokens"]))]
    generated = complete(client, model=GENERATOR, prompt=prompt, max_tokens=3, echo=True, logprobs=2, temperature=0)
    more = generated["choices"][0]["logprobs"]
    n = len(lp["tokens"])
    assert more["tokens"][:n] == lp["tokens"] and len(more["tokens"]) == n + generated["usage"]["completion_tokens"]
    assert more["token_logprobs"][1:n] == pytest.approx(lp["token_logprobs"][1:], abs=1e-4)
    assert generated["choices"][0]["text"].startswith(prompt)
    echoed = complete(client, model=GENERATOR, prompt=prompt, max_tokens=0, echo=True)["choices"][0]
    assert (echoed["text"], echoed["logprobs"], echoed["finish_reason"]) == (prompt, None, "length")


def test_token_id_prompts_are_what_the_model_sees(client, tokenizer):
    ids = tokenizer("I love my cat")["input_ids"]
    body = {"model": GENERATOR, "max_tokens": 5, "temperature": 0, "stop": []}
    as_text = complete(client, prompt="I love my cat", **body)
    assert complete(client, prompt=ids, **body)["choices"] == as_text["choices"]
    several = complete(client, prompt=[ids, tokenizer("the beach")["input_ids"]], **body)
    assert [c["index"] for c in several["choices"]] == [0, 1] and several["choices"][0] == as_text["choices"][0]
    spelled = tokenizer.convert_tokens_to_ids(list("hello"))  # a byte a token: not the tokenizer's own split
    echoed = complete(client, prompt=spelled, model=GENERATOR, max_tokens=0, echo=True, logprobs=0)
    assert echoed["choices"][0]["text"] == "hello" and echoed["choices"][0]["logprobs"]["tokens"] == list("hello")
    assert echoed["usage"]["prompt_tokens"] == 5
    label = complete(client, model=CLASSIFIER, prompt=ids, echo=True)["choices"][0]["text"]
    assert label.removeprefix("I love my cat") in LABELS


def test_logprobs_k_gives_the_k_most_likely_tokens_at_each_step(client):
    body = {"model": GENERATOR, "prompt": "the beach", "max_tokens": 4, "temperature": 0, "stop": [], "logprobs": 3}
    lp = complete(client, **body)["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == 4
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert len(top) == 3 and max(top, key=top.get) == token and top[token] == logprob  # greedy: the likeliest
    chosen_only = complete(client, **{**body, "logprobs": 0})["choices"][0]["logprobs"]
    assert chosen_only["top_logprobs"] == [{t: v} for t, v in zip(lp["tokens"], lp["token_logprobs"], strict=True)]
    messages = [{"role": "user", "content": "how is the beach?"}]
    chat = {"model": GENERATOR, "messages": messages, "max_tokens": 4, "temperature": 0}
    content = client.post("/v1/chat/completions", json={**chat, "logprobs": True, "top_logprobs": 5}).json()
    entries = content["choices"][0]["logprobs"]["content"]
    assert entries and all(len(e["top_logprobs"]) == 5 for e in entries)
    for entry in entries:
        values = [t["logprob"] for t in entry["top_logprobs"]]
        assert values == sorted(values, reverse=True) and entry["top_logprobs"][0]["token"] == entry["token"]
        assert entry["bytes"] == list(entry["token"].encode())
    plain = client.post("/v1/chat/completions", json={**chat, "logprobs": True}).json()
    assert [e["top_logprobs"] for e in plain["choices"][0]["logprobs"]["content"]] == [[]] * len(entries)


def test_streamed_chunks_carry_their_own_tokens_logprobs(client):
    body = {"model": GENERATOR, "prompt": "I love my cat", "max_tokens": 8, "temperature": 0, "stop": []}
    whole = complete(client, **body, logprobs=2, echo=True)["choices"][0]["logprobs"]
    chunks = events(client.post("/v1/completions", json={**body, "logprobs": 2, "echo": True, "stream": True}))
    parts = [c["choices"][0]["logprobs"] for c in chunks if c["choices"] and c["choices"][0]["logprobs"]]
    assert len(parts) > 2
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [x for part in parts for x in part[key]] == whole[key]
    for chunk in chunks:  # a chunk's tokens are the ones that brought its text
        if chunk["choices"] and chunk["choices"][0]["text"]:
            assert "".join(chunk["choices"][0]["logprobs"]["tokens"]).startswith(chunk["choices"][0]["text"])
    chat = {"model": GENERATOR, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0}
    answer = client.post("/v1/chat/completions", json={**chat, "logprobs": True, "top_logprobs": 2}).json()
    streamed = events(
        client.post("/v1/chat/completions", json={**chat, "logprobs": True, "top_logprobs": 2, "stream": True})
    )
    content = [e for c in streamed for e in ((c["choices"][0].get("logprobs") or {}).get("content") or [])]
    assert content == answer["choices"][0]["logprobs"]["content"]


CHAT_BODY = {"model": GENERATOR, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
IGNORED = {
    "service_tier": "flex",
    "prompt_cache_key": "k1",
    "prompt_cache_retention": "24h",
    "safety_identifier": "user-123",
    "modalities": ["text"],
    "store": True,
    "metadata": {"team": "a"},
    "user": "u1",
    "reasoning_effort": "low",
    "verbosity": "high",
    "prediction": {"type": "content", "content": "hello"},
    "parallel_tool_calls": False,
}


def test_parameters_that_change_nothing_are_accepted_and_each_logged_once(client, caplog, monkeypatch):
    from tuneops.serve.openai import common

    monkeypatch.setattr(common, "_ignored_logged", set())  # a fresh process's
    caplog.set_level(logging.INFO, logger="tuneops.serve")
    plain = client.post("/v1/chat/completions", json=CHAT_BODY).json()["choices"][0]["message"]
    for tier in ("auto", "default", "flex", "scale", "priority", "fast"):
        answer = client.post("/v1/chat/completions", json={**CHAT_BODY, **IGNORED, "service_tier": tier})
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"] == plain
    options = {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}}
    assert events(client.post("/v1/chat/completions", json={**CHAT_BODY, **options}))[-1]["usage"]
    logged = [r.getMessage() for r in caplog.records if "accepted and ignored" in r.getMessage()]
    # modalities ["text"] is what tuneops does: honoured, not ignored
    names = [*(n for n in IGNORED if n != "modalities"), "stream_options.include_obfuscation"]
    assert sorted(logged) == sorted(
        f"OpenAI parameter `{n}` accepted and ignored: it changes nothing tuneops answers" for n in names
    )
    assert not any("flex" in m or "user-123" in m for m in logged)  # names, never values


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "unsupported_parameter"),
        ({"web_search_options": {}}, "web_search_options", "unsupported_parameter"),
        ({"moderation": {"model": "omni-moderation-latest"}}, "moderation", "unsupported_parameter"),
        ({"top_logprobs": 2}, "top_logprobs", "invalid_value"),
        ({"service_tier": "turbo"}, "service_tier", "invalid_value"),
        ({"seed": 2**64}, "seed", "invalid_value"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
        ({"made_up": 1}, "made_up", "unknown_parameter"),
    ],
)
def test_chat_parameters_that_would_change_the_answer_are_refused(client, extra, param, code):
    refused = error(client.post("/v1/chat/completions", json={**CHAT_BODY, **extra}), 400)
    assert (refused["param"], refused["code"]) == (param, code)


def test_a_bad_seed_fails_its_own_request_not_one_batched_beside_it(store):
    """The reported bug: a seed of 2**64 beside another client's request (seed 1) failed both with torch's
    "Overflow when unpacking long long". One window long enough for both to arrive together."""
    app = make_app(store, window_ms=300)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            body = {"model": GENERATOR, "prompt": "the beach", "max_tokens": 4, "temperature": 1.0}
            await http.post("/v1/completions", json={**body, "seed": 1})  # load the model first
            return list(
                await asyncio.gather(
                    http.post("/v1/completions", json={**body, "seed": 2**64}),
                    http.post("/v1/completions", json={**body, "seed": 1}),
                )
            )

    bad, good = asyncio.run(run())
    app.state.batcher.close()
    assert error(bad, 400)["param"] == "seed"
    assert good.status_code == 200 and good.json()["choices"][0]["text"]


@pytest.fixture(scope="module")
def official(client: TestClient) -> Any:
    """The official client, in-process: its requests go through the TestClient (an httpx.Client) to the app."""
    import openai

    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def test_the_official_client_scores_text_reads_alternatives_and_streams_them(official, tokenizer):
    import openai

    scored = official.completions.create(model=GENERATOR, prompt="I love my cat", max_tokens=0, echo=True, logprobs=1)
    choice = scored.choices[0]
    assert choice.text == "I love my cat" and choice.logprobs.token_logprobs[0] is None
    assert "".join(choice.logprobs.tokens) == "I love my cat" and scored.usage.completion_tokens == 0
    ids = tokenizer("I love my cat")["input_ids"]
    by_ids = official.completions.create(model=GENERATOR, prompt=ids, max_tokens=3, temperature=0, echo=True)
    assert by_ids.choices[0].text.startswith("I love my cat")
    messages = [{"role": "user", "content": "how is the beach?"}]
    hints = {"service_tier": "flex", "prompt_cache_key": "k", "safety_identifier": "s", "store": False}
    chat = official.chat.completions.create(
        model=GENERATOR, messages=messages, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3, **hints
    )
    assert all(len(t.top_logprobs) == 3 for t in chat.choices[0].logprobs.content)
    chunks = official.chat.completions.create(
        model=GENERATOR, messages=messages, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3, stream=True
    )
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert streamed == chat.choices[0].logprobs.content
    with pytest.raises(openai.BadRequestError) as refused:
        official.chat.completions.create(model=GENERATOR, messages=messages, web_search_options={})
    assert refused.value.param == "web_search_options" and refused.value.code == "unsupported_parameter"
