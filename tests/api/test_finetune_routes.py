"""The files and fine-tuning routes' answers that need no worker: OpenAI's shapes for files and for refusals."""

from __future__ import annotations

import shutil

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tuneops.jobs.file_store import FileStore
from tuneops.serve.errors import install_error_handlers
from tuneops.serve.finetuning.routes import router as finetune_router
from tuneops.serve.finetuning.shared import FineTuning

GOOD = "".join(f'{{"prompt": "day {i} ->", "completion": " fine {i}\\n"}}\n' for i in range(4)).encode()


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
    app.state.fine_tuning.store = FileStore(tmp_path, track=False)  # no DVC repository here
    return TestClient(app)


def upload(client: TestClient, content: bytes, purpose: str = "fine-tune", name: str = "train.jsonl"):
    return client.post("/v1/files", files={"file": (name, content, "application/jsonl")}, data={"purpose": purpose})


def test_a_file_is_uploaded_listed_read_and_deleted_in_openais_shapes(client):
    made = upload(client, GOOD)
    assert made.status_code == 200
    body = made.json()
    assert body["object"] == "file" and body["id"].startswith("file-") and body["bytes"] == len(GOOD)
    assert body["filename"] == "train.jsonl" and body["purpose"] == "fine-tune" and body["status"] == "processed"
    listed = client.get("/v1/files").json()
    assert listed["object"] == "list" and [f["id"] for f in listed["data"]] == [body["id"]]
    assert listed["has_more"] is False
    assert client.get(f"/v1/files/{body['id']}/content").content == GOOD
    assert client.delete(f"/v1/files/{body['id']}").json() == {"id": body["id"], "object": "file", "deleted": True}
    gone = client.get(f"/v1/files/{body['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "file_not_found"


def test_a_file_failing_an_error_check_is_status_error_with_the_reasons(client):
    body = upload(client, b'{"prompt": "a ->"}\n', name="bad.jsonl").json()
    assert body["status"] == "error" and "completion" in body["status_details"]


def test_refusals_are_openai_errors_naming_the_parameter(client):
    wrong = upload(client, GOOD, purpose="assistants")
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "purpose"
    no_file = client.post("/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": "file-" + "0" * 24})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "training_file"
    bad_hp = client.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": "f", "hyperparameters": {"n_epochs": 0}}
    )
    assert bad_hp.status_code == 400 and bad_hp.json()["error"]["param"] == "hyperparameters"
    unknown = client.get("/v1/fine_tuning/jobs/ftjob-nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"


def test_without_a_prefect_server_a_job_is_refused_saying_how_to_start_one(client):
    file_id = upload(client, GOOD).json()["id"]
    answer = client.post("/v1/fine_tuning/jobs", json={"model": "gpt2", "training_file": file_id})
    assert answer.status_code == 503 and "prefect server start" in answer.json()["error"]["message"]
