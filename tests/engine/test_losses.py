"""Losses: focal against cross-entropy, class weights against scikit-learn and by hand, and the
one-line errors for weights that do not fit the dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from harness.config import TrainConfig
from harness.engine.losses import (
    CrossEntropy,
    FocalLoss,
    balanced_class_weights,
    build_criterion,
    check_loss,
)
from harness.errors import ConfigError


def _batch(n: int = 64, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, classes, generator=g)
    labels = torch.randint(classes, (n,), generator=g)
    return logits, labels


def _criterion(labels: torch.Tensor, classes: int = 5, **train) -> torch.nn.Module:
    return build_criterion(TrainConfig(**train), num_classes=classes, train_labels=labels)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weight", [None, [0.5, 1.0, 2.0, 0.25, 3.0]])
def test_focal_loss_with_gamma_zero_is_cross_entropy(smoothing, weight) -> None:
    logits, labels = _batch()
    w = None if weight is None else torch.tensor(weight)
    focal = FocalLoss(gamma=0.0, label_smoothing=smoothing, weight=w)
    expected = F.cross_entropy(logits, labels, weight=w, label_smoothing=smoothing)
    torch.testing.assert_close(focal(logits, labels), expected, rtol=1e-6, atol=1e-7)
    # And the gradient too: training with it is training with cross-entropy.
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    focal(a, labels).backward()
    F.cross_entropy(b, labels, weight=w, label_smoothing=smoothing).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_focal_loss_down_weights_easy_examples_more_than_hard_ones() -> None:
    labels = torch.tensor([0, 0])
    easy = torch.tensor([[4.0, 0.0, 0.0]])  # p(true) ≈ 0.96
    hard = torch.tensor([[0.0, 1.0, 1.0]])  # p(true) ≈ 0.16
    focal = FocalLoss(gamma=2.0)
    ratios = [(focal(x, labels[:1]) / F.cross_entropy(x, labels[:1])).item() for x in (easy, hard)]
    p_easy, p_hard = (F.softmax(x, dim=1)[0, 0].item() for x in (easy, hard))
    # The factor is exactly (1 - p)^γ on the true class.
    assert ratios == pytest.approx([(1 - p_easy) ** 2, (1 - p_hard) ** 2], rel=1e-5)
    assert ratios[0] < 0.01 < 0.5 < ratios[1]


def test_focal_loss_equals_a_hand_computation_with_weights_and_smoothing() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]])
    labels = torch.tensor([0, 2])
    weight, gamma, eps = [1.0, 2.0, 4.0], 1.5, 0.2
    loss = FocalLoss(gamma=gamma, label_smoothing=eps, weight=torch.tensor(weight))
    total = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        z = sum(math.exp(v) for v in row)
        p = [math.exp(v) / z for v in row]
        for c in range(3):
            q = (1 - eps) * (c == y) + eps / 3
            total += q * weight[c] * (1 - p[c]) ** gamma * -math.log(p[c])
    expected = total / (weight[0] + weight[2])  # divided by the true classes' weights
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_the_weighted_cross_entropy_equals_a_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 2, 2])
    weight = [1.0, 2.0, 4.0]
    criterion = _criterion(labels, classes=3, class_weights=weight)
    terms = []
    for row, y in zip(logits.tolist(), labels.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        terms.append(weight[y] * (log_z - row[y]))
    expected = sum(terms) / sum(weight[y] for y in labels.tolist())
    assert criterion(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_weights_are_scikit_learns() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    ours = balanced_class_weights(labels, num_classes=4)
    theirs = compute_class_weight("balanced", classes=np.arange(4), y=labels.numpy())
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-6)
    criterion = _criterion(labels, classes=4, class_weights="balanced")
    np.testing.assert_allclose(criterion.weight.numpy(), theirs, rtol=1e-6)


def test_build_criterion_combines_focal_weights_and_smoothing() -> None:
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    criterion = _criterion(labels, classes=3, loss="focal", focal_gamma=3.0,
                           class_weights="balanced", label_smoothing=0.1)
    assert isinstance(criterion, FocalLoss)
    assert (criterion.gamma, criterion.label_smoothing) == (3.0, 0.1)
    assert criterion.weight.tolist() == pytest.approx([2.0, 1.0, 2 / 3])
    plain = _criterion(labels, classes=3)
    assert isinstance(plain, CrossEntropy) and plain.weight is None
    # The weights are a buffer: they follow the criterion to its device and dtype.
    assert "weight" in dict(criterion.named_buffers())


def test_focal_loss_gradient_stays_finite_on_a_certain_prediction() -> None:
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    FocalLoss(gamma=0.5)(logits, torch.tensor([0, 1])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("given", [[1.0, 2.0], [1.0] * 11])
def test_a_weight_list_of_the_wrong_length_is_a_config_error(given) -> None:
    cfg = TrainConfig(class_weights=given)
    message = rf"^train\.class_weights: {len(given)} weights given for 10 classes;"
    with pytest.raises(ConfigError, match=message) as caught:
        check_loss(cfg, num_classes=10)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=message):
        build_criterion(cfg, num_classes=10, train_labels=torch.arange(10))


@pytest.mark.parametrize("given", [[1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 1.0]])
def test_negative_zero_or_nan_weights_are_a_config_error(given) -> None:
    with pytest.raises(ConfigError, match=r"^train\.class_weights: weights must be finite"):
        check_loss(TrainConfig(class_weights=given), num_classes=3)


def test_balanced_weights_with_a_class_missing_from_training_are_a_config_error() -> None:
    labels = torch.tensor([0, 0, 1, 3, 3])  # no class 2
    cfg = TrainConfig(class_weights="balanced")
    check_loss(cfg, num_classes=4)  # without the labels there is nothing to check
    message = r"^train\.class_weights: balanced needs every class .* class 2 of 4 has no"
    with pytest.raises(ConfigError, match=message):
        check_loss(cfg, num_classes=4, train_labels=labels)
    with pytest.raises(ConfigError, match=message):
        build_criterion(cfg, num_classes=4, train_labels=labels)
