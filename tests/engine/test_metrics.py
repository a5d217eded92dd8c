from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, top_k_accuracy_score

from harness.engine.metrics import (
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    topk_accuracy,
)


@pytest.fixture
def fixed():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 7, generator=gen) * 2
    labels = torch.randint(0, 7, (300,), generator=gen)
    # Make it better than chance so every metric is non-trivial.
    labels[:150] = logits[:150].argmax(dim=1)
    return logits, labels


def test_macro_f1_equals_scikit_learn(fixed):
    logits, labels = fixed
    preds = logits.argmax(dim=1)
    expected = f1_score(labels.numpy(), preds.numpy(), average="macro")
    assert macro_f1(confusion_matrix(preds, labels, 7)) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_with_a_class_never_predicted_nor_present_matches_scikit_learn():
    labels = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 0])
    expected = f1_score(labels.numpy(), preds.numpy(), average="macro", zero_division=0)
    assert macro_f1(confusion_matrix(preds, labels, 5)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_equals_scikit_learn(fixed, k):
    logits, labels = fixed
    expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=np.arange(7))
    assert topk_accuracy(logits, labels, k) == pytest.approx(expected, abs=1e-6)


def test_ece_on_a_worked_fixture():
    # Two confident bins: conf 0.9 with 3/4 right, conf 0.6 with 1/2 right.
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 0, 1])
    expected = (4 / 6) * abs(0.75 - 0.9) + (2 / 6) * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)


def test_ece_equals_an_independent_loop(fixed):
    logits, labels = fixed
    probs = logits.softmax(dim=1).double().numpy()
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = pred == labels.numpy()
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(logits.softmax(dim=1), labels) == pytest.approx(ece, abs=1e-6)


def test_classification_metrics_report_per_class_accuracy_and_confusion(fixed):
    logits, labels = fixed
    out = classification_metrics(logits, labels)
    confusion = out["confusion"]
    assert confusion.sum().item() == 300
    assert out["acc"] == pytest.approx(confusion.diag().sum().item() / 300)
    for c, acc in enumerate(out["per_class_acc"]):
        assert acc == pytest.approx(((logits.argmax(1) == c) & (labels == c)).sum().item()
                                    / (labels == c).sum().item())
