from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, top_k_accuracy_score

from harness.engine.metrics import (
    calibration_sums,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    predictions,
    topk_accuracy,
    topk_hits,
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


def _tied_logits(n: int = 2000, classes: int = 10, seed: int = 0):
    """Random logits rounded to bf16 and back: many rows hold tied maxima, as a bf16 model's."""
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, classes, generator=gen) * 0.05).round(decimals=1)
    logits = logits.to(torch.bfloat16).float()
    labels = torch.randint(0, classes, (n,), generator=gen)
    return logits, labels


def test_tied_logits_rank_the_lower_class_first_for_top1_and_every_k():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0],    # tie for the max: class 1 before class 2
                           [2.0, 2.0, 2.0, 2.0],    # all tied: index order
                           [0.0, 1.0, 1.0, 5.0]])   # tie for second place
    assert predictions(logits).tolist() == [1, 0, 3]
    # Label 2 of row 0 is second (class 1 ties with it and comes first).
    assert topk_hits(logits, torch.tensor([2, 3, 2]), 1).tolist() == [False, False, False]
    assert topk_hits(logits, torch.tensor([2, 3, 2]), 2).tolist() == [True, False, False]
    assert topk_hits(logits, torch.tensor([2, 3, 2]), 3).tolist() == [True, False, True]
    assert topk_hits(logits, torch.tensor([2, 3, 2]), 4).tolist() == [True, True, True]


def test_top1_is_the_logged_accuracy_on_tied_bf16_logits():
    logits, labels = _tied_logits()
    top = logits.max(dim=1, keepdim=True).values
    assert ((logits == top).sum(dim=1) > 1).sum() > 100  # the fixture really ties
    metrics = classification_metrics(logits, labels)
    assert topk_accuracy(logits, labels, 1) == metrics["acc"]
    assert metrics["acc"] == (logits.argmax(dim=1) == labels).float().mean().item()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_topk_on_tied_logits_counts_the_label_rank_under_index_order(k):
    logits, labels = _tied_logits(n=500, classes=6, seed=1)
    # The reference: a stable descending sort keeps tied classes in index order.
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices
    expected = (order[:, :k] == labels[:, None]).any(dim=1).float().mean().item()
    assert topk_accuracy(logits, labels, k) == expected


def test_calibration_correctness_uses_the_logits_predictions_on_ties():
    logits, labels = _tied_logits(n=500, classes=4, seed=2)
    metrics = classification_metrics(logits, labels)
    _, count, _, acc_sum = calibration_sums(logits.softmax(dim=1), labels,
                                            preds=predictions(logits))
    assert acc_sum.sum().item() / count.sum().item() == pytest.approx(metrics["acc"], abs=1e-6)
