"""Which errors of the jobs routes a client's retry can help, and the digest that ties an Idempotency-Key to its
request."""

from __future__ import annotations

import pytest

from tuneops.jobs.spec import JobRequest
from tuneops.serve.finetuning.retry import NO_API, RETRY_UNSAFE, SERVER_CONFIG, request_tag, retry_helps


@pytest.mark.parametrize(
    ("status", "code", "helps"),
    [
        (400, "invalid_file", False),
        (404, "job_not_found", False),
        (408, None, True),
        (409, None, True),
        (429, None, True),
        (503, None, True),  # the Prefect API did not answer: it may next time
        (503, NO_API, False),  # no PREFECT_API_URL: it will not, until someone sets it
        (500, SERVER_CONFIG, False),
        (503, RETRY_UNSAFE, False),  # a create without a key: a retry could make a second job
    ],
)
def test_a_retry_is_said_futile_where_it_cannot_help(status, code, helps):
    assert retry_helps(status, code) is helps


def test_the_same_request_has_the_same_tag_and_another_request_another():
    one = JobRequest(model="gpt2", training_file="file-a")
    assert request_tag(one) == request_tag(JobRequest(model="gpt2", training_file="file-a"))
    assert request_tag(one) != request_tag(JobRequest(model="gpt2", training_file="file-b"))


def test_a_cut_connection_to_prefect_is_a_503_a_retry_may_help(monkeypatch):
    import httpx

    from tuneops.serve.errors import APIError
    from tuneops.serve.finetuning.shared import prefect_call

    def cut() -> None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with pytest.raises(APIError) as caught:
        prefect_call(cut)
    assert caught.value.status == 503 and "RemoteProtocolError" in caught.value.message
    assert retry_helps(caught.value.status, caught.value.code)
    monkeypatch.delenv("PREFECT_API_URL")
    with pytest.raises(APIError) as unset:
        prefect_call(cut)
    assert unset.value.code == NO_API and not retry_helps(unset.value.status, unset.value.code)
