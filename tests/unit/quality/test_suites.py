"""Whether a person must review the data before training: a pure decision."""

from __future__ import annotations

from tuneops.config.records import QualityRecord


def record(passed: bool) -> QualityRecord:
    return QualityRecord(
        check="mojibake_rate",
        suite="train",
        split="train",
        severity="warning",
        passed=passed,
        observed=0.01,
        threshold=0.001,
        examples=[],
    )


def test_review_is_asked_on_warnings_by_default_and_never_twice_for_the_same_data():
    from tuneops.quality.suites import review_needed

    clean, warned = [record(True)], [record(False)]
    assert not review_needed("on_warning", clean, "sha1", None)
    assert review_needed("on_warning", warned, "sha1", None)
    assert not review_needed("on_warning", warned, "sha1", approved_sha="sha1")  # approved before
    assert review_needed("on_warning", warned, "sha2", approved_sha="sha1")  # new data: ask again
    assert review_needed("always", clean, "sha1", None)
    assert not review_needed("never", warned, "sha1", None)
