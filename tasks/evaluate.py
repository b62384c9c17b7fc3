"""Stage `evaluate`: test metrics, the generalisation gap, and the promotion gate.

    python -m tasks.evaluate          (dvc.yaml runs it; reads data.seed, evaluate, register)

Scores models/candidate on `test` and on a seeded sample of `train` as large as test (accuracy, macro-F1,
per-class precision/recall/F1, loss, confusion matrix), then checks the gate: quality floor, overfitting gap,
loss gap, and beating the registry's champion by `min_improvement`. Writes reports/metrics.json,
reports/gate.json, reports/confusion_matrix.{json,png}. Exits 0 on a failed gate, so the evidence is kept;
`register` enforces the verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tasks.common import run_main, stage_parser, write_json
from tasks.config import EvaluateParams, RegisterParams, load_params
from tasks.modeling import load_trained, predict_logits, set_threads

log = logging.getLogger("tuneops.evaluate")


def accuracy_macro_f1(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The two headline metrics, defined once: model selection in train and the gate here use the same ones."""
    from sklearn.metrics import accuracy_score, f1_score

    preds, ids = np.asarray(logits).argmax(-1), list(range(np.shape(logits)[-1]))
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
    }


def score(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    preds = logits.argmax(-1)
    shifted = logits - logits.max(-1, keepdims=True)  # stable log-softmax
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    ids = list(range(len(names)))
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    return {
        **accuracy_macro_f1(logits, labels),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
    }


def champion_metric(register: RegisterParams, metric: str) -> tuple[float | None, str]:
    """The champion's value of `metric` from the registry, or None when there is no champion yet."""
    from tasks.register import champion

    found = champion(register)
    if found is None:
        return None, f"no {register.alias} for {register.model_name!r} yet: the first model passes this check"
    version, metrics = found
    return metrics.get(f"test_{metric}"), f"{register.model_name} v{version.version} ({register.alias})"


def check(name: str, observed: float | None, threshold: float | None, passed: bool, detail: str = "") -> dict:
    return {"check": name, "observed": observed, "threshold": threshold, "passed": bool(passed), "detail": detail}


def gate(metrics: dict[str, Any], params: EvaluateParams, register: RegisterParams) -> dict[str, Any]:
    test, gap = metrics["test"], metrics["gap"]
    champion, who = champion_metric(register, params.primary_metric)
    ours = test[params.primary_metric]
    needed = None if champion is None else champion + params.min_improvement
    checks = [
        check("min_accuracy", test["accuracy"], params.min_accuracy, test["accuracy"] >= params.min_accuracy),
        check("min_macro_f1", test["macro_f1"], params.min_macro_f1, test["macro_f1"] >= params.min_macro_f1),
        check("max_overfit_gap", gap["accuracy"], params.max_overfit_gap, gap["accuracy"] <= params.max_overfit_gap,
              "train accuracy - test accuracy"),
        check("max_loss_gap", gap["loss"], params.max_loss_gap, gap["loss"] <= params.max_loss_gap,
              "test loss - train loss"),
        check("beats_champion", ours, needed, needed is None or ours >= needed,
              f"test {params.primary_metric} vs {who} + min_improvement {params.min_improvement}"
              + (f" (champion {champion:.4f})" if champion is not None else "")),
    ]  # fmt: skip
    return {"verdict": "passed" if all(c["passed"] for c in checks) else "failed", "checks": checks}


def plot_confusion(matrix: list[list[int]], names: list[str], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="actual", title="test confusion matrix")  # fmt: skip
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def evaluate(params: EvaluateParams, register: RegisterParams, seed: int, model_dir: Path, processed_dir: Path,
             reports_dir: Path) -> dict[str, Any]:  # fmt: skip
    from tasks.tokenize import load_processed

    set_threads(None)
    model, tokenizer = load_trained(str(model_dir))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    data = load_processed(processed_dir)
    size = min(params.train_sample_size or len(data["test"]), len(data["train"]))
    splits = {"test": data["test"], "train": data["train"].shuffle(seed=seed).select(range(size))}
    metrics: dict[str, Any] = {}
    for name, split in splits.items():
        logits = predict_logits(model, tokenizer, split["input_ids"], params.batch_size)
        metrics[name] = score(logits, np.asarray(split["labels"]), names)
        log.info("%s: accuracy %.4f, macro-F1 %.4f, loss %.4f (%d rows)", name, metrics[name]["accuracy"],
                 metrics[name]["macro_f1"], metrics[name]["loss"], len(split))  # fmt: skip
    metrics["gap"] = {"accuracy": metrics["train"]["accuracy"] - metrics["test"]["accuracy"],
                      "loss": metrics["test"]["loss"] - metrics["train"]["loss"]}  # fmt: skip
    verdict = gate(metrics, params, register)
    matrix = metrics["test"]["confusion_matrix"]
    write_json(reports_dir / "metrics.json", metrics)
    write_json(reports_dir / "gate.json", verdict)
    write_json(reports_dir / "confusion_matrix.json", [
        {"actual": names[i], "predicted": names[j]} for i, row in enumerate(matrix) for j, n in enumerate(row)
        for _ in range(n)
    ])  # fmt: skip
    plot_confusion(matrix, names, reports_dir / "confusion_matrix.png")
    for c in verdict["checks"]:
        log.info("gate %-16s %-6s observed %s, threshold %s %s", c["check"], "ok" if c["passed"] else "FAIL",
                 c["observed"], c["threshold"], c["detail"])  # fmt: skip
    log.info("gate verdict: %s", verdict["verdict"])
    return verdict


def main() -> None:
    args = stage_parser(__doc__).parse_args()
    params = load_params(args.params)
    evaluate(params.evaluate, params.register_, params.data.seed, Path("models/candidate"), Path("data/processed"),
             Path("reports"))  # fmt: skip


if __name__ == "__main__":
    run_main(main)
