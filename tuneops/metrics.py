"""How a classifier is scored, defined once: model selection in train and the gate in evaluate use these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuneops.records import ClassScores, Gap, SplitScores


def accuracy_macro_f1(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The two headline metrics."""
    from sklearn.metrics import accuracy_score, f1_score

    preds, ids = np.asarray(logits).argmax(-1), list(range(np.shape(logits)[-1]))
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
    }


def trainer_metrics(eval_pred: Any) -> dict[str, float]:
    """The Trainer's compute_metrics: the same two metrics on the validation split."""
    logits, labels = eval_pred
    return accuracy_macro_f1(logits, labels)


def mean_log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(-1, keepdims=True)  # stable log-softmax
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def score(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> SplitScores:
    """Accuracy, macro-F1, loss, per-class precision/recall/F1 and the confusion matrix of one split."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    preds, ids = logits.argmax(-1), list(range(len(names)))
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    return SplitScores(
        **accuracy_macro_f1(logits, labels),
        loss=mean_log_loss(logits, labels),
        per_class={
            name: ClassScores(precision=float(p[i]), recall=float(r[i]), f1=float(f[i]), support=int(support[i]))
            for i, name in enumerate(names)
        },
        confusion_matrix=confusion_matrix(labels, preds, labels=ids).tolist(),
    )


def gap(train: SplitScores, test: SplitScores) -> Gap:
    """How much better the model does on what it saw: the overfitting gate reads these."""
    return Gap(accuracy=train.accuracy - test.accuracy, loss=test.loss - train.loss)


def confusion_rows(matrix: list[list[int]], names: list[str]) -> list[dict[str, str]]:
    """One row per test example, as DVC's confusion plot template wants them."""
    return [
        {"actual": names[i], "predicted": names[j]}
        for i, row in enumerate(matrix)
        for j, n in enumerate(row)
        for _ in range(n)
    ]


def plot_confusion(matrix: list[list[int]], names: list[str], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="black")
    ticks = range(len(names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="actual")
    ax.set_title("test confusion matrix")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
