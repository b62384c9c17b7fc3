"""Accuracy, macro-F1, loss and token accuracy, each defined once for model selection and the gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import LABELS
from tuneops.evaluation.metrics import accuracy_macro_f1, mean_log_loss, score, token_accuracy


def test_token_accuracy_counts_completion_tokens_only():
    labels = torch.tensor([[-100, -100, 7, 8, -100]])  # position t predicts token t+1
    predicted = torch.tensor([[0, 7, 9, 0, 0]])  # 7 right, 8 wrong; the rest is prompt or padding
    assert token_accuracy(predicted.numpy(), labels.numpy()) == 0.5


def test_scoring_defines_accuracy_macro_f1_and_loss_once():
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]))
    labels = np.array([0, 1, 2, 2])
    s = score(logits, labels, LABELS)
    assert s.accuracy == 0.75 == accuracy_macro_f1(logits, labels)["accuracy"]
    assert s.macro_f1 == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert s.loss == pytest.approx(-(3 * np.log(0.8) + np.log(0.1)) / 4) == mean_log_loss(logits, labels)
    assert s.confusion_matrix == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert s.per_class["positive"].recall == 0.5 and s.per_class["positive"].support == 2
