"""Batched augmentations do what their per-sample torchvision definitions do to each image.

Given the same parameters, an operation matches torchvision's functional op image by image;
drawn at random, its parameters have the distribution torchvision's transform draws them from.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from harness.data.augment import (
    adjust_colors,
    crop_flip_rotate,
    cutout,
    random_crop_flip_rotate,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, *, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    # 1..255, so a 0 in an output can only be padding or fill.
    return torch.randint(1, 256, (n, channels, size, size), generator=_gen(seed),
                         dtype=torch.uint8)


def _coded(n: int, size: int) -> torch.Tensor:
    """Channel 0 holds each pixel's row + 1, channel 1 its column + 1: outputs name sources."""
    index = torch.arange(1, size + 1, dtype=torch.uint8)
    rows = index.view(size, 1).expand(size, size)
    cols = index.view(1, size).expand(size, size)
    return torch.stack([rows, cols]).expand(n, 2, size, size).contiguous()


def _chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return ((counts - expected) ** 2 / expected).sum().item()


def _torchvision(image: torch.Tensor, *, padding: int, top: int, left: int, flip: bool,
                 degrees: float | None) -> torch.Tensor:
    h, w = image.shape[-2:]
    out = TF.crop(TF.pad(image, [padding]), top, left, h, w)
    if flip:
        out = TF.hflip(out)
    if degrees is not None:
        out = TF.rotate(out, degrees, interpolation=InterpolationMode.NEAREST)
    return out


def test_crop_and_flip_equal_torchvision_at_every_offset() -> None:
    images, padding = _images(2 * 9 * 9, size=8), 4
    offsets = torch.cartesian_prod(torch.arange(9), torch.arange(9)).repeat(2, 1)
    flip = torch.arange(len(images)) >= 81
    out = crop_flip_rotate(images, padding=padding, top=offsets[:, 0], left=offsets[:, 1],
                           flip=flip)
    for i, image in enumerate(images):
        expected = _torchvision(image, padding=padding, top=int(offsets[i, 0]),
                                left=int(offsets[i, 1]), flip=bool(flip[i]), degrees=None)
        assert torch.equal(out[i], expected), (i, offsets[i].tolist(), bool(flip[i]))


def test_crop_flip_and_rotation_equal_torchvision_nearest_rotation() -> None:
    n, padding = 64, 4
    images = _images(n)
    g = _gen(1)
    top, left = torch.randint(9, (n,), generator=g), torch.randint(9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    degrees = torch.rand(n, generator=g) * 20 - 10
    out = crop_flip_rotate(images, padding=padding, top=top, left=left, flip=flip,
                           degrees=degrees)
    expected = torch.stack([
        _torchvision(images[i], padding=padding, top=int(top[i]), left=int(left[i]),
                     flip=bool(flip[i]), degrees=float(degrees[i]))
        for i in range(n)
    ])
    # Only a pixel centre exactly on a cell boundary may round the other way.
    assert (out == expected).double().mean().item() > 0.999


def test_float_images_are_moved_like_uint8_images() -> None:
    images = _images(16)
    args = dict(padding=4, top=torch.full((16,), 3), left=torch.full((16,), 6),
                flip=torch.arange(16) % 2 == 0, degrees=torch.linspace(-10, 10, 16))
    as_uint8 = crop_flip_rotate(images, **args)
    as_float = crop_flip_rotate(images.float() / 255, **args)
    assert as_uint8.dtype == torch.uint8 and as_float.dtype == torch.float32
    assert torch.allclose(as_float, as_uint8.float() / 255)


def test_drawn_crop_offsets_are_uniform_and_flips_happen_at_the_rate() -> None:
    n, size, padding = 4000, 8, 1
    out = random_crop_flip_rotate(_coded(n, size), padding=padding, flip_rate=0.5,
                                  degrees=0.0, generator=_gen())
    assert out.shape == (n, 2, size, size) and out.dtype == torch.uint8
    # The centre pixel is never padding; its code names the source pixel.
    centre = size // 2
    dy = out[:, 0, centre, centre].long() - 1 - centre + padding
    source_col = out[:, 1, centre, centre].long() - 1
    right_col = out[:, 1, centre, centre + 1].long() - 1
    flipped = right_col < source_col
    dx = torch.where(flipped, (size - 1 - centre) - source_col, source_col - centre) + padding
    dx = torch.where(flipped, -dx + 2 * padding, dx)  # the crop offset, before the flip
    counts = torch.bincount(dy * 3 + dx, minlength=9).double()
    assert counts.numel() == 9
    assert _chi_square(counts) < 26.1  # p = 0.001 for 8 degrees of freedom
    assert abs(flipped.double().mean().item() - 0.5) < 4 * math.sqrt(0.25 / n)


def test_drawn_rotation_angles_are_uniform_over_plus_minus_degrees() -> None:
    n, size, degrees = 1000, 64, 10.0
    out = random_crop_flip_rotate(_coded(n, size), padding=0, flip_rate=0.0, degrees=degrees,
                                  generator=_gen())
    # Recover each image's angle from where its pixels came from: sources are the outputs
    # turned back, so the angle between output and source directions is the turn.
    rows = torch.arange(size).view(size, 1).double() + 0.5 - size / 2
    cols = torch.arange(size).view(1, size).double() + 0.5 - size / 2
    src_rows = out[:, 0].double() - 0.5 - size / 2
    src_cols = out[:, 1].double() - 0.5 - size / 2
    valid = out[:, 0] > 0
    cross = ((cols * src_rows - rows * src_cols) * valid).sum(dim=(1, 2))
    dot = ((cols * src_cols + rows * src_rows) * valid).sum(dim=(1, 2))
    angle = torch.atan2(cross, dot) * 180 / math.pi
    # Nearest-pixel sources blur each estimate by up to about a degree on 64 px.
    assert angle.abs().max().item() < degrees + 1.0
    # Uniform on ±10°: deciles and quartiles at -8, -5, 0, 5, 8 (sampling SE about 0.3°).
    levels = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    quantiles = torch.quantile(angle, levels)
    assert torch.allclose(quantiles, (2 * levels - 1) * degrees, atol=1.2), quantiles.tolist()


def test_turned_out_corners_are_zero_and_the_rest_keeps_its_values() -> None:
    images = _images(64)
    out = random_crop_flip_rotate(images, padding=0, flip_rate=0.0, degrees=10.0,
                                  generator=_gen())
    assert out.shape == images.shape and out.dtype == torch.uint8
    # Nearest sampling only moves values: every non-zero output value is in its own input.
    for image, turned in zip(images, out):
        assert set(turned.unique().tolist()) - {0} <= set(image.unique().tolist())
    assert (out[:, :, 8:24, 8:24] != 0).all()  # the middle never leaves the frame


@pytest.mark.parametrize("op", ["geometry", "cutout"])
def test_new_operations_are_deterministic_under_a_generator_seed(op: str) -> None:
    images = _images(32)

    def run(seed: int) -> torch.Tensor:
        if op == "cutout":
            return cutout(images, size=8, generator=_gen(seed))
        return random_crop_flip_rotate(images, padding=4, flip_rate=0.5, degrees=10.0,
                                       generator=_gen(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_cutout_blanks_a_square_whose_centre_is_uniform_over_the_image() -> None:
    n, size, side = 20000, 8, 4
    out = cutout(torch.full((n, 1, size, size), 255, dtype=torch.uint8), size=side,
                 generator=_gen())
    assert out.shape == (n, 1, size, size) and out.dtype == torch.uint8
    assert set(out.unique().tolist()) <= {0, 255}
    blanked = (out[:, 0] == 0).double()
    # A pixel is blanked when the centre lies within side//2 before it or side - 1 - side//2
    # after it, clipped to the image: the exact rate follows from a uniform centre.
    span = torch.tensor([min(p + side // 2, size - 1) - max(p - (side - 1 - side // 2), 0) + 1
                         for p in range(size)], dtype=torch.float64) / size
    expected = span.view(size, 1) * span.view(1, size)
    standard_error = (expected * (1 - expected) / n).sqrt()
    assert ((blanked.mean(dim=0) - expected).abs() < 4.5 * standard_error).all()
    # Each blank is one axis-aligned rectangle, at most side × side.
    rows_hit, cols_hit = blanked.amax(dim=2), blanked.amax(dim=1)
    assert torch.equal(blanked.sum(dim=(1, 2)), rows_hit.sum(dim=1) * cols_hit.sum(dim=1))
    assert rows_hit.sum(dim=1).max() <= side and cols_hit.sum(dim=1).max() <= side


def test_cutout_fills_each_channel_with_its_value_and_leaves_the_rest() -> None:
    images = torch.rand(64, 3, 16, 16, generator=_gen())
    out = cutout(images, size=6, generator=_gen(), fill=(0.25, 0.5, 0.75))
    changed = out != images
    assert changed.any()
    for channel, value in enumerate((0.25, 0.5, 0.75)):
        assert (out[:, channel][changed[:, channel]] == value).all()
    assert torch.equal(changed[:, 0], changed[:, 1]) and torch.equal(changed[:, 1], changed[:, 2])
    with pytest.raises(ValueError, match="2 values for 3 channels"):
        cutout(images, size=6, generator=_gen(), fill=(0.1, 0.2))


def test_brightness_contrast_and_saturation_equal_torchvision_per_image() -> None:
    n = 32
    images = torch.rand(n, 3, 16, 16, generator=_gen())
    g = _gen(1)
    brightness, contrast, saturation = (0.6 + 0.8 * torch.rand(n, generator=g) for _ in range(3))
    out = adjust_colors(images, brightness=brightness, contrast=contrast, saturation=saturation)
    for i in range(n):
        expected = TF.adjust_brightness(images[i], float(brightness[i]))
        expected = TF.adjust_contrast(expected, float(contrast[i]))
        expected = TF.adjust_saturation(expected, float(saturation[i]))
        assert torch.allclose(out[i], expected, atol=1e-5), i
    assert torch.equal(images, torch.rand(n, 3, 16, 16, generator=_gen()))  # input untouched


def test_hue_turns_the_chroma_and_keeps_the_luma() -> None:
    # Mid-range colours, so no channel clips; the YIQ turn keeps luma exactly.
    images = 0.3 + 0.4 * torch.rand(16, 3, 8, 8, generator=_gen())
    ones = torch.ones(16)
    turned = adjust_colors(images, brightness=ones, contrast=ones,
                           hue=torch.full((16,), 0.1))
    back = adjust_colors(turned, brightness=ones, contrast=ones, hue=torch.full((16,), -0.1))
    assert not torch.allclose(turned, images, atol=1e-2)
    assert torch.allclose(TF.rgb_to_grayscale(turned), TF.rgb_to_grayscale(images), atol=1e-3)
    assert torch.allclose(back, images, atol=1e-4)
