"""Mixup and CutMix: a batch mixed with a shuffled copy of itself, and the loss to match.

Owns ``Mixer`` (built by ``build_mixer`` from ``augment``'s slice), the ``MixedBatch`` it
returns, and the loss and hit count of a mixed batch.  Mixup (Zhang et al., 2018) blends
whole images, ``lam·x + (1 - lam)·x[perm]``; CutMix (Yun et al., 2019) pastes a box of
``x[perm]`` into ``x``, its centre uniform over the image and its sides ``sqrt(1 - lam)`` of
the image's, clipped at the border, with ``lam`` then corrected to the area actually kept.
``lam`` is Beta(alpha, alpha) in both; the loss is ``lam·criterion(logits, labels_a) +
(1 - lam)·criterion(logits, labels_b)``.

Everything is drawn on the device from the loader's generator and nothing is read back: which
of the two a batch gets, and whether it is mixed at all (``mix_prob``), are tensors that choose
a per-pixel weight, not ``if``s on the host, so a step never waits for the device.  Both
methods are one blend, ``x·m + x[perm]·(1 - m)``: ``m`` is ``lam`` everywhere for mixup, 0 in
the box and 1 outside it for CutMix, and 1 everywhere for a batch left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.config import AugmentConfig
from harness.engine.metrics import predictions


@dataclass(frozen=True)
class MixedBatch:
    """Mixed images and what the loss needs: the two label sets and ``lam``, a 0-d float
    tensor on the images' device (1 for a batch that was not mixed)."""

    images: Tensor
    labels_a: Tensor
    labels_b: Tensor
    lam: Tensor


def sample_beta(alpha: float, *, generator: torch.Generator) -> Tensor:
    """One draw of Beta(alpha, alpha), a 0-d tensor on the generator's device.

    As two Gamma(alpha) draws, ``X / (X + Y)``: torch.distributions takes no generator.
    """
    shape = torch.full((2,), float(alpha), device=generator.device)
    gamma = torch._standard_gamma(shape, generator=generator)
    # Kept off 0/0: for a small alpha both draws can underflow.
    return gamma[0] / gamma.sum().clamp_min(torch.finfo(gamma.dtype).tiny)


def cutmix_box(lam: Tensor, *, height: int, width: int, generator: torch.Generator) -> Tensor:
    """An ``H×W`` bool mask, true in a box of sides ``sqrt(1 - lam)`` of the image's.

    As the CutMix paper's ``rand_bbox``: the centre uniform over the pixels, the sides
    truncated to whole pixels, the box clipped at the border (so it may be smaller).
    """
    device = generator.device
    ratio = (1 - lam).sqrt()
    cut_h, cut_w = (height * ratio).floor(), (width * ratio).floor()
    cy = torch.randint(height, (), generator=generator, device=device)
    cx = torch.randint(width, (), generator=generator, device=device)
    top = (cy - torch.div(cut_h, 2, rounding_mode="floor")).clamp(0, height)
    bottom = (cy + torch.div(cut_h, 2, rounding_mode="floor")).clamp(0, height)
    left = (cx - torch.div(cut_w, 2, rounding_mode="floor")).clamp(0, width)
    right = (cx + torch.div(cut_w, 2, rounding_mode="floor")).clamp(0, width)
    rows = torch.arange(height, device=device).view(height, 1)
    cols = torch.arange(width, device=device).view(1, width)
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


class Mixer:
    """Mixup and/or CutMix on ``mix_rate`` of the batches; with both on, even odds per batch.

    ``mixup_alpha`` and ``cutmix_alpha`` are Beta(alpha, alpha) concentrations, 0 for off.
    """

    def __init__(self, *, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 mix_rate: float = 1.0) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("a Mixer needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.mix_rate = mix_rate

    def __call__(self, images: Tensor, labels: Tensor, *,
                 generator: torch.Generator) -> MixedBatch:
        n, _, height, width = images.shape
        device = generator.device
        perm = torch.randperm(n, generator=generator, device=device)
        mixed = torch.rand((), generator=generator, device=device) < self.mix_rate
        one = torch.ones((), device=device)
        # The per-pixel weight of each image's own content: lam everywhere for mixup; for
        # CutMix 0 in its box and 1 elsewhere, and lam the share of the image that stays.
        weight = lam = one
        if self.mixup_alpha > 0:
            weight = lam = sample_beta(self.mixup_alpha, generator=generator)
        if self.cutmix_alpha > 0:
            box = cutmix_box(sample_beta(self.cutmix_alpha, generator=generator),
                             height=height, width=width, generator=generator)
            cut_weight = (~box).float()
            cut_lam = cut_weight.mean()
            if self.mixup_alpha > 0:
                use_cutmix = torch.rand((), generator=generator, device=device) < 0.5
                weight = torch.where(use_cutmix, cut_weight, weight)
                lam = torch.where(use_cutmix, cut_lam, lam)
            else:
                weight, lam = cut_weight, cut_lam
        weight = torch.where(mixed, weight, one).to(images.device, images.dtype)
        lam = torch.where(mixed, lam, one).to(images.device)
        perm = perm.to(images.device)
        # x·m + x[perm]·(1 - m): exactly x where m is 1 (an unmixed batch, outside the box).
        out = torch.addcmul(images * weight, images.index_select(0, perm), 1 - weight)
        return MixedBatch(images=out, labels_a=labels, labels_b=labels.index_select(0, perm),
                          lam=lam)


def build_mixer(cfg: AugmentConfig) -> Mixer | None:
    """The mixer ``cfg`` asks for, or ``None`` (neither method on, or ``mix_prob`` 0)."""
    if (cfg.mixup <= 0 and cfg.cutmix <= 0) or cfg.mix_prob <= 0:
        return None
    return Mixer(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, mix_rate=cfg.mix_prob)


def mixed_loss(criterion: nn.Module, logits: Tensor, batch: MixedBatch) -> Tensor:
    """``lam·criterion(logits, labels_a) + (1 - lam)·criterion(logits, labels_b)``."""
    lam = batch.lam
    return lam * criterion(logits, batch.labels_a) + (1 - lam) * criterion(logits, batch.labels_b)


def mixed_hits(logits: Tensor, batch: MixedBatch) -> Tensor:
    """``lam·hits(labels_a) + (1 - lam)·hits(labels_b)``, a 0-d float tensor."""
    predicted = predictions(logits)
    hits_a = (predicted == batch.labels_a).sum()
    hits_b = (predicted == batch.labels_b).sum()
    return batch.lam * hits_a + (1 - batch.lam) * hits_b
