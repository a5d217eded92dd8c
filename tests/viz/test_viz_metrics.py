"""The numbers behind the plots equal independent computations (scikit-learn, worked fixtures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_fscore_support, top_k_accuracy_score

from harness.engine.metrics import confusion_matrix, expected_calibration_error
from harness.viz.metrics import calibration_bins, per_class_metrics, topk_accuracies


@pytest.fixture
def fixed():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 8, generator=gen, dtype=torch.float64) * 2.5
    labels = torch.randint(0, 8, (500,), generator=gen)
    labels[:300] = logits[:300].argmax(dim=1)  # better than chance
    return logits, labels


def test_calibration_bins_equal_scikit_learns_calibration_curve(fixed):
    logits, labels = fixed
    probs = logits.softmax(dim=1)
    calibration = calibration_bins(probs, labels)
    confidence, preds = probs.max(dim=1)
    prob_true, prob_pred = calibration_curve(
        (preds == labels).numpy(), confidence.numpy(), n_bins=15, strategy="uniform"
    )
    filled = [b for b in calibration.bins if b.count > 0]
    assert len(calibration.bins) == 15 and len(filled) == len(prob_true)
    np.testing.assert_allclose([b.accuracy for b in filled], prob_true, atol=1e-12)
    np.testing.assert_allclose([b.confidence for b in filled], prob_pred, atol=1e-12)
    assert sum(b.count for b in calibration.bins) == calibration.n_samples == 500


def test_the_ece_of_the_bins_is_the_engines_ece(fixed):
    logits, labels = fixed
    probs = logits.softmax(dim=1)
    assert calibration_bins(probs, labels).ece == pytest.approx(
        expected_calibration_error(probs, labels), abs=1e-12)


def test_calibration_bins_on_a_worked_fixture():
    # 15 bins of width 1/15: 0.9 lies in (0.8667, 0.9333], 0.6 in (0.5333, 0.6]: a confidence
    # on an edge belongs to the bin it closes.
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 0, 1])
    calibration = calibration_bins(probs, labels)
    by_count = {i: b for i, b in enumerate(calibration.bins) if b.count}
    assert set(by_count) == {8, 13}
    assert (by_count[13].count, by_count[13].accuracy, by_count[13].confidence) == (4, 0.75, 0.9)
    assert (by_count[8].count, by_count[8].accuracy) == (2, 0.5)
    assert by_count[8].hi == pytest.approx(0.6)
    assert calibration.ece == pytest.approx((4 / 6) * 0.15 + (2 / 6) * 0.1, abs=1e-12)
    as_json = calibration.to_json()
    assert as_json["bins"][0] == {"lo": 0.0, "hi": pytest.approx(1 / 15), "count": 0,
                                  "confidence": None, "accuracy": None}
    assert as_json["ece"] == calibration.ece and as_json["n_bins"] == 15


def test_per_class_metrics_equal_scikit_learn(fixed):
    logits, labels = fixed
    preds = logits.argmax(dim=1)
    names = [f"c{i}" for i in range(8)]
    metrics = per_class_metrics(confusion_matrix(preds, labels, 8), names)
    p, r, f, s = precision_recall_fscore_support(labels.numpy(), preds.numpy(),
                                                 labels=np.arange(8), zero_division=0)
    assert [m.name for m in metrics] == names
    np.testing.assert_allclose([m.precision for m in metrics], p, atol=1e-12)
    np.testing.assert_allclose([m.recall for m in metrics], r, atol=1e-12)
    np.testing.assert_allclose([m.f1 for m in metrics], f, atol=1e-12)
    assert [m.support for m in metrics] == s.tolist()


def test_per_class_metrics_of_a_class_never_predicted_nor_present_are_zero():
    labels = torch.tensor([0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 0])
    metrics = per_class_metrics(confusion_matrix(preds, labels, 4), list("abcd"))
    p, r, f, s = precision_recall_fscore_support(labels.numpy(), preds.numpy(),
                                                 labels=np.arange(4), zero_division=0)
    np.testing.assert_allclose([(m.precision, m.recall, m.f1) for m in metrics],
                               np.stack([p, r, f], axis=1), atol=1e-12)
    assert metrics[3].support == 0 and not any(math.isnan(m.f1) for m in metrics)


def test_topk_accuracies_equal_scikit_learn(fixed):
    logits, labels = fixed
    topk = topk_accuracies(logits, labels)
    assert list(topk) == ["top1", "top3", "top5"]
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=np.arange(8))
        assert topk[f"top{k}"] == pytest.approx(expected, abs=1e-6)


def test_topk_with_fewer_classes_than_k_is_one():
    logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(1))
    assert topk_accuracies(logits, labels)["top5"] == 1.0
