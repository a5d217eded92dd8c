"""Augmentation presets: one name, one meaning, on the in-memory path and the worker path.

``standard`` is a padded random crop and a flip, ``strong`` adds a rotation and colour jitter,
``resized_crop`` is torchvision's RandomResizedCrop and a flip (a batched crop of a box drawn
as torchvision draws it, resized back with ``grid_sample``).  The worker path runs the same
operations on each fitted image (``test_protocol.py`` checks it image for image).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import v2

from harness.config import AugmentConfig
from harness.data import PRESETS, DatasetInfo, build_augment, folders, normalize
from harness.data.augment import resized_crop, resized_crop_boxes, side_padding
from harness.errors import UnknownNameError

RESIZED = ["resized_crop", "resized_crop_strong"]
EVERY = ["none", "standard", "strong", *RESIZED]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _info(*, size: int = 32, hflip: bool = True) -> DatasetInfo:
    return DatasetInfo(name="toy", num_classes=10, in_channels=3, image_size=(size, size),
                       class_names=[str(i) for i in range(10)], mean=MEAN, std=STD,
                       hflip=hflip)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, *, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), generator=_gen(seed), dtype=torch.uint8)


def _coded(size: int) -> torch.Tensor:
    """Channel 0 holds each pixel's row + 1, channel 1 its column + 1, channel 2 is 1."""
    index = torch.arange(1, size + 1, dtype=torch.uint8)
    return torch.stack([index.view(size, 1).expand(size, size),
                        index.view(1, size).expand(size, size),
                        torch.ones(size, size, dtype=torch.uint8)]).contiguous()


def _per_image(preset: str, image: torch.Tensor, *, seed: int, size: int = 32,
               hflip: bool = True) -> torch.Tensor:
    transform = folders.train_transform(AugmentConfig(preset=preset),
                                        _info(size=size, hflip=hflip))
    return transform(image, seed)


def _geometry(preset: str, image: torch.Tensor, *, seed: int, size: int, hflip: bool):
    """The preset's geometry (its centre crop and crop) on one fitted uint8 image, as uint8."""
    centre, crop = PRESETS.get(preset).batch(_info(size=size, hflip=hflip))[:2]
    g = _gen(seed)
    return crop(centre(folders.fit(image, size).unsqueeze(0), generator=g), generator=g)[0]


def test_every_preset_has_its_operations() -> None:
    assert PRESETS.names() == sorted(EVERY)
    for name in EVERY:
        ops = PRESETS.get(name).batch(_info())
        assert isinstance(ops, list) and all(callable(op) for op in ops)
        assert name != "none" or len(ops) == 1  # none: only the centre crop


# ---------------------------------------------------------------------------------------------
# The batched resized crop


@pytest.mark.parametrize("box", [(0, 0, 16, 16), (2, 3, 7, 11), (5, 0, 11, 4), (8, 8, 8, 8),
                                 (0, 15, 16, 1)])
def test_resized_crop_equals_torchvision_resized_crop_then_flip(box) -> None:
    top, left, height, width = box
    images = _images(2, size=16)
    as_tensor = [torch.full((2,), float(v)) for v in box]
    out = resized_crop(images, top=as_tensor[0], left=as_tensor[1], height=as_tensor[2],
                       width=as_tensor[3], flip=torch.tensor([False, True]))
    expected = TF.resized_crop(images.float() / 255, top, left, height, width, [16, 16],
                               antialias=False)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out[0], expected[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], TF.hflip(expected[1]), atol=1e-6, rtol=0)


def test_resized_crop_boxes_have_torchvision_distribution() -> None:
    n, side = 20000, 32
    top, left, height, width = resized_crop_boxes(n, side, side, generator=_gen(),
                                                  device=torch.device("cpu"))
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= side).all() and (left + width <= side).all()
    assert (height >= 1).all() and (width >= 1).all()
    ours_area = (height * width / side**2)
    ours_ratio = (width / height).log()
    torch.manual_seed(0)
    reference = v2.RandomResizedCrop(side)
    params = [reference.make_params([torch.zeros(3, side, side)]) for _ in range(4000)]
    ref_area = torch.tensor([p["height"] * p["width"] / side**2 for p in params])
    ref_ratio = torch.tensor([math.log(p["width"] / p["height"]) for p in params])
    # Area uniform over 8-100 % (mean 0.54), log-ratio symmetric about 0; rounding to whole
    # pixels moves both a little, the same way for both.
    assert abs(ours_area.mean() - ref_area.mean()) < 0.02
    assert abs(ours_area.std() - ref_area.std()) < 0.02
    assert abs(ours_ratio.mean() - ref_ratio.mean()) < 0.02
    assert abs(ours_ratio.std() - ref_ratio.std()) < 0.02
    # Placement uniform over what fits: full-height boxes all start at 0, small ones anywhere.
    small = height <= side // 4
    assert top[small].min() == 0 and (top[small] + height[small]).max() == side


def test_resized_crop_boxes_fall_back_to_torchvisions_centred_box() -> None:
    # 4×40 is too wide for any box of 90-100 % of its area at a ratio within 3/4..4/3.
    top, left, height, width = resized_crop_boxes(
        5, 4, 40, generator=_gen(), device=torch.device("cpu"), scale=(0.9, 1.0))
    expected = v2.RandomResizedCrop(4, scale=(0.9, 1.0)).make_params([torch.zeros(3, 4, 40)])
    assert {tuple(b) for b in torch.stack([top, left, height, width], 1).tolist()} == {
        (expected["top"], expected["left"], expected["height"], expected["width"])}


# ---------------------------------------------------------------------------------------------
# Both paths


@pytest.mark.parametrize("preset", EVERY)
def test_presets_in_memory_give_float_batches_repeatable_by_seed(preset: str) -> None:
    images = _images(16)
    transform = build_augment(AugmentConfig(preset=preset), _info())
    out = transform(images, generator=_gen(1))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert torch.equal(out, transform(images, generator=_gen(1)))
    if preset != "none":
        assert not torch.equal(out, transform(images, generator=_gen(2)))
        assert not torch.allclose(out, normalize(images, _info()), atol=1e-3)


@pytest.mark.parametrize("preset", EVERY)
def test_presets_on_the_worker_path_give_float_images_repeatable_by_seed(preset: str) -> None:
    image = _images(1)[0]
    out = _per_image(preset, image, seed=1)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, _per_image(preset, image, seed=1))
    plain = _per_image("none", image, seed=1)
    if preset != "none":
        assert any(not torch.equal(out, _per_image(preset, image, seed=s)) for s in (2, 3))
        assert any(not torch.allclose(_per_image(preset, image, seed=s), plain, atol=1e-3)
                   for s in (1, 2, 3))


@pytest.mark.parametrize("preset", RESIZED)
def test_resized_crop_changes_the_content_on_both_paths(preset: str) -> None:
    # A box smaller than the image magnifies it: neighbouring output pixels come from the same
    # or interpolated source columns, so fewer distinct codes than pixels survive.
    coded = _coded(32)
    batch = build_augment(AugmentConfig(preset=preset), _info())(coded.expand(8, 3, 32, 32),
                                                                  generator=_gen(3))
    worker = torch.stack([_per_image(preset, coded, seed=s) for s in range(8)])
    plain = normalize(coded.unsqueeze(0), _info())
    for out in (batch, worker):
        assert out.shape == (8, 3, 32, 32)
        moved = [not torch.allclose(o, plain[0], atol=1e-3) for o in out]
        assert sum(moved) >= 6


def test_standard_on_the_worker_path_is_a_pad_crop_not_a_rescale() -> None:
    size, padding = 32, side_padding(32)
    coded = _coded(size)
    shifts = set()
    for seed in range(20):
        out = _geometry("standard", coded, seed=seed, size=size, hflip=False)
        assert out.shape == (3, size, size) and out.dtype == torch.uint8
        inside = out[2] == 1  # not padding
        rows = out[0].long() - 1 - torch.arange(size).view(size, 1)
        cols = out[1].long() - 1 - torch.arange(size).view(1, size)
        # Every pixel that is not padding moved by the same whole offset, within the padding.
        dy, dx = rows[inside].unique(), cols[inside].unique()
        assert len(dy) == len(dx) == 1 and abs(dy.item()) <= padding >= abs(dx.item())
        assert inside.sum() == (size - abs(dy.item())) * (size - abs(dx.item()))
        shifts.add((dy.item(), dx.item()))
    assert len(shifts) > 5  # the offsets vary


def test_standard_on_the_worker_path_fits_other_sizes_first() -> None:
    # As the in-memory path decodes a folder at data.image_size: short side resized, centre kept.
    image = _images(1, size=48)[0]
    out = _per_image("standard", image, seed=0, size=24)
    assert out.shape == (3, 24, 24)


def test_an_unknown_preset_is_one_line_listing_the_valid_names_on_both_paths() -> None:
    valid = "valid: none, resized_crop, resized_crop_strong, standard, strong"
    with pytest.raises(UnknownNameError, match=f"unknown augmentation preset 'bogus'; {valid}$"):
        build_augment(AugmentConfig.model_construct(preset="bogus"), _info())
    with pytest.raises(UnknownNameError, match=f"unknown augmentation preset 'bogus'; {valid}$"):
        folders.train_transform(AugmentConfig.model_construct(preset="bogus", policy="none",
                                                              cutout=0), _info())
    with pytest.raises(ValueError, match=f"unknown augmentation preset 'bogus'; {valid}"):
        AugmentConfig(preset="bogus")
