"""The files routes' decisions: which jobs keep a file from being deleted, and ids refused for their path parts."""

from __future__ import annotations

import pytest

from tuneops.jobs.spec import JobSpec, Resolved
from tuneops.serve.errors import APIError
from tuneops.serve.finetuning.files import checked_id, jobs_using

HYPER = Resolved(n_epochs=1, batch_size=1, learning_rate_multiplier=1.0)


def spec(training: str, validation: str | None = None) -> JobSpec:
    return JobSpec(
        model="m", training_file=training, validation_file=validation, hyperparameters=HYPER, seed=1, overrides={}
    )


def test_only_jobs_not_finished_that_train_or_validate_on_the_file_hold_it():
    jobs = [
        ("ftjob-queued", "queued", spec("file-a")),
        ("ftjob-validating", "validating_files", spec("file-b", "file-a")),
        ("ftjob-paused", "paused", spec("file-a")),
        ("ftjob-done", "succeeded", spec("file-a")),
        ("ftjob-failed", "failed", spec("file-a")),
        ("ftjob-cancelled", "cancelled", spec("file-a")),
        ("ftjob-other", "running", spec("file-b")),
    ]
    assert jobs_using("file-a", jobs) == ["ftjob-queued", "ftjob-validating", "ftjob-paused"]
    assert jobs_using("file-c", jobs) == []


@pytest.mark.parametrize("bad", ["..", "file-..", "a/b", "a\\b", "file-abc\0"])
def test_an_id_with_path_parts_is_a_400_naming_file_id(bad):
    with pytest.raises(APIError) as refused:
        checked_id(bad)
    assert refused.value.status == 400 and refused.value.param == "file_id"


def test_an_id_without_path_parts_passes_as_sent():
    assert checked_id("file-0123456789abcdef01234567") == "file-0123456789abcdef01234567"
    assert checked_id("file-nope") == "file-nope"  # unknown: the store's 404, as OpenAI answers it
