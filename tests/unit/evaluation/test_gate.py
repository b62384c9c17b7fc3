"""The promotion gate, pure: each floor fails by name, the base model and the champion must be beaten, NaN never
passes."""

from __future__ import annotations

import math

import pytest

from tests.conftest import ROOT, metrics
from tuneops.config.params import load_params
from tuneops.config.records import (
    BaseGenerationScores,
    BaselineScores,
    Champion,
    Gap,
    GenerationMetrics,
    GenerationScores,
)
from tuneops.evaluation.gate import gate, gate_generation


def gen_metrics(jaccard_=0.7, loss_gap=0.1, copy=0.59, base=0.3) -> GenerationMetrics:
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
        base=BaseGenerationScores(
            model="gpt2", loss=3.0, perplexity=math.exp(3), token_accuracy=0.2, exact_match=0.0, jaccard=base
        ),
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
        (gen_metrics(jaccard_=0.2, copy=0.1, base=0.1), None, {"min_jaccard"}),
        (gen_metrics(loss_gap=0.9), None, {"max_loss_gap"}),
        (gen_metrics(), 0.699, {"beats_champion"}),  # not by min_improvement
        (gen_metrics(base=0.7), None, {"beats_base"}),  # a tie with the model it started from
        (gen_metrics(jaccard_=float("nan")), None, {"min_jaccard", "beats_baseline", "beats_base", "beats_champion"}),
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
        "beats_base",
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


def base_check(verdict):
    return next(c for c in verdict.checks if c.check == "beats_base")


def test_the_candidate_must_beat_the_base_model_by_more_than_base_margin():
    beaten = base_check(gate(metrics(test_acc=0.7, base_acc=0.4), PARAMS, None))
    assert beaten.passed and beaten.observed == 0.7 and beaten.threshold == pytest.approx(0.4 + PARAMS.base_margin)
    assert "base model gpt2 zero-shot (0.4000)" in beaten.detail
    tie = base_check(gate(metrics(test_acc=0.7, base_acc=0.7), PARAMS, None))
    assert not tie.passed  # fine-tuning that changed nothing is not worth a version
    margin = PARAMS.model_copy(update={"base_margin": 0.35})
    assert gate(metrics(test_acc=0.7, base_acc=0.4), margin, None).failed[0].check == "beats_base"
    assert gate(metrics(test_acc=0.7, base_acc=0.4), PARAMS.model_copy(update={"base_margin": -1.0}), None).verdict == (
        "passed"
    )


def test_beats_base_compares_the_primary_metric():
    by_f1 = PARAMS.model_copy(update={"primary_metric": "macro_f1"})
    check = base_check(gate(metrics(test_acc=0.9, macro_f1=0.65, base_acc=0.66), by_f1, None))
    assert not check.passed and check.observed == 0.65 and "macro_f1" in check.detail


def test_generation_beats_base_on_its_primary_metric_and_names_the_base():
    check = base_check(gate_generation(gen_metrics(jaccard_=0.7, base=0.3), evaluate_params(), None))
    assert check.passed and check.threshold == pytest.approx(0.3) and "gpt2" in check.detail
    by_exact = evaluate_params().model_copy(
        update={"generation": evaluate_params().generation.model_copy(update={"primary_metric": "exact_match"})}
    )
    check = base_check(gate_generation(gen_metrics(), by_exact, None))  # exact match 0.4 vs the base's 0.0
    assert check.passed and check.observed == 0.4 and check.threshold == 0.0


@pytest.mark.parametrize("ours, theirs", [(float("nan"), 0.3), (0.7, float("nan")), (float("inf"), 0.3)])
def test_a_nan_on_either_side_of_beats_base_fails_it_by_name(ours, theirs):
    check = base_check(gate_generation(gen_metrics(jaccard_=ours, base=theirs), evaluate_params(), None))
    assert not check.passed and "is not a number" in check.detail


def test_a_base_with_no_value_for_the_metric_fails_beats_base_saying_so():
    m = gen_metrics()
    m = m.model_copy(update={"base": m.base.model_copy(update={"jaccard": None})})
    check = base_check(gate_generation(m, evaluate_params(), None))
    assert not check.passed and check.threshold is None and "no recorded value" in check.detail
