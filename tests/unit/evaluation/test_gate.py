"""The promotion gate, pure: each floor fails by name, the champion must be beaten, NaN never passes."""

from __future__ import annotations

import math

import pytest

from tests.conftest import ROOT, metrics
from tuneops.config.params import load_params
from tuneops.config.records import BaselineScores, Champion, Gap, GenerationMetrics, GenerationScores
from tuneops.evaluation.gate import gate, gate_generation


def gen_metrics(jaccard_=0.7, loss_gap=0.1, copy=0.59) -> GenerationMetrics:
    test = GenerationScores(
        loss=1.0 + loss_gap, perplexity=math.e, token_accuracy=0.6, exact_match=0.4, jaccard=jaccard_
    )
    train = GenerationScores(loss=1.0, perplexity=math.e, token_accuracy=0.65)
    return GenerationMetrics(
        test=test,
        train=train,
        gap=Gap(accuracy=0.05, loss=loss_gap),
        baselines={
            "copy_prompt": BaselineScores(exact_match=0.3, jaccard=copy),
            "most_frequent": BaselineScores(exact_match=0.1, jaccard=0.1),
        },
    )


def evaluate_params():
    return load_params(ROOT / "params.yaml").evaluate


def test_generation_gate_passes_a_candidate_that_beats_the_baselines_and_the_champion():
    champion = Champion(name="m", version="1", alias="champion", run_id="r", metrics={"test_jaccard": 0.6})
    verdict = gate_generation(gen_metrics(), evaluate_params(), champion)
    assert verdict.verdict == "passed", verdict.failed


@pytest.mark.parametrize(
    ("metrics", "champion_score", "fails"),
    [
        (gen_metrics(jaccard_=0.55), None, {"beats_baseline"}),  # copying the tweet does better
        (gen_metrics(jaccard_=0.2, copy=0.1), None, {"min_jaccard"}),
        (gen_metrics(loss_gap=0.9), None, {"max_loss_gap"}),
        (gen_metrics(), 0.699, {"beats_champion"}),  # not by min_improvement
        (gen_metrics(jaccard_=float("nan")), None, {"min_jaccard", "beats_baseline", "beats_champion"}),
    ],
)
def test_generation_gate_fails_by_name(metrics, champion_score, fails):
    champion = None
    if champion_score is not None:
        champion = Champion(
            name="m", version="1", alias="champion", run_id="r", metrics={"test_jaccard": champion_score}
        )
    verdict = gate_generation(metrics, evaluate_params(), champion)
    assert {c.check for c in verdict.failed} == fails


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


def test_a_nan_or_infinite_metric_fails_the_gate_by_name():
    verdict = gate(metrics(test_loss=float("nan")), PARAMS, None)
    loss_gap = next(c for c in verdict.checks if c.check == "max_loss_gap")
    assert verdict.verdict == "failed" and not loss_gap.passed and "is not a number" in loss_gap.detail
    assert gate(metrics(test_acc=float("inf")), PARAMS, None).verdict == "failed"
