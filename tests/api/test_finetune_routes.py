"""The files and fine-tuning routes' answers that need no worker: OpenAI's shapes for files and for refusals."""

from __future__ import annotations

import shutil

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import ROOT, Clock
from tuneops.jobs.file_store import FileStore
from tuneops.serve.errors import install_error_handlers
from tuneops.serve.finetuning.routes import router as finetune_router
from tuneops.serve.finetuning.shared import FineTuning

GOOD = "".join(f'{{"prompt": "day {i} ->", "completion": " fine {i}\\n"}}\n' for i in range(12)).encode()


@pytest.fixture
def client(tmp_path, monkeypatch) -> TestClient:
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    app = FastAPI()

    async def fallback(_request, exc):  # pragma: no cover - every route here is under /v1
        raise exc

    install_error_handlers(app, fallback)
    app.include_router(finetune_router)
    app.state.fine_tuning = FineTuning(tmp_path, "tuneops")
    app.state.fine_tuning.store = FileStore(tmp_path, track=False, clock=Clock())  # no DVC repository here
    return TestClient(app)


def upload(client: TestClient, content: bytes, purpose: str = "fine-tune", name: str = "train.jsonl", **form: str):
    data = {"purpose": purpose, **form}
    return client.post("/v1/files", files={"file": (name, content, "application/jsonl")}, data=data)


def expiring(seconds: str, anchor: str = "created_at") -> dict[str, str]:
    """OpenAI's client sends `expires_after` as these two form fields."""
    return {"expires_after[anchor]": anchor, "expires_after[seconds]": seconds}


def test_a_file_is_uploaded_listed_read_and_deleted_in_openais_shapes(client):
    made = upload(client, GOOD)
    assert made.status_code == 200
    body = made.json()
    assert body["object"] == "file" and body["id"].startswith("file-") and body["bytes"] == len(GOOD)
    assert body["filename"] == "train.jsonl" and body["purpose"] == "fine-tune" and body["status"] == "processed"
    assert body["status_details"].startswith("warning: 12 examples: OpenAI recommends at least 50")
    listed = client.get("/v1/files").json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [body["id"]]
    assert listed["has_more"] is False
    assert client.get(f"/v1/files/{body['id']}/content").content == GOOD
    assert client.delete(f"/v1/files/{body['id']}").json() == {"id": body["id"], "object": "file", "deleted": True}
    gone = client.get(f"/v1/files/{body['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "file_not_found"


def test_a_file_failing_an_error_check_is_status_error_with_the_reasons(client):
    body = upload(client, b'{"prompt": "a ->"}\n', name="bad.jsonl").json()
    assert body["status"] == "error" and "line 1: no `completion`" in body["status_details"]


def test_the_same_bytes_uploaded_twice_are_two_files_deleted_apart(client):
    first, second = upload(client, GOOD, name="a.jsonl").json(), upload(client, GOOD, name="b.jsonl").json()
    assert first["id"] != second["id"] and (first["filename"], second["filename"]) == ("a.jsonl", "b.jsonl")
    assert client.delete(f"/v1/files/{first['id']}").json()["deleted"] is True
    assert client.get(f"/v1/files/{second['id']}/content").content == GOOD
    assert [f["id"] for f in client.get("/v1/files").json()["data"]] == [second["id"]]


def test_an_expired_file_is_gone_from_list_retrieve_and_content(client):
    made = upload(client, GOOD, **expiring("3600")).json()
    assert made["expires_at"] == made["created_at"] + 3600
    assert client.get(f"/v1/files/{made['id']}").json() == made
    client.app.state.fine_tuning.store.clock.now += 3600
    for path in (f"/v1/files/{made['id']}", f"/v1/files/{made['id']}/content"):
        assert client.get(path).json()["error"]["code"] == "file_not_found"
    assert client.get("/v1/files").json()["data"] == []


@pytest.mark.parametrize(
    ("form", "param", "says"),
    [
        (expiring("60"), "expires_after.seconds", "from 3600 (1 hour) to 2592000 (30 days), not '60'"),
        (expiring("2592001"), "expires_after.seconds", "to 2592000 (30 days)"),
        (expiring("3600", anchor="last_active_at"), "expires_after.anchor", "must be 'created_at'"),
        ({"expires_after[seconds]": "3600"}, "expires_after.anchor", "Missing required parameter"),
    ],
)
def test_expires_after_out_of_openais_bounds_is_refused(client, form, param, says):
    answer = upload(client, GOOD, **form)
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["param"] == param and says in error["message"]
    assert client.get("/v1/files").json()["data"] == []


def test_refusals_are_openai_errors_naming_the_parameter(client):
    wrong = upload(client, GOOD, purpose="assistants")
    assert wrong.status_code == 400 and wrong.json()["error"] == {
        "message": "purpose 'assistants' is not served here: tuneops serves only purpose 'fine-tune'",
        "type": "invalid_request_error",
        "param": "purpose",
        "code": "invalid_value",
    }
    unknown_purpose = upload(client, GOOD, purpose="training").json()["error"]
    assert unknown_purpose["message"].startswith("purpose 'training' is not one of OpenAI's (assistants, batch,")
    no_file = client.post("/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": "file-" + "0" * 24})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "training_file"
    assert no_file.headers["x-should-retry"] == "false"  # OpenAI's clients obey it
    bad_hp = client.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": "f", "hyperparameters": {"n_epochs": 0}}
    )
    assert bad_hp.status_code == 400 and bad_hp.json()["error"]["param"] == "hyperparameters"
    assert bad_hp.headers["x-should-retry"] == "false"
    too_long = {"Idempotency-Key": "k" * 256}
    keyless = client.post("/v1/fine_tuning/jobs", headers=too_long, json={"model": "gpt2", "training_file": "f"})
    assert keyless.status_code == 400 and "Idempotency-Key" in keyless.json()["error"]["message"]
    unknown = client.get("/v1/fine_tuning/jobs/ftjob-nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"


def test_without_a_prefect_server_a_job_is_refused_saying_how_to_start_one(client):
    file_id = upload(client, GOOD).json()["id"]
    answer = client.post("/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": file_id})
    assert answer.status_code == 503 and "prefect server start" in answer.json()["error"]["message"]
    assert answer.headers["x-should-retry"] == "false"  # a retry cannot start one: the client is told not to


def test_the_official_clients_expires_after_is_read_from_its_form_fields(client):
    from openai import OpenAI  # the installed client: the form field names are its own, not ours

    openai_client = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    made = openai_client.files.create(
        file=("train.jsonl", GOOD), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 7200}
    )
    assert made.expires_at == made.created_at + 7200 and made.filename == "train.jsonl"
