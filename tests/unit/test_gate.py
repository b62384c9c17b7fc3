"""The gate and scoring as pure functions: numbers in, a verdict out; no registry, no model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import LABELS, ROOT, metrics
from tuneops.config.params import load_params
from tuneops.config.records import Champion
from tuneops.evaluation.gate import gate
from tuneops.evaluation.metrics import accuracy_macro_f1, mean_log_loss, score

PARAMS = load_params(ROOT / "params.yaml").evaluate  # min_accuracy 0.45, min_improvement 0.005, ...


def champion(accuracy: float | None) -> Champion:
    values = {} if accuracy is None else {"test_accuracy": accuracy}
    return Champion(name="m", version="3", alias="champion", run_id="r", metrics=values)


def failed(verdict) -> list[str]:
    return [c.check for c in verdict.failed]


def test_a_good_first_model_passes_every_check():
    verdict = gate(metrics(), PARAMS, None)
    assert verdict.verdict == "passed" and failed(verdict) == []
    assert [c.check for c in verdict.checks] == [
        "min_accuracy",
        "min_macro_f1",
        "max_overfit_gap",
        "max_loss_gap",
        "beats_champion",
    ]


@pytest.mark.parametrize(
    "changed, check",
    [
        ({"test_acc": 0.40}, "min_accuracy"),
        ({"macro_f1": 0.30}, "min_macro_f1"),
        ({"train_acc": 0.95}, "max_overfit_gap"),
        ({"test_loss": 1.2}, "max_loss_gap"),
    ],
)
def test_each_floor_fails_by_name(changed, check):
    verdict = gate(metrics(**changed), PARAMS, None)
    assert verdict.verdict == "failed" and check in failed(verdict)


def test_the_candidate_must_beat_the_champion_by_min_improvement():
    assert gate(metrics(test_acc=0.704), PARAMS, champion(0.70)).verdict == "failed"  # +0.004 < 0.005
    beaten = gate(metrics(test_acc=0.706), PARAMS, champion(0.70))
    assert beaten.verdict == "passed"
    check = beaten.checks[-1]
    assert check.threshold == pytest.approx(0.705) and "m v3 (champion, 0.7000)" in check.detail


def test_no_champion_yet_passes_and_says_so():
    check = gate(metrics(), PARAMS, None).checks[-1]
    assert check.passed and check.threshold is None and "no champion yet" in check.detail


def test_scoring_defines_accuracy_macro_f1_and_loss_once():
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))
    labels = np.array([0, 1, 2, 2])
    s = score(logits, labels, LABELS)
    assert s.accuracy == 0.75 == accuracy_macro_f1(logits, labels)["accuracy"]
    assert s.macro_f1 == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert s.loss == pytest.approx(-(3 * np.log(0.8) + np.log(0.1)) / 4) == mean_log_loss(logits, labels)
    assert s.confusion_matrix == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert s.per_class["positive"].recall == 0.5 and s.per_class["positive"].support == 2


def test_a_nan_or_infinite_metric_fails_the_gate_by_name():
    verdict = gate(metrics(test_loss=float("nan")), PARAMS, None)
    loss_gap = next(c for c in verdict.checks if c.check == "max_loss_gap")
    assert verdict.verdict == "failed" and not loss_gap.passed and "is not a number" in loss_gap.detail
    assert gate(metrics(test_acc=float("inf")), PARAMS, None).verdict == "failed"
