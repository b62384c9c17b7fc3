"""The DPO gate check, pure: a preference-trained candidate must prefer what the data prefers more often than its
base does, by more than base_margin; a supervised candidate is not held to it."""

from __future__ import annotations

import pytest

from tests.unit.evaluation.test_gate import evaluate_params, gen_metrics
from tuneops.evaluation.gate import gate_generation


def with_preferences(ours: float | None, theirs: float | None):
    m = gen_metrics()
    return m.model_copy(
        update={
            "test": m.test.model_copy(update={"preference_accuracy": ours}),
            "base": m.base.model_copy(update={"preference_accuracy": theirs}),
        }
    )


def preference_check(verdict):
    return next(c for c in verdict.checks if c.check == "preference_beats_base")


def test_a_dpo_candidate_that_prefers_the_preferred_replies_more_than_its_base_passes():
    verdict = gate_generation(with_preferences(0.8, 0.55), evaluate_params(), None)
    check = preference_check(verdict)
    assert check.passed and check.observed == 0.8 and check.threshold == 0.55  # base_margin 0.0 in params.yaml
    assert "gpt2" in check.detail and verdict.verdict == "passed"


@pytest.mark.parametrize(
    ("ours", "theirs", "margin"),
    [(0.55, 0.55, 0.0), (0.6, 0.55, 0.1), (float("nan"), 0.5, 0.0), (0.9, None, 0.0)],
    ids=["a tie", "not by the margin", "nan", "base not scored"],
)
def test_a_dpo_candidate_no_better_than_its_base_fails_by_name(ours, theirs, margin):
    params = evaluate_params().model_copy(update={"base_margin": margin})
    verdict = gate_generation(with_preferences(ours, theirs), params, None)
    assert not preference_check(verdict).passed and verdict.verdict == "failed"


def test_a_supervised_candidate_has_no_preference_check():
    verdict = gate_generation(gen_metrics(), evaluate_params(), None)
    assert "preference_beats_base" not in [c.check for c in verdict.checks] and verdict.verdict == "passed"
