"""Training losses, built from ``train``'s config slice.

``build_criterion`` returns a module ``criterion(logits, labels) -> loss``; the label smoothing
of ``train.label_smoothing`` is part of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config import TrainConfig


class CrossEntropy(nn.Module):
    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


def build_criterion(cfg: TrainConfig, *, num_classes: int, train_labels: Tensor) -> nn.Module:
    """The loss ``cfg`` names, for ``num_classes`` classes (``train_labels`` for class weights)."""
    return CrossEntropy(label_smoothing=cfg.label_smoothing)
