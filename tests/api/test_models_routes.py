"""The model routes beyond listing, in-process over a real MLflow registry and a finished job's workspace
(tests/unit/registry/fake_job.py): a job's checkpoints served by their OpenAI ids, and DELETE /v1/models/{model}
through the official client: a fine-tuned model deleted and no longer answering, a version an alias points at
refused with a 409 that names the alias, an alias id refused, an unknown id a 404, and the API key required."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import CHAT
from tests.unit.registry.fake_job import (
    FT,
    FULL_STEP,
    JOB,
    LORA_STEP,
    MAX_NEW_TOKENS,
    NAME,
    checkpoint,
    make_project,
    register_job_version,
)
from tuneops.registry.catalog import Catalog
from tuneops.registry.mlflow_registry import MlflowRegistry
from tuneops.serve.app import Batching, create_app

KEY = "sk-only-the-client-knows"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sample: Any, tokenizer: Any) -> Any:
    return make_project(tmp_path_factory.mktemp("project"), sample, tokenizer)


def make_app(project: Any, api_key: str | None = None) -> Any:
    catalog = Catalog(MlflowRegistry(project.register()), 4, root=project.root)
    return create_app(catalog, f"{NAME}@champion", batching=Batching(window_ms=1.0), api_key=api_key)


@pytest.fixture(scope="module")
def client(project: Any) -> Any:
    with TestClient(make_app(project)) as client:
        yield client


def official(client: TestClient, api_key: str = KEY) -> openai.OpenAI:
    """OpenAI's client, its requests answered by the app in-process."""
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api_key, http_client=client, max_retries=0)


def completion(client: TestClient, model: str, **body: Any) -> Any:
    answer = client.post("/v1/completions", json={"model": model, "prompt": "the beach", "temperature": 0, **body})
    assert answer.status_code == 200, answer.text
    return answer


def test_a_jobs_complete_checkpoints_are_listed_newest_first_after_its_model(client):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids[ids.index(FT) :] == [FT, checkpoint(FT, LORA_STEP), checkpoint(FT, FULL_STEP)]  # step 12: cut short
    assert client.get(f"/v1/models/{checkpoint(FT, FULL_STEP)}").json()["id"] == checkpoint(FT, FULL_STEP)


def test_a_checkpoint_answers_with_its_own_weights_and_the_jobs_generation_settings(client):
    model = checkpoint(FT, FULL_STEP)
    answer = completion(client, model, stop=[], logprobs=1)
    assert answer.headers["X-Model-Version"] == f"{JOB}:ckpt-step-{FULL_STEP}"
    assert answer.json()["model"] == model
    # no max_tokens: the registered version's tag, not the workspace's params.yaml (3)
    assert answer.json()["usage"]["completion_tokens"] == MAX_NEW_TOKENS
    registered = completion(client, FT, stop=[], logprobs=1).json()["choices"][0]["logprobs"]["token_logprobs"]
    assert answer.json()["choices"][0]["logprobs"]["token_logprobs"] != registered  # not the registered weights


def test_a_lora_checkpoint_chats_with_the_candidates_template(client, tokenizer):
    from tuneops.config.params import ChatTemplate
    from tuneops.data.chat import render, with_chat_template

    messages = [{"role": "user", "content": "how is the beach?"}]
    model = checkpoint(FT, LORA_STEP)
    answer = client.post("/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": 2})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == f"{JOB}:ckpt-step-{LORA_STEP}"
    declared = with_chat_template(copy.deepcopy(tokenizer), ChatTemplate(**CHAT))
    prompt = render(declared, messages, add_generation_prompt=True)
    assert answer.json()["usage"]["prompt_tokens"] == len(declared(prompt)["input_ids"])


@pytest.mark.parametrize(
    "model",
    [
        checkpoint(FT, 5),  # no such step
        checkpoint(FT, 12),  # its save was cut short
        checkpoint(FT, FULL_STEP).replace(JOB, "ftjob-ffffffffffffffffffffffffffffffff"),  # no such job
        checkpoint(FT, FULL_STEP).replace(":spans:", ":other:"),  # the job's, under another suffix
    ],
)
def test_a_checkpoint_id_that_names_no_saved_checkpoint_is_a_404(client, model):
    with pytest.raises(openai.NotFoundError) as refused:
        official(client).completions.create(model=model, prompt="hi", max_tokens=1)
    assert refused.value.body["code"] == "model_not_found" and refused.value.body["param"] == "model"


def test_deleting_a_fine_tuned_model_stops_it_answering(project, client, sample, tokenizer):
    job = "ftjob-" + "d" * 32
    fine_tuned = "ft:tiny-gpt2:tuneops:doomed:3"
    version = register_job_version(project, sample, tokenizer, job, fine_tuned)
    completion(client, fine_tuned, max_tokens=1)  # loaded and cached
    deleted = official(client).models.delete(fine_tuned)
    assert (deleted.id, deleted.object, deleted.deleted) == (fine_tuned, "model", True)
    for model in (fine_tuned, f"{NAME}:{version}", f"{NAME}@{job}"):
        refused = client.post("/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 1})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert fine_tuned not in ids and f"{NAME}:{version}" not in ids and f"{NAME}@{job}" not in ids
    with pytest.raises(openai.NotFoundError) as again:
        official(client).models.delete(fine_tuned)
    assert again.value.body["code"] == "model_not_found"


def test_the_champion_is_not_deleted_and_an_alias_names_no_version_to_delete(client):
    with pytest.raises(openai.ConflictError) as in_use:
        official(client).models.delete(f"{NAME}:1")
    assert in_use.value.status_code == 409 and in_use.value.body["code"] == "model_in_use"
    assert "alias champion points at" in in_use.value.body["message"]
    assert "set_registered_model_alias" in in_use.value.body["message"]  # how to move it
    with pytest.raises(openai.BadRequestError) as alias:
        official(client).models.delete(f"{NAME}@champion")
    assert f"delete {NAME}:1" in alias.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        official(client).models.delete(checkpoint(FT, FULL_STEP))
    assert completion(client, f"{NAME}@champion", max_tokens=1).headers["X-Model-Version"] == "1"


def test_deleting_needs_the_api_key_where_the_server_has_one(project):
    with TestClient(make_app(project, api_key=KEY)) as client:
        with pytest.raises(openai.AuthenticationError):
            official(client, api_key="wrong").models.delete(FT)
        assert client.get(f"/v1/models/{FT}", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
