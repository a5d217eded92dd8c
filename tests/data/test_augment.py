"""Batched augmentations: distributions of the random draws, shapes, determinism, presets."""

from __future__ import annotations

import pytest
import torch

from harness.config import AugmentConfig
from harness.data import PRESETS, DatasetInfo, build_augment, normalize
from harness.data.augment import (
    color_jitter,
    crop_padding,
    random_crop_flip_rotate,
)


def _info(*, channels: int = 3, size: int = 32, hflip: bool = True) -> DatasetInfo:
    return DatasetInfo(
        name="toy", num_classes=10, in_channels=channels, image_size=(size, size),
        class_names=[str(i) for i in range(10)], mean=(0.5,) * channels,
        std=(0.25,) * channels, hflip=hflip,
    )


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, *, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), generator=_gen(seed),
                         dtype=torch.uint8)


def test_crop_padding_scales_with_image_size() -> None:
    assert [crop_padding(_info(size=s)) for s in (32, 28, 8)] == [4, 3, 1]


def test_crop_offsets_are_uniform_over_the_padded_range() -> None:
    size, padding, n = 8, 1, 9000
    # Pixel values 1..64 name their position, so the centre of a crop reveals its offset.
    ramp = torch.arange(1, size * size + 1, dtype=torch.uint8).view(1, 1, size, size)
    out = random_crop_flip_rotate(ramp.expand(n, 1, size, size), padding=padding,
                                  flip_rate=0.0, degrees=0.0, generator=_gen())
    assert out.shape == (n, 1, size, size) and out.dtype == torch.uint8
    centre = out[:, 0, size // 2, size // 2].long() - 1
    dy = centre // size - size // 2 + padding
    dx = centre % size - size // 2 + padding
    counts = torch.bincount(dy * 3 + dx, minlength=9).double()
    assert counts.numel() == 9
    expected = n / 9
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 26.1  # p = 0.001 for 8 degrees of freedom


def test_crop_moves_content_and_fills_with_zeros() -> None:
    ones = torch.full((400, 1, 8, 8), 255, dtype=torch.uint8)
    out = random_crop_flip_rotate(ones, padding=1, flip_rate=0.0, degrees=0.0, generator=_gen())
    zero_rows = (out[:, 0] == 0).all(dim=2).sum(dim=1)
    assert set(zero_rows.tolist()) == {0, 1}  # shifted by one row, or not at all
    assert (out[:, 0, 1:-1, 1:-1] == 255).all()  # the interior is never padding


def test_flip_rate_is_about_one_half() -> None:
    n = 4000
    images = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).expand(n, 1, 1, 4)
    out = random_crop_flip_rotate(images, padding=0, flip_rate=0.5, degrees=0.0,
                                  generator=_gen())
    flipped = (out[:, 0, 0, 0] == 3).double().mean().item()
    assert abs(flipped - 0.5) < 0.03  # about 4 standard errors
    assert ((out[:, 0, 0, 0] == 0) | (out[:, 0, 0, 0] == 3)).all()


def _left_dark_right_bright(n: int) -> torch.Tensor:
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    images[..., 4:] = 255
    return images


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_flips_are_never_applied_when_they_would_change_the_label(preset: str) -> None:
    transform = build_augment(AugmentConfig(preset=preset), _info(channels=1, size=8,
                                                                   hflip=False))
    out = transform(_left_dark_right_bright(500), generator=_gen())
    assert (out[..., :4].mean(dim=(1, 2, 3)) < out[..., 4:].mean(dim=(1, 2, 3))).all()


def test_standard_preset_flips_about_half_when_flips_keep_the_label() -> None:
    transform = build_augment(AugmentConfig(preset="standard"), _info(channels=1, size=8))
    out = transform(_left_dark_right_bright(2000), generator=_gen())
    flipped = (out[..., :4].mean(dim=(1, 2, 3)) > out[..., 4:].mean(dim=(1, 2, 3)))
    assert abs(flipped.double().mean().item() - 0.5) < 0.05


@pytest.mark.parametrize("preset", ["none", "standard", "strong"])
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_give_normalised_float32_batches_of_the_same_shape(
    preset: str, channels: int
) -> None:
    info = _info(channels=channels)
    images = _images(16, channels=channels)
    out = build_augment(AugmentConfig(preset=preset), info)(images, generator=_gen())
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # (0 - 0.5) / 0.25 .. (1 - 0.5) / 0.25
    assert out.min() >= -2.0 - 1e-5 and out.max() <= 2.0 + 1e-5


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_presets_are_deterministic_under_a_generator_seed(preset: str) -> None:
    transform = build_augment(AugmentConfig(preset=preset), _info())
    images = _images(32)
    a = transform(images, generator=_gen(7))
    b = transform(images, generator=_gen(7))
    c = transform(images, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_none_preset_is_plain_normalisation() -> None:
    info = _info()
    images = _images(8)
    out = build_augment(AugmentConfig(preset="none"), info)(images, generator=_gen())
    assert torch.equal(out, normalize(images, info))
    expected = (images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(out, expected)


def test_normalize_accepts_unit_floats_as_well_as_uint8() -> None:
    info = _info()
    images = _images(4)
    assert torch.allclose(normalize(images, info), normalize(images.float() / 255, info))


def test_rotation_keeps_the_shape_and_stays_small() -> None:
    images = _images(64)
    out = random_crop_flip_rotate(images, padding=0, flip_rate=0.0, degrees=10.0,
                                  generator=_gen())
    assert out.shape == images.shape and out.dtype == images.dtype
    # A ±10° turn leaves the centre of a smooth image nearly where it was.
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(8, 3, 32, 32).contiguous()
    turned = random_crop_flip_rotate(smooth, padding=0, flip_rate=0.0, degrees=10.0,
                                     generator=_gen())
    centre = (slice(None), slice(None), slice(12, 20), slice(12, 20))
    assert (turned[centre] - smooth[centre]).abs().max() < 0.1


def test_zero_rotation_and_zero_jitter_are_the_identity() -> None:
    images = _images(4).float() / 255
    assert torch.equal(random_crop_flip_rotate(images, padding=0, flip_rate=0.0, degrees=0.0,
                                               generator=_gen()), images)
    same = color_jitter(images, brightness=0, contrast=0, saturation=0, hue=0,
                        generator=_gen())
    assert torch.allclose(same, images, atol=1e-5)


def test_color_jitter_changes_colours_within_range() -> None:
    images = _images(32)
    out = color_jitter(images, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2,
                       generator=_gen())
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, images.float() / 255, atol=1e-3)
    gray = _images(8, channels=1)
    assert color_jitter(gray, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2,
                        generator=_gen()).shape == gray.shape


def test_every_preset_is_registered() -> None:
    assert PRESETS.names() == ["none", "resized_crop", "resized_crop_strong", "standard", "strong"]
