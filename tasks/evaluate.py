"""Stage `evaluate`: test metrics, the generalisation gap, and the promotion gate.

    python -m tasks.evaluate          (dvc.yaml runs it)

params: data.seed, evaluate, register.model_name, register.alias, register.tracking_uri (the champion's registry)
reads:  models/candidate, data/processed (both checked against their hashes in dvc.lock first), and the
        registry's champion (models/registered.json tells a lost registry from a first run)
writes: reports/metrics.json (accuracy, macro-F1, per class, loss; test, a train sample, their gap),
        reports/gate.json (every check, observed and threshold, and the verdict),
        reports/confusion_matrix.json and reports/confusion_matrix.png

Scores the candidate on `test` and on a seeded sample of `train` as large as test, then checks the gate:
quality floor, overfitting gap, loss gap, and beating the champion by `min_improvement`. Exits 0 on a
failed gate, so the evidence is kept; `register` enforces the verdict. A registry that does not answer stops
the stage as transient (exit 75), and nothing is written: a plain `dvc repro` asks again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tuneops.files import write_json
from tuneops.gate import gate
from tuneops.integrity import verify_outputs
from tuneops.metrics import confusion_rows, gap, plot_confusion, score
from tuneops.modeling import load_trained, predict_logits, set_threads
from tuneops.params import Params, load_params
from tuneops.paths import (
    CANDIDATE_DIR,
    CONFUSION_JSON_PATH,
    CONFUSION_PNG_PATH,
    DVC_LOCK_PATH,
    GATE_PATH,
    METRICS_PATH,
    PROCESSED_DIR,
    REGISTERED_PATH,
)
from tuneops.records import GateVerdict, Metrics
from tuneops.registry import champion, registered_before
from tuneops.runner import run_main, stage_parser
from tuneops.tokenization import load_processed

log = logging.getLogger("tuneops.evaluate")


def evaluate(params: Params, candidate_dir: Path = CANDIDATE_DIR, processed_dir: Path = PROCESSED_DIR) -> GateVerdict:
    verify_outputs(DVC_LOCK_PATH, candidate_dir, processed_dir)
    set_threads(None)
    model, tokenizer = load_trained(candidate_dir)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    data = load_processed(processed_dir)
    size = min(params.evaluate.train_sample_size or len(data["test"]), len(data["train"]))
    splits = {"test": data["test"], "train": data["train"].shuffle(seed=params.data.seed).select(range(size))}
    scores = {}
    for name, split in splits.items():
        logits = predict_logits(model, tokenizer, split["input_ids"], params.evaluate.batch_size)
        scores[name] = s = score(logits, np.asarray(split["labels"]), names)
        log.info(
            "%s: accuracy %.4f, macro-F1 %.4f, loss %.4f (%d rows)", name, s.accuracy, s.macro_f1, s.loss, len(split)
        )
    metrics = Metrics(test=scores["test"], train=scores["train"], gap=gap(scores["train"], scores["test"]))
    verdict = gate(metrics, params.evaluate, champion(params.register_, registered_before(REGISTERED_PATH)))
    write_json(METRICS_PATH, metrics)
    write_json(GATE_PATH, verdict)
    write_json(CONFUSION_JSON_PATH, confusion_rows(metrics.test.confusion_matrix, names))
    plot_confusion(metrics.test.confusion_matrix, names, CONFUSION_PNG_PATH)
    for c in verdict.checks:
        result = "ok" if c.passed else "FAIL"
        log.info("gate %-16s %-6s observed %s, threshold %s %s", c.check, result, c.observed, c.threshold, c.detail)
    log.info("gate verdict: %s", verdict.verdict)
    return verdict


def main() -> None:
    evaluate(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
