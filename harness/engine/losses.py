"""Training losses, built from ``train``'s config slice.

``build_criterion`` returns a module ``criterion(logits, labels) -> loss`` with ``train``'s
label smoothing, class weights and loss (cross-entropy or focal) built in.  Mixup and CutMix
need no special form: their loss is ``lam·criterion(logits, a) + (1 - lam)·criterion(logits,
b)`` (``harness.engine.mixing``).

Both losses reduce the way ``F.cross_entropy(weight=w, label_smoothing=ε)`` does, so that focal
with ``γ = 0`` *is* that cross-entropy: per example ``Σ_c q_c·w_c·ℓ_c`` with ``q`` the smoothed
one-hot target, ``(1 - ε)·onehot + ε/C``, summed over the batch and divided by ``Σ_i w_{y_i}``
(the weights of the true classes), the weighted mean of PyTorch's ``weight=``.

``check_loss`` rejects class weights that cannot fit the dataset, before a trial starts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config import TrainConfig
from harness.errors import ConfigError


class CrossEntropy(nn.Module):
    """``F.cross_entropy`` with label smoothing and optional per-class weights."""

    def __init__(self, *, label_smoothing: float = 0.0, weight: Tensor | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        # A buffer, so that ``.to(device)`` moves it with the module.
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, weight=self.weight,
                               label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017), multi-class: ``-Σ_c q_c·w_c·(1 - p_c)^γ·log p_c``.

    ``(1 - p_c)^γ`` shrinks the loss of classes the model already gets right, so confident
    (easy) examples count less and the hard ones steer training; ``γ = 0`` is cross-entropy.
    ``q`` is the label-smoothed target, so with smoothing the focal factor of the other
    classes applies to their small share too.  Reduced as ``F.cross_entropy(weight=w)``.
    """

    def __init__(self, *, gamma: float, label_smoothing: float = 0.0,
                 weight: Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        # In fp32 whatever the forward pass ran in: (1 - p)^γ of a bf16 p is coarse near 1.
        log_p = F.log_softmax(logits.float(), dim=1)
        # 1 - p as -expm1(log p) (exact near p = 1), kept off 0: d(1-p)^γ/dp is infinite at
        # p = 1 for γ < 1, and that times log 1 = 0 would be a NaN gradient.
        rest = torch.expm1(log_p).neg().clamp_min(torch.finfo(torch.float32).tiny)
        terms = -log_p * rest.pow(self.gamma)  # N×C
        if self.weight is not None:
            terms = terms * self.weight
        true = terms.gather(1, labels.unsqueeze(1)).squeeze(1)
        smoothing = self.label_smoothing
        per_example = (1 - smoothing) * true
        if smoothing > 0:
            per_example = per_example + smoothing / logits.shape[1] * terms.sum(dim=1)
        if self.weight is None:
            return per_example.mean()
        return per_example.sum() / self.weight[labels].sum()


def balanced_class_weights(labels: Tensor, *, num_classes: int) -> Tensor:
    """``n / (num_classes · count(c))`` per class, as scikit-learn's ``compute_class_weight``.

    Every class must have training examples: an absent class would get an infinite weight.
    """
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ConfigError(
            f"train.class_weights: balanced needs every class in the training split, but class"
            f" {missing[0]} of {num_classes} has no training examples"
            f"{f' ({len(missing)} classes have none)' if len(missing) > 1 else ''};"
            " give one weight per class instead, or none"
        )
    return (len(labels) / (num_classes * counts.double())).float()


def check_loss(cfg: TrainConfig, *, num_classes: int, train_labels: Tensor | None = None) -> None:
    """Raise ``ConfigError`` if ``cfg``'s class weights cannot apply to ``num_classes`` classes.

    With ``train_labels``, ``balanced`` is checked too (every class must occur in them).
    """
    weights = cfg.class_weights
    if isinstance(weights, list):
        if len(weights) != num_classes:
            raise ConfigError(
                f"train.class_weights: {len(weights)} weights given for {num_classes} classes;"
                f" give one per class, or none or balanced"
            )
        if any(not (w >= 0 and w < float("inf")) for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"train.class_weights: weights must be finite and >= 0, not all 0 (got {weights})"
            )
    elif weights == "balanced" and train_labels is not None:
        balanced_class_weights(train_labels, num_classes=num_classes)


def class_weights(cfg: TrainConfig, *, num_classes: int, train_labels: Tensor) -> Tensor | None:
    """The per-class weights ``cfg.class_weights`` asks for, or ``None`` for unweighted."""
    check_loss(cfg, num_classes=num_classes)
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        return balanced_class_weights(train_labels, num_classes=num_classes)
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def build_criterion(cfg: TrainConfig, *, num_classes: int, train_labels: Tensor) -> nn.Module:
    """The loss ``cfg`` names, for ``num_classes`` classes (``train_labels`` for class weights)."""
    weight = class_weights(cfg, num_classes=num_classes, train_labels=train_labels)
    if cfg.loss == "focal":
        return FocalLoss(gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing,
                         weight=weight)
    return CrossEntropy(label_smoothing=cfg.label_smoothing, weight=weight)
