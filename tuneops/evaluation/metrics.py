"""How a classifier is scored, defined once: model selection in train and the gate in evaluate use these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuneops.config.records import ClassScores, Gap, GenerationMetrics, GenerationSample, SplitScores

if TYPE_CHECKING:
    from transformers import EvalPrediction


def accuracy_macro_f1(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The two headline metrics."""
    from sklearn.metrics import accuracy_score, f1_score

    preds, ids = np.asarray(logits).argmax(-1), list(range(np.shape(logits)[-1]))
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
    }


def trainer_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """The Trainer's compute_metrics: the same two metrics on the validation split."""
    logits, labels = eval_pred
    return accuracy_macro_f1(logits, labels)


def token_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of completion tokens predicted right, teacher-forced: position t predicts token t+1, and -100
    labels (prompt, padding) count for nothing."""
    predicted, labels = np.asarray(predicted)[:, :-1], np.asarray(labels)[:, 1:]
    scored = labels != -100
    return float((predicted[scored] == labels[scored]).mean()) if scored.any() else 0.0


def token_accuracy_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """The Trainer's compute_metrics for generation: `accuracy` is token accuracy on the completions."""
    predicted, labels = eval_pred
    return {"accuracy": token_accuracy(predicted, labels)}


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


def plot_scores(shown: list[GenerationSample], metrics: GenerationMetrics, metric: str, png_path: Path) -> None:
    """How close each generated completion came (word-level Jaccard), with the mean, the base model's and the
    trivial baselines marked: a glance tells a model that copies or repeats one answer from one that extracts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist([s.jaccard for s in shown], bins=20, range=(0, 1), color="#4c72b0")
    ax.axvline(metrics.test.jaccard or 0.0, color="black", label=f"candidate {metrics.test.jaccard or 0:.3f}")
    base = metrics.base.jaccard or 0.0
    ax.axvline(base, color="#55a868", linestyle="--", label=f"base {Path(metrics.base.model).name} {base:.3f}")
    styles = iter(["--", ":", "-."])
    for name, base in metrics.baselines.items():
        ax.axvline(base.jaccard, color="#c44e52", linestyle=next(styles, "--"), label=f"{name} {base.jaccard:.3f}")
    ax.set(xlabel="word-level Jaccard of generated vs expected", ylabel="test prompts")
    ax.set_title(f"generated completions (gate metric: {metric})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
