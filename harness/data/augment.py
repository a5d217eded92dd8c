"""Augmentation presets, applied a whole batch at a time on the training device.

Owns the preset registry (``PRESETS``), the batched operations they are made of,
normalisation, and ``build_augment``, which puts a policy (``policies``: AutoAugment,
RandAugment, TrivialAugment) before the preset and cutout after it.

A preset name means one geometry and one colour change on both paths, because both run these
operations: the in-memory path on its batches, the image-folder worker path on each fitted
image as a batch of one (``folders.ImageTransform``).

- ``none``: nothing;
- ``standard``: a random crop of the zero-padded image (padding 1/8 of the side) and a
  horizontal flip where the label survives it (document 002's CIFAR recipe);
- ``strong``: ``standard``, a rotation within ±10° and colour jitter (0.2, 0.2, 0.2, 0.2);
- ``resized_crop``: a random crop of 8-100 % of the area at an aspect ratio within 3/4..4/3,
  resized back to the image's size, and the flip (document 002's ImageNet recipe);
- ``resized_crop_strong``: ``resized_crop``, the rotation and the colour jitter.

  Every operation works on an ``N×C×H×W`` batch with tensor ops only (no PIL, no per-sample
Python), draws every random number from the ``torch.Generator`` it is given (so a seed fixes
the augmentation), and keeps images either as uint8 (0..255) or as float in [0, 1];
``normalize`` turns either into the model's float input.

Each operation does what its torchvision namesake does to one image, to every image at once:
``RandomCrop(padding=p)`` then ``RandomHorizontalFlip`` then ``RandomRotation`` (nearest, the
torchvision default) move pixels without changing them, so ``random_crop_flip_rotate`` does all
three as one gather on uint8: it is cheaper to move and gather uint8 than float, and one gather
costs what one of the three would.  Only colour jitter pays for the conversion to float.

Constants are made on the device once (``_constants``, ``BatchTransform``'s statistics):
building a small tensor on an accelerator copies it from the host, and that copy waits for
every kernel already queued.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.config import AugmentConfig
from harness.data.info import DatasetInfo
from harness.data.policies import build_policy
from harness.registry import Registry

BatchOp = Callable[..., Tensor]  # op(images, *, generator) -> images

# Luma weights as torchvision's rgb_to_grayscale (ITU-R 601, with its 0.2989 for red).
_LUMA = (0.2989, 0.587, 0.114)
# Hue rotates the chroma plane (I, Q) of YIQ about the luma axis: a linear stand-in for
# torchvision's HSV hue shift that needs no per-pixel branching.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@functools.lru_cache(maxsize=None)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Luma weights, RGB→YIQ and YIQ→RGB on ``device``, made once per device and dtype."""
    return (torch.tensor(_LUMA, dtype=dtype, device=device), _RGB_TO_YIQ.to(device, dtype),
            _YIQ_TO_RGB.to(device, dtype))


def _uniform(n: int, low: float, high: float, *, generator: torch.Generator,
             device: torch.device) -> Tensor:
    # Drawn where the generator lives (the loader keeps it on the training device), then
    # moved to the batch if that is elsewhere.
    draw = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * draw).to(device)


def _randint(n: int, high: int, *, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(device)


def _unit_float(images: Tensor) -> Tensor:
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


def _unit_float_copy(images: Tensor) -> Tensor:
    """Like ``_unit_float``, but always a new tensor, so in-place ops spare the caller's."""
    if images.dtype == torch.uint8:
        return images.float().mul_(1 / 255)
    return images.to(torch.float32, copy=True)


def _normalize(images: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
    # In place on one float buffer: a fresh large buffer per step costs page faults on the CPU.
    mean, std = stats
    if images.dtype == torch.uint8:
        return images.float().div_(255).sub_(mean).div_(std)
    return images.float().sub(mean).div_(std)


def _stats(info: DatasetInfo, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std, shaped 1×C×1×1, on ``device``."""
    mean = torch.tensor(info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return mean, std


def normalize(images: Tensor, info: DatasetInfo) -> Tensor:
    """float32 ``(x - mean) / std`` per channel; uint8 input is 0..255, float input 0..1."""
    return _normalize(images, _stats(info, images.device))


def crop_padding(info: DatasetInfo) -> int:
    """4 px for 32 px images, 3 for 28, 1 for 8: the usual CIFAR translation, scaled."""
    return side_padding(info.image_size[0])


def side_padding(side: int) -> int:
    """``crop_padding`` of square images ``side`` pixels wide."""
    return max(1, side // 8)


def center_crop(images: Tensor, *, size: int) -> Tensor:
    """The centre ``size``×``size`` of each image (a view; the images themselves when they are
    that size), at torchvision's ``center_crop`` offsets: ``round((side - size) / 2)``."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top:top + size, left:left + size]


def crop_flip_rotate(images: Tensor, *, padding: int, top: Tensor, left: Tensor,
                     flip: Tensor | None = None, degrees: Tensor | None = None) -> Tensor:
    """Per image: crop, then mirror, then turn, with the given parameters (one per image).

    As torchvision's ``crop(pad(x, padding), top, left, H, W)``, then ``hflip`` where ``flip``,
    then ``rotate(degrees, NEAREST)`` (counter-clockwise, about the centre, zero fill).  All
    three only move pixels, so each output pixel's source is computed (the turn undone, then
    the mirror, then the crop offset) and the batch is gathered once, in its own dtype.
    Sources outside the turned frame point at a padding pixel, which is always zero.
    """
    n, c, h, w = images.shape
    dev = images.device
    # One pixel of border at least, for the zero that turned-out sources point at.
    border = max(padding, 1) if degrees is not None else padding
    # Coordinates are float32 until the end (exact for integers below 2^24): on the CPU,
    # int64 arithmetic on N×H×W maps costs several times float32's.
    shift = float(border - padding)
    dy = (top.float() + shift).view(n, 1, 1)
    dx = (left.float() + shift).view(n, 1, 1)
    rows = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w)
    outside = None
    if degrees is not None:
        angle = degrees.float() * (math.pi / 180)
        cos, sin = angle.cos().view(n, 1, 1), angle.sin().view(n, 1, 1)
        # Pixel centres about the image centre (y down), turned back by the angle; the source
        # is the pixel whose cell holds the point.
        u, v = cols + (0.5 - w / 2), rows + (0.5 - h / 2)
        cols = (cos * u + w / 2).sub(sin * v).floor_()  # N×H×W
        rows = (sin * u + h / 2).add(cos * v).floor_()
        outside = (cols < 0) | (cols >= w) | (rows < 0) | (rows >= h)
    if flip is not None:
        # x -> w - 1 - x where flipped, as one multiply-add: x·(1 - 2f) + f·(w - 1).
        f = flip.view(n, 1, 1).float()
        cols = torch.addcmul(f * (w - 1) + dx, cols, 1 - 2 * f)
    else:
        cols = cols + dx
    index = (rows + dy) * (w + 2 * border) + cols  # into the padded image, N×H×W
    if outside is not None:
        index.masked_fill_(outside, 0)  # (0, 0) of the padded image is padding
    padded = F.pad(images, (border, border, border, border)) if border else images
    flat = padded.reshape(n, c, -1)
    index = index.long().view(n, 1, h * w).expand(n, c, h * w)
    return flat.gather(2, index).view(n, c, h, w)


def random_crop_flip_rotate(images: Tensor, *, padding: int, flip_rate: float, degrees: float,
                            generator: torch.Generator) -> Tensor:
    """``RandomCrop(padding)``, ``RandomHorizontalFlip(flip_rate)``, ``RandomRotation(degrees)``.

    Per image: a crop offset uniform over the ``2·padding + 1`` positions in each direction
    (zero padding), a mirror with probability ``flip_rate``, and a turn by a uniform angle in
    ±``degrees`` with nearest-neighbour sampling, all done by one ``crop_flip_rotate``.
    """
    n, dev = len(images), images.device
    top = _randint(n, 2 * padding + 1, generator=generator, device=dev)
    left = _randint(n, 2 * padding + 1, generator=generator, device=dev)
    flip = angle = None
    if flip_rate > 0:
        flip = _uniform(n, 0.0, 1.0, generator=generator, device=dev) < flip_rate
    if degrees > 0:
        angle = _uniform(n, -degrees, degrees, generator=generator, device=dev)
    return crop_flip_rotate(images, padding=padding, top=top, left=left, flip=flip,
                            degrees=angle)


# torchvision's RandomResizedCrop defaults: 8-100 % of the area, aspect ratio 3/4..4/3.
RESIZED_CROP_SCALE = (0.08, 1.0)
RESIZED_CROP_RATIO = (3 / 4, 4 / 3)
_RESIZED_CROP_ATTEMPTS = 10


def resized_crop(images: Tensor, *, top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                 flip: Tensor | None = None, size: int | None = None) -> Tensor:
    """Per image, the box ``top, left, height, width`` (pixels) resized to ``size``×``size``
    (by default the image's size), mirrored where ``flip``: torchvision's ``resized_crop``
    (bilinear, no antialiasing, which a box no larger than the output never needs; a box up
    to ``1 / data.crop_pct`` larger is shrunk by at most that) and then ``hflip``, as one
    ``grid_sample``.

    Float in [0, 1] out, as every bilinear operation here: rounding back to uint8 would only
    lose precision before normalisation.
    """
    x = _unit_float(images)
    n, _, h, w = x.shape
    out_h, out_w = (h, w) if size is None else (size, size)

    def source(start: Tensor, extent: Tensor, count: int, side: int) -> Tensor:
        # Output pixel k samples start + (k + 0.5)·extent/count - 0.5 (half-pixel centres, as
        # a resize does), clamped to the box as a resize of the cut-out box clamps to its
        # edges; then in grid_sample's [-1, 1] units of the input's ``side``.
        k = torch.arange(count, device=x.device, dtype=torch.float32).view(1, count) + 0.5
        start, extent = start.float().view(n, 1), extent.float().view(n, 1)
        pixel = (start + k * (extent / count) - 0.5).clamp_(min=start).minimum(start + extent - 1)
        return (2 * pixel + 1) / side - 1

    cols, rows = source(left, width, out_w, w), source(top, height, out_h, h)  # N×W', N×H'
    if flip is not None:
        cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    grid = torch.stack([cols.view(n, 1, out_w).expand(n, out_h, out_w),
                        rows.view(n, out_h, 1).expand(n, out_h, out_w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resized_crop_boxes(n: int, height: int, width: int, *, generator: torch.Generator,
                       device: torch.device, scale: tuple[float, float] = RESIZED_CROP_SCALE,
                       ratio: tuple[float, float] = RESIZED_CROP_RATIO
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``n`` boxes (top, left, height, width) as torchvision's ``RandomResizedCrop`` draws them.

    Per image, up to ten tries of an area uniform in ``scale`` of the image's and an aspect
    ratio log-uniform in ``ratio``; the first box that fits is placed uniformly in the image.
    When none fits, the largest centred box whose ratio is within ``ratio``.  The ten tries
    are drawn for every image at once.
    """
    tries = (n, _RESIZED_CROP_ATTEMPTS)
    draw = torch.rand((2, *tries), generator=generator, device=generator.device).to(device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * draw[0])
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(low + (high - low) * draw[1])
    box_w = torch.sqrt(area * aspect).round()
    box_h = torch.sqrt(area / aspect).round()
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # the first try that fits (0 if none)
    box_w, box_h = box_w.gather(1, first).squeeze(1), box_h.gather(1, first).squeeze(1)
    # Fallback, as torchvision's: the whole image, cut to the nearest ratio within bounds.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif in_ratio > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    found = fits.any(dim=1)
    box_h = torch.where(found, box_h, float(fallback[0]))
    box_w = torch.where(found, box_w, float(fallback[1]))
    # Offsets uniform over the placements that fit: floor(u·(free + 1)), at most free.
    place = torch.rand((2, n), generator=generator, device=generator.device).to(device)
    free_y, free_x = height - box_h, width - box_w
    top = torch.minimum((place[0] * (free_y + 1)).floor(), free_y)
    left = torch.minimum((place[1] * (free_x + 1)).floor(), free_x)
    top = torch.where(found, top, (free_y / 2).floor())
    left = torch.where(found, left, (free_x / 2).floor())
    return top, left, box_h, box_w


def random_resized_crop(images: Tensor, *, flip_rate: float, generator: torch.Generator,
                        scale: tuple[float, float] = RESIZED_CROP_SCALE,
                        ratio: tuple[float, float] = RESIZED_CROP_RATIO,
                        size: int | None = None) -> Tensor:
    """``RandomResizedCrop(size, scale, ratio)`` (by default the images' size) then
    ``RandomHorizontalFlip(flip_rate)``, every image with its own box and coin."""
    n, _, h, w = images.shape
    top, left, height, width = resized_crop_boxes(n, h, w, generator=generator,
                                                  device=images.device, scale=scale, ratio=ratio)
    flip = None
    if flip_rate > 0:
        flip = _uniform(n, 0.0, 1.0, generator=generator, device=images.device) < flip_rate
    return resized_crop(images, top=top, left=left, height=height, width=width, flip=flip,
                        size=size)


def cutout(images: Tensor, *, size: int, generator: torch.Generator,
           fill: float | Sequence[float] = 0.0) -> Tensor:
    """Cutout (DeVries & Taylor, 2017): blank one ``size``×``size`` square per image.

    The square's centre is uniform over the pixels and the square is clipped at the border,
    as in the paper's code, so on average less than ``size``² pixels go.  ``fill`` is in
    [0, 1] units, one value or one per channel; ``fill=info.mean`` blanks to zero after
    normalisation, which is what the paper did (it cut normalised images).  uint8 images stay
    uint8 when every fill is a whole step of 1/255; otherwise they become float in [0, 1], so
    that the fill is exact (a mean rounded to uint8 would not be zero after normalisation).
    """
    n, c, h, w = images.shape
    dev = images.device
    cy = _randint(n, h, generator=generator, device=dev).view(n, 1, 1, 1)
    cx = _randint(n, w, generator=generator, device=dev).view(n, 1, 1, 1)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=dev).view(1, 1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, 1, w)
    square = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    values = [float(fill)] * c if isinstance(fill, (int, float)) else [float(f) for f in fill]
    if len(values) != c:
        raise ValueError(f"cutout fill has {len(values)} values for {c} channels")
    if images.dtype == torch.uint8:
        if all(float(round(255 * v)) == 255 * v for v in values):
            values = [round(255 * v) for v in values]
        else:
            images = _unit_float(images)
    if len(set(values)) == 1:
        return images.masked_fill(square, values[0])
    # Channel by channel with Python scalars: a fill tensor would be a host-to-device copy.
    out = images.clone()
    for channel, value in enumerate(values):
        out[:, channel : channel + 1].masked_fill_(square, value)
    return out


def _gray(x: Tensor) -> Tensor:
    """N×1×H×W luma of float RGB (a matrix product: the fastest weighted channel sum)."""
    if x.shape[1] == 1:
        return x
    luma = _constants(x.device, x.dtype)[0]
    n, _, h, w = x.shape
    return torch.matmul(luma, x.reshape(n, 3, h * w)).view(n, 1, h, w)


def _rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack([
        torch.stack([one, zero, zero], 1),
        torch.stack([zero, cos, -sin], 1),
        torch.stack([zero, sin, cos], 1),
    ], 1)
    _, to_yiq, from_yiq = _constants(x.device, x.dtype)
    n, c, h, w = x.shape
    return torch.bmm(from_yiq @ rotation @ to_yiq, x.reshape(n, c, h * w)).view(n, c, h, w)


def adjust_colors(images: Tensor, *, brightness: Tensor, contrast: Tensor,
                  saturation: Tensor | None = None, hue: Tensor | None = None) -> Tensor:
    """Per image, torchvision's ``adjust_brightness``, ``_contrast`` and ``_saturation``, then hue.

    Factors are one per image; ``hue`` is a fraction of a full turn of the YIQ chroma plane
    (torchvision shifts HSV hue instead).  Saturation and hue need RGB and are skipped for one
    channel.  Clamped to [0, 1] after each step, as torchvision
    does.  The steps work in place on one float copy: each is a pass over the batch, and a
    fresh tensor for every intermediate costs as much again in allocation.
    """
    x = _unit_float_copy(images)
    n = len(x)
    x.mul_(brightness.view(n, 1, 1, 1)).clamp_(0, 1)
    # blend(x, m, f) = f·x + (1 - f)·m, as torchvision's _blend.
    f = contrast.view(n, 1, 1, 1)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)  # before x changes in place
    x.mul_(f).add_((1 - f) * mean).clamp_(0, 1)
    if x.shape[1] == 3 and saturation is not None:
        f = saturation.view(n, 1, 1, 1)
        gray = _gray(x)  # before x changes in place
        x.mul_(f).add_((1 - f) * gray).clamp_(0, 1)
    if x.shape[1] == 3 and hue is not None:
        x = _rotate_hue(x, hue * 2 * math.pi).clamp_(0, 1)
    return x


def color_jitter(images: Tensor, *, brightness: float, contrast: float, saturation: float,
                 hue: float, generator: torch.Generator) -> Tensor:
    """torchvision's ColorJitter per image, in a fixed order; saturation and hue need RGB.

    Factors are uniform in ``1 ± brightness`` etc.; the hue shift is uniform in ``± hue`` of a
    full turn.  torchvision draws a random order of the four per image; this keeps
    brightness, contrast, saturation, hue.
    """
    n, dev = len(images), images.device

    def factor(spread: float) -> Tensor:
        return _uniform(n, 1 - spread, 1 + spread, generator=generator, device=dev)

    b, c = factor(brightness), factor(contrast)
    s = turn = None
    if images.shape[1] == 3:
        s = factor(saturation)
        turn = _uniform(n, -hue, hue, generator=generator, device=dev)
    return adjust_colors(images, brightness=b, contrast=c, saturation=s, hue=turn)


class BatchTransform:
    """A preset bound to one dataset: its operations in order, then normalisation."""

    def __init__(self, ops: Sequence[BatchOp], info: DatasetInfo) -> None:
        self.ops = list(ops)
        self.info = info
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, images: Tensor, *, generator: torch.Generator) -> Tensor:
        for op in self.ops:
            images = op(images, generator=generator)
        if images.device not in self._stats:
            self._stats[images.device] = _stats(self.info, images.device)
        return _normalize(images, self._stats[images.device])


# Document 002's RandomRotation(10) and ColorJitter(0.2, 0.2, 0.2, 0.2), the strong presets'.
STRONG_DEGREES = 10.0
STRONG_JITTER = 0.2


@dataclass(frozen=True)
class Preset:
    """One augmentation preset: ``batch(info)`` gives its batched operations, in order."""

    batch: Callable[[DatasetInfo], list[BatchOp]]


PRESETS: Registry[Preset] = Registry("augmentation preset")


def _flip_rate(hflip: bool) -> float:
    # A mirrored digit is another symbol (or none), so flips only where the label survives them.
    return 0.5 if hflip else 0.0


def _pad_crop(info: DatasetInfo, *, degrees: float) -> BatchOp:
    return partial(random_crop_flip_rotate, padding=crop_padding(info),
                   flip_rate=_flip_rate(info.hflip), degrees=degrees)


def _jitter() -> BatchOp:
    return partial(color_jitter, brightness=STRONG_JITTER, contrast=STRONG_JITTER,
                   saturation=STRONG_JITTER, hue=STRONG_JITTER)


def _turn() -> BatchOp:
    # Nearest, about the centre, zero fill: torchvision's RandomRotation, without a crop.
    return partial(random_crop_flip_rotate, padding=0, flip_rate=0.0, degrees=STRONG_DEGREES)


def _resized_crop(info: DatasetInfo) -> BatchOp:
    # Boxes from the whole stored square, resized to the model's input size.
    return partial(random_resized_crop, flip_rate=_flip_rate(info.hflip),
                   size=info.image_size[0])


def _keep_centre(images: Tensor, *, size: int, generator: torch.Generator) -> Tensor:
    return center_crop(images, size=size)


def _centre(info: DatasetInfo) -> BatchOp:
    """The centre ``info.image_size`` of the stored images: what evaluation sees, and where the
    presets without a resized crop start (a no-op unless ``data.crop_pct`` < 1)."""
    return partial(_keep_centre, size=info.image_size[0])


def evaluation(info: DatasetInfo) -> BatchTransform:
    """Evaluation's transform, on both paths: the centre crop, normalised."""
    return BatchTransform([_centre(info)], info)


PRESETS.add("none", Preset(
    batch=lambda info: [_centre(info)]))
# Document 002's RandomCrop(32, padding=4) + RandomHorizontalFlip().
PRESETS.add("standard", Preset(
    batch=lambda info: [_centre(info), _pad_crop(info, degrees=0.0)]))
PRESETS.add("strong", Preset(
    batch=lambda info: [_centre(info), _pad_crop(info, degrees=STRONG_DEGREES), _jitter()]))
# Document 002's ImageNet recipe: RandomResizedCrop(224) + RandomHorizontalFlip().
PRESETS.add("resized_crop", Preset(
    batch=lambda info: [_resized_crop(info)]))
PRESETS.add("resized_crop_strong", Preset(
    batch=lambda info: [_resized_crop(info), _turn(), _jitter()]))


def build_augment(cfg: AugmentConfig, info: DatasetInfo) -> BatchTransform:
    """The training-time transform ``cfg`` describes, on this dataset.

    ``cfg.policy`` first, on the uint8 images as torchvision's policies expect; then the
    preset's operations; then cutout, last, so that nothing moves or recolours its square:
    filled with the dataset's mean, the square is zero after normalisation, as the paper's
    cut of normalised images was.
    """
    policy = build_policy(cfg)
    ops = [policy] if policy is not None else []
    ops += PRESETS.get(cfg.preset).batch(info)
    if cfg.cutout > 0:
        ops.append(partial(cutout, size=cfg.cutout, fill=info.mean))
    return BatchTransform(ops, info)
