"""validate on preference data (train.objective: dpo): the generation checks on prompt/completion, and a pair whose
rejected reply is empty or the preferred one itself fails `rejected_differs`, with that reply shown."""

from __future__ import annotations

from tests.data.test_validate_generation import PARAMS, STOP, good
from tuneops.quality.generation_suites import run_generation_checks


def with_rejected() -> dict:
    return {split: df.assign(rejected=" the other reply\n") for split, df in good().items()}


def test_preference_pairs_with_distinct_rejected_replies_pass(tmp_path):
    records = run_generation_checks(with_rejected(), PARAMS, tmp_path / "docs", STOP)
    differs = [r for r in records if r.check == "rejected_differs"]
    assert [r.split for r in differs] == ["train", "validation", "test"] and all(r.passed for r in differs)
    assert all(r.passed for r in records)


def test_an_empty_or_identical_rejected_reply_fails_by_name_with_the_reply(tmp_path):
    frames = with_rejected()
    frames["train"].loc[3, "rejected"] = frames["train"].loc[3, "completion"]
    frames["test"].loc[1, "rejected"] = " "
    records = run_generation_checks(frames, PARAMS, tmp_path / "docs", STOP)
    failed = {r.split: r for r in records if r.check == "rejected_differs" and not r.passed}
    assert set(failed) == {"train", "test"} and failed["train"].severity == "error"
    assert failed["train"].examples == [frames["train"].loc[3, "completion"]]
