"""Augmentation presets, applied a whole batch at a time on the training device.

Owns the preset registry (``PRESETS``: ``none``, ``standard``, ``strong``), the batched
operations they are made of, and normalisation.  Every operation works on an ``N×C×H×W``
batch with tensor ops only (no PIL, no per-sample Python), draws every random number from the
``torch.Generator`` it is given (so a seed fixes the augmentation), and keeps images either as
uint8 (0..255) or as float in [0, 1]; ``normalize`` turns either into the model's float input.

Crop and flip index uint8 directly; it is cheaper to move and gather uint8 than float, so only
rotation and colour jitter pay for the conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import AugmentConfig
from harness.data.datasets import DatasetInfo
from harness.registry import Registry

BatchOp = Callable[..., Tensor]  # op(images, *, generator) -> images

# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# Hue rotates the chroma plane (I, Q) of YIQ about the luma axis: a linear stand-in for
# torchvision's HSV hue shift that needs no per-pixel branching.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _uniform(n: int, low: float, high: float, *, generator: torch.Generator,
             device: torch.device) -> Tensor:
    # Drawn where the generator lives (often the CPU), then moved to the batch.
    draw = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * draw).to(device)


def _unit_float(images: Tensor) -> Tensor:
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


def normalize(images: Tensor, info: DatasetInfo) -> Tensor:
    """float32 ``(x - mean) / std`` per channel; uint8 input is 0..255, float input 0..1."""
    x = _unit_float(images)
    mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def crop_padding(info: DatasetInfo) -> int:
    """4 px for 32 px images, 3 for 28, 1 for 8: the usual CIFAR translation, scaled."""
    return max(1, info.image_size[0] // 8)


def random_crop(images: Tensor, *, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad by ``padding`` and crop back, each image at its own uniform offset."""
    n, _, h, w = images.shape
    span = 2 * padding + 1
    dev = images.device
    dy = torch.randint(span, (n,), generator=generator, device=generator.device).to(dev)
    dx = torch.randint(span, (n,), generator=generator, device=generator.device).to(dev)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # N×H×1
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # N×1×W
    batch = torch.arange(n, device=dev)[:, None, None]
    # Advanced indices around a slice put the indexed dims first: N×H×W×C.
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(images: Tensor, *, generator: torch.Generator, rate: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``rate``."""
    flip = torch.rand(len(images), generator=generator, device=generator.device) < rate
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


def random_rotation(images: Tensor, *, degrees: float, generator: torch.Generator) -> Tensor:
    """Rotate each image about its centre by a uniform angle in ±``degrees``, zero fill."""
    x = _unit_float(images)
    angle = _uniform(len(x), -degrees, degrees, generator=generator, device=x.device)
    cos, sin = torch.cos(angle * math.pi / 180), torch.sin(angle * math.pi / 180)
    zero = torch.zeros_like(cos)
    # Normalised coordinates make this a true rotation only for square images, which all are.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
    return torch.einsum("c,nchw->nhw", luma, x).unsqueeze(1)


def _rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([
        torch.stack([one, zero, zero], 1),
        torch.stack([zero, cos, -sin], 1),
        torch.stack([zero, sin, cos], 1),
    ], 1)
    to_yiq = _RGB_TO_YIQ.to(device=x.device, dtype=x.dtype)
    from_yiq = _YIQ_TO_RGB.to(device=x.device, dtype=x.dtype)
    return torch.einsum("nij,njhw->nihw", from_yiq @ rotation @ to_yiq, x)


def color_jitter(images: Tensor, *, brightness: float, contrast: float, saturation: float,
                 hue: float, generator: torch.Generator) -> Tensor:
    """torchvision's ColorJitter per image, in a fixed order; saturation and hue need RGB.

    Factors are uniform in ``1 ± brightness`` etc.; the hue shift is uniform in ``± hue`` of a
    full turn.  Results are clamped to [0, 1] after each step, as torchvision does.
    """
    x = _unit_float(images)
    n = len(x)

    def factor(spread: float) -> Tensor:
        return _uniform(n, 1 - spread, 1 + spread, generator=generator,
                        device=x.device).view(n, 1, 1, 1)

    x = (x * factor(brightness)).clamp(0, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * factor(contrast)).clamp(0, 1)
    if x.shape[1] == 3:
        gray = _gray(x)
        x = (gray + (x - gray) * factor(saturation)).clamp(0, 1)
        turn = _uniform(n, -hue, hue, generator=generator, device=x.device)
        x = _rotate_hue(x, turn * 2 * math.pi).clamp(0, 1)
    return x


class BatchTransform:
    """A preset bound to one dataset: its operations in order, then normalisation."""

    def __init__(self, ops: Sequence[BatchOp], info: DatasetInfo) -> None:
        self.ops = list(ops)
        self.info = info

    def __call__(self, images: Tensor, *, generator: torch.Generator) -> Tensor:
        for op in self.ops:
            images = op(images, generator=generator)
        return normalize(images, self.info)


PRESETS: Registry[Callable[[DatasetInfo], list[BatchOp]]] = Registry("augmentation preset")


@PRESETS.register("none")
def _none(info: DatasetInfo) -> list[BatchOp]:
    return []


@PRESETS.register("standard")
def _standard(info: DatasetInfo) -> list[BatchOp]:
    # A mirrored digit is another symbol (or none), so flips only where the label survives them.
    flip = [random_hflip] if info.hflip else []
    return [partial(random_crop, padding=crop_padding(info)), *flip]


@PRESETS.register("strong")
def _strong(info: DatasetInfo) -> list[BatchOp]:
    # Seed 002's RandomRotation(10) + ColorJitter(0.2, 0.2, 0.2, 0.2) on top of standard.
    return [
        *_standard(info),
        partial(random_rotation, degrees=10.0),
        partial(color_jitter, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2),
    ]


def build_augment(cfg: AugmentConfig, info: DatasetInfo) -> BatchTransform:
    """The training-time transform for ``cfg.preset`` on this dataset."""
    return BatchTransform(PRESETS.get(cfg.preset)(info), info)
