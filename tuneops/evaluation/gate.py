"""The promotion gate, as a pure function: metrics and the champion's record in, a verdict out.

A quality floor, an overfitting limit, beating the base model the candidate was fine-tuned from, and
champion/challenger. The base is scored and the champion looked up by the caller (evaluate runs the base and asks
the registry), so the decision itself is testable with numbers alone.
"""

from __future__ import annotations

import math

from tuneops.config.params import EvaluateParams
from tuneops.config.records import (
    BaseGenerationScores,
    BaseLabelScores,
    Champion,
    GateCheck,
    GateVerdict,
    GenerationMetrics,
    GenerationScores,
    Metrics,
    SplitScores,
)


def check(name: str, observed: float | None, threshold: float | None, passed: bool, detail: str = "") -> GateCheck:
    # A comparison with NaN is False either way round: fail a non-finite value by name, never by accident.
    if observed is not None and not math.isfinite(observed):
        passed, detail = False, f"{observed} is not a number the gate can compare; {detail}".rstrip("; ")
    elif threshold is not None and not math.isfinite(threshold):
        passed, detail = False, f"threshold {threshold} is not a number the gate can compare; {detail}".rstrip("; ")
    return GateCheck(check=name, observed=observed, threshold=threshold, passed=bool(passed), detail=detail)


def beats_champion(
    test: SplitScores | GenerationScores, champion: Champion | None, params: EvaluateParams
) -> GateCheck:
    metric = params.primary("generation" if isinstance(test, GenerationScores) else "classification")
    ours = getattr(test, metric)
    rule = f"test {metric} vs champion + min_improvement {params.min_improvement}"
    if champion is None:
        return check("beats_champion", ours, None, True, f"{rule}: no champion yet, the first model passes")
    theirs = champion.metrics.get(f"test_{metric}")
    needed = None if theirs is None else theirs + params.min_improvement
    who = f"{champion.name} v{champion.version} ({champion.alias}"
    who += f", {theirs:.4f})" if theirs is not None else ", which has no recorded value)"
    return check("beats_champion", ours, needed, needed is None or ours >= needed, f"{rule}: {who}")


def beats_base(
    test: SplitScores | GenerationScores, base: BaseLabelScores | BaseGenerationScores, params: EvaluateParams
) -> GateCheck:
    """The candidate against the model it was fine-tuned from, zero-shot on the same test rows: strictly more
    than the base's primary metric + base_margin (a tie is no reason to serve a fine-tune)."""
    metric = params.primary("generation" if isinstance(test, GenerationScores) else "classification")
    ours, theirs = getattr(test, metric), getattr(base, metric)
    needed = None if theirs is None else theirs + params.base_margin
    scored = "no recorded value" if theirs is None else f"{theirs:.4f}"
    detail = f"test {metric} vs the base model {base.model} zero-shot ({scored}) + base_margin {params.base_margin}"
    return check("beats_base", ours, needed, ours is not None and needed is not None and ours > needed, detail)


def preference_beats_base(test: GenerationScores, base: BaseGenerationScores, params: EvaluateParams) -> GateCheck:
    """train.objective dpo: the candidate's held-out preference accuracy (preferred reply likelier than the other)
    strictly above the base model's on the same pairs + base_margin: DPO that does not move the model's
    preferences the data's way has not worked, whatever its generations score."""
    ours, theirs = test.preference_accuracy, base.preference_accuracy
    needed = None if theirs is None else theirs + params.base_margin
    scored = "no recorded value" if theirs is None else f"{theirs:.4f}"
    detail = f"test preference accuracy vs the base model {base.model} ({scored}) + base_margin {params.base_margin}"
    passed = ours is not None and needed is not None and ours > needed
    return check("preference_beats_base", ours, needed, passed, detail)


def gate(metrics: Metrics, params: EvaluateParams, champion: Champion | None) -> GateVerdict:
    test, gap = metrics.test, metrics.gap
    checks = [
        check("min_accuracy", test.accuracy, params.min_accuracy, test.accuracy >= params.min_accuracy),
        check("min_macro_f1", test.macro_f1, params.min_macro_f1, test.macro_f1 >= params.min_macro_f1),
        check(
            "max_overfit_gap",
            gap.accuracy,
            params.max_overfit_gap,
            gap.accuracy <= params.max_overfit_gap,
            "train accuracy - test accuracy",
        ),
        check("max_loss_gap", gap.loss, params.max_loss_gap, gap.loss <= params.max_loss_gap, "test loss - train loss"),
        beats_base(test, metrics.base, params),
        beats_champion(test, champion, params),
    ]
    return GateVerdict(verdict="passed" if all(c.passed for c in checks) else "failed", checks=checks)


def gate_generation(metrics: GenerationMetrics, params: EvaluateParams, champion: Champion | None) -> GateVerdict:
    """A generation candidate: a floor on its generated completions' metric, the loss gap (test - train, on
    completion tokens), beating every trivial baseline, the base model, and the champion; trained on preferences
    (its test scores have a preference accuracy), beating the base's preference accuracy too."""
    g = params.generation
    metric, test = g.primary_metric, metrics.test
    ours = getattr(test, metric)
    best = max(metrics.baselines, key=lambda name: getattr(metrics.baselines[name], metric))
    theirs = getattr(metrics.baselines[best], metric)
    loss_gap = metrics.gap.loss
    checks = [
        check(f"min_{metric}", ours, g.min_score, ours is not None and ours >= g.min_score),
        check("max_loss_gap", loss_gap, params.max_loss_gap, loss_gap <= params.max_loss_gap, "test loss - train loss"),
        check(
            "beats_baseline",
            ours,
            theirs + g.baseline_margin,
            ours is not None and ours > theirs + g.baseline_margin,
            f"the best trivial answer, {best} ({theirs:.4f}), + baseline_margin {g.baseline_margin}",
        ),
        beats_base(test, metrics.base, params),
        beats_champion(test, champion, params),
    ]
    if test.preference_accuracy is not None:
        checks.append(preference_beats_base(test, metrics.base, params))
    return GateVerdict(verdict="passed" if all(c.passed for c in checks) else "failed", checks=checks)
