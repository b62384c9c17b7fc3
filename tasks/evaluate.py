"""Stage `evaluate`: test metrics, the generalisation gap, and the promotion gate.

    python -m tasks.evaluate          (dvc.yaml runs it)

params: task, data.seed, evaluate, generation.stop, generation.max_new_tokens, register.model_name,
        register.alias, register.tracking_uri (the champion's registry)
reads:  models/candidate, data/processed (both checked against their hashes in dvc.lock first), and the
        registry's champion (models/registered.json tells a lost registry from a first run)
writes: reports/metrics.json (classification: accuracy, macro-F1, per class, loss; generation: loss,
        perplexity, token accuracy, exact match, Jaccard, the baselines; on test, a train sample, their gap),
        reports/gate.json (every check, observed and threshold, and the verdict),
        reports/samples.jsonl (held-out inputs with the expected and the candidate's answer),
        reports/confusion_matrix.json (DVC's confusion plot; generation: when completions are labels) and
        reports/evaluation.png (the confusion matrix; generation: how close each completion came)

Classification scores the candidate on `test` and on a seeded sample of `train` as large as test, then checks
the gate: quality floor, overfitting gap, loss gap, and beating the champion by `min_improvement`. Generation
measures loss and token accuracy teacher-forced on both, generates completions for a seeded sample of test
prompts (greedy, up to a stop sequence or max_new_tokens) and gates on their metric, the loss gap, beating the
trivial answers (copying the prompt's text, the most frequent completion) and the champion. Exits 0 on a failed
gate, so the evidence is kept; `register` enforces the verdict. A registry that does not answer stops the stage
as transient (exit 75), and nothing is written: a plain `dvc repro` asks again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tuneops.config.errors import UserError
from tuneops.config.params import Params, load_params
from tuneops.config.paths import (
    CANDIDATE_DIR,
    CONFUSION_JSON_PATH,
    DVC_LOCK_PATH,
    EVALUATION_PNG_PATH,
    GATE_PATH,
    METRICS_PATH,
    PROCESSED_DIR,
    REGISTERED_PATH,
    SAMPLES_PATH,
)
from tuneops.config.records import Gap, GateVerdict, GenerationMetrics, GenerationSample, GenerationScores, Metrics
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.splits import LABEL_LIKE  # completions that are labels: a confusion plot fits
from tuneops.data.tokenization import load_processed
from tuneops.evaluation.gate import gate, gate_generation
from tuneops.evaluation.lm_scoring import answer, baselines, perplexity, samples, teacher_forced, text_scores
from tuneops.evaluation.metrics import confusion_rows, gap, plot_confusion, plot_scores, score
from tuneops.inference.generation import generate
from tuneops.io.files import write_json, write_jsonl
from tuneops.io.integrity import verify_outputs
from tuneops.models.hardware import set_threads
from tuneops.models.loading import load_trained, predict_logits, saved_task
from tuneops.registry.store import champion, registered_before

log = logging.getLogger("tuneops.evaluate")
SAMPLES_KEPT = 200  # lines of reports/samples.jsonl: enough to read, small enough for git diffs and artifacts


def evaluate(params: Params, candidate_dir: Path = CANDIDATE_DIR, processed_dir: Path = PROCESSED_DIR) -> GateVerdict:
    verify_outputs(DVC_LOCK_PATH, candidate_dir, processed_dir)
    if saved_task(candidate_dir) != params.task:
        raise UserError(f"{candidate_dir}: not a {params.task} model (task: {params.task}); run `dvc repro train`")
    set_threads(None)
    model, tokenizer = load_trained(candidate_dir)
    data = load_processed(processed_dir)
    size = min(params.evaluate.train_sample_size or len(data["test"]), len(data["train"]))
    splits = {"test": data["test"], "train": data["train"].shuffle(seed=params.data.seed).select(range(size))}
    the_champion = champion(params.register_, registered_before(REGISTERED_PATH))
    if params.task == "generation":
        metrics, shown = score_generation(params, model, tokenizer, splits)
        verdict = gate_generation(metrics, params.evaluate, the_champion)
    else:
        metrics, shown = score_classification(params, model, tokenizer, splits)
        verdict = gate(metrics, params.evaluate, the_champion)
    write_json(METRICS_PATH, metrics)
    write_json(GATE_PATH, verdict)
    write_jsonl(SAMPLES_PATH, shown)
    for c in verdict.checks:
        result = "ok" if c.passed else "FAIL"
        log.info("gate %-16s %-6s observed %s, threshold %s %s", c.check, result, c.observed, c.threshold, c.detail)
    log.info("gate verdict: %s", verdict.verdict)
    return verdict


def score_classification(params: Params, model: Any, tokenizer: Any, splits: dict) -> tuple[Metrics, list]:
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scores, test_logits = {}, None
    for name, split in splits.items():
        logits = predict_logits(model, tokenizer, split["input_ids"], params.evaluate.batch_size)
        scores[name] = s = score(logits, np.asarray(split["labels"]), names)
        test_logits = logits if name == "test" else test_logits
        log.info(
            "%s: accuracy %.4f, macro-F1 %.4f, loss %.4f (%d rows)", name, s.accuracy, s.macro_f1, s.loss, len(split)
        )
    metrics = Metrics(test=scores["test"], train=scores["train"], gap=gap(scores["train"], scores["test"]))
    write_json(CONFUSION_JSON_PATH, confusion_rows(metrics.test.confusion_matrix, names))
    plot_confusion(metrics.test.confusion_matrix, names, EVALUATION_PNG_PATH)
    test = splits["test"].select(range(min(SAMPLES_KEPT, len(splits["test"]))))
    shown = [
        GenerationSample(
            prompt=tokenizer.decode(ids),
            expected=names[label],
            generated=names[int(row.argmax())],
            finish_reason="stop",
            exact_match=names[label] == names[int(row.argmax())],
            jaccard=float(label == int(row.argmax())),
        )
        for ids, label, row in zip(test["input_ids"], test["labels"], test_logits, strict=False)
    ]
    return metrics, shown


def score_generation(
    params: Params, model: Any, tokenizer: Any, splits: dict
) -> tuple[GenerationMetrics, list[GenerationSample]]:
    ev, gen = params.evaluate, params.generation
    scores: dict[str, GenerationScores] = {}
    for name, split in splits.items():
        loss, accuracy = teacher_forced(model, tokenizer, split, ev.batch_size)
        scores[name] = GenerationScores(loss=loss, perplexity=perplexity(loss), token_accuracy=accuracy)
        log.info("%s: loss %.4f, perplexity %.2f, token accuracy %.4f", name, loss, perplexity(loss), accuracy)
    test = splits["test"]
    if ev.generation.sample_size and ev.generation.sample_size < len(test):
        test = test.shuffle(seed=params.data.seed).select(range(ev.generation.sample_size))
    expected = [answer(c, gen.stop) for c in test["completion"]]
    completions = generate(
        model, tokenizer, test["prompt"], max_new_tokens=gen.max_new_tokens, stop=gen.stop, batch_size=ev.batch_size
    )
    generated = text_scores(expected, [c.text for c in completions])
    scores["test"] = scores["test"].model_copy(
        update={"exact_match": generated.exact_match, "jaccard": generated.jaccard, "generated": len(test)}
    )
    train_answers = [answer(c, gen.stop) for c in splits["train"]["completion"]]
    metrics = GenerationMetrics(
        test=scores["test"],
        train=scores["train"],
        gap=Gap(
            accuracy=scores["train"].token_accuracy - scores["test"].token_accuracy,
            loss=scores["test"].loss - scores["train"].loss,
        ),
        baselines=baselines(test["source_text"], train_answers, expected),
    )
    log.info(
        "test, generated for %d prompts: exact match %.4f, Jaccard %.4f; baselines %s",
        len(test),
        generated.exact_match,
        generated.jaccard,
        {k: round(b.jaccard, 4) for k, b in metrics.baselines.items()},
    )
    shown = samples(test["prompt"], expected, completions)
    labels = sorted(set(expected))
    label_like = len(labels) <= LABEL_LIKE
    rows = [{"actual": s.expected, "predicted": s.generated} for s in shown] if label_like else []
    write_json(CONFUSION_JSON_PATH, rows)
    plot_scores(shown, metrics, ev.generation.primary_metric, EVALUATION_PNG_PATH)
    return metrics, shown[:SAMPLES_KEPT]


def main() -> None:
    evaluate(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
