"""Augmentation policies: torchvision v2's AutoAugment, RandAugment and TrivialAugmentWide, per
image, a batch at a time, drawn from the generator they are given; and cutout in the presets."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2 as v2
from scipy import stats

import harness.data.policies as policies
from harness.config import AugmentConfig
from harness.data import DatasetInfo, build_augment
from harness.data.policies import (
    CIFAR10_POLICY,
    RANDOM_OPS,
    STANDARD_SPACE,
    WIDE_SPACE,
    AutoAugment,
    RandAugment,
    TrivialAugmentWide,
    build_policy,
)

ALL = [AutoAugment, RandAugment, TrivialAugmentWide]
SHAPES = [(3, 32), (1, 8)]  # CIFAR and the digits


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, *, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    # Smooth gradients plus noise: real-looking enough for equalize and autocontrast to act.
    g = _gen(seed)
    ramp = torch.linspace(40, 200, size).view(1, 1, 1, size) * torch.rand(n, channels, 1, 1,
                                                                          generator=g)
    noise = 30 * torch.rand(n, channels, size, size, generator=g)
    return (ramp + noise).clamp(0, 255).to(torch.uint8)


def _replay(policy, image: torch.Tensor, codes: list[int]) -> torch.Tensor:
    """What torchvision's own transform does to one image given the same draws."""
    reference = v2.RandAugment()  # any policy: they share the operations' implementation
    height, width = image.shape[-2:]
    for code in codes:
        name, magnitude = policy.decode(code, height=height, width=width)
        if name != "Identity":
            image = reference._apply_image_or_video_transform(
                image, name, magnitude, interpolation=v2.InterpolationMode.NEAREST,
                fill=reference._fill)
    return image


def test_the_magnitude_tables_and_the_cifar10_policy_are_torchvisions() -> None:
    spaces = [(STANDARD_SPACE, v2.AutoAugment._AUGMENTATION_SPACE, 10),
              (STANDARD_SPACE, v2.RandAugment._AUGMENTATION_SPACE, 31),
              (WIDE_SPACE, v2.TrivialAugmentWide._AUGMENTATION_SPACE, 31)]
    for ours, theirs, bins in spaces:
        for name, (fn, signed) in theirs.items():
            assert ours[name][1] == signed, name
            for height, width in [(8, 8), (32, 32), (28, 20)]:
                a, b = ours[name][0](bins, height, width), fn(bins, height, width)
                assert (a is None and b is None) or torch.equal(a, b), name
    assert tuple(v2.RandAugment._AUGMENTATION_SPACE) == RANDOM_OPS
    assert tuple(v2.TrivialAugmentWide._AUGMENTATION_SPACE) == RANDOM_OPS
    cifar = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies
    assert [tuple(sub) for sub in cifar] == list(CIFAR10_POLICY)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_image_gets_what_torchvision_does_with_its_draws(make, channels, size) -> None:
    policy, n = make(), 48
    images = _images(n, channels=channels, size=size)
    codes = policy.draw(n, generator=_gen(1))
    out = policy(images, generator=_gen(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(n):
        expected = _replay(policy, images[i], codes[:, i].tolist())
        assert torch.equal(out[i], expected), (i, [policy.decode(c, height=size, width=size)
                                                   for c in codes[:, i].tolist()])


@pytest.mark.parametrize("make", ALL)
def test_a_seed_fixes_the_augmentation_and_another_changes_it(make) -> None:
    images = _images(64)
    first = make()(images, generator=_gen(5))
    assert torch.equal(first, make()(images, generator=_gen(5)))
    assert not torch.equal(first, make()(images, generator=_gen(6)))


@pytest.mark.parametrize("make", ALL)
def test_images_draw_their_own_operations(make) -> None:
    policy = make()
    codes = policy.draw(128, generator=_gen())
    names = {policy.decode(c, height=32, width=32)[0] for c in codes.flatten().tolist()}
    assert len(names) >= 8, names
    # Copies of one image come out differently: the draws are per image, not per batch.
    out = policy(_images(1).expand(64, 3, 32, 32).contiguous(), generator=_gen())
    assert len({tuple(image.flatten().tolist()) for image in out}) > 10


def test_images_that_drew_the_same_operation_go_through_it_in_one_call(monkeypatch) -> None:
    calls = []
    apply_op = policies.apply_op

    def counting(images, name, magnitude):
        calls.append((name, magnitude, len(images)))
        return apply_op(images, name, magnitude)

    monkeypatch.setattr(policies, "apply_op", counting)
    policy, n = RandAugment(num_ops=2, magnitude=9), 256
    codes = policy.draw(n, generator=_gen())
    policy(_images(n), generator=_gen())
    distinct = sum(len(set(stage.tolist()) - {0}) for stage in codes)
    # 9 signed operations at ±9, and Posterize, Solarize, AutoContrast, Equalize.
    assert len(calls) == distinct <= 2 * (9 * 2 + 4)
    assert sum(count for _, _, count in calls) == (codes != 0).sum().item()


def test_randaugment_draws_operations_uniformly_and_signs_at_even_odds() -> None:
    policy, n = RandAugment(num_ops=1, magnitude=9), 14 * 400
    codes = policy.draw(n, generator=_gen()).flatten().tolist()
    decoded = [policy.decode(c, height=32, width=32) for c in codes]
    counts = [sum(name == op for name, _ in decoded) for op in RANDOM_OPS]
    assert stats.chisquare(counts).pvalue > 0.001
    rotations = [m for name, m in decoded if name == "Rotate"]
    assert sorted({abs(m) for m in rotations}) == pytest.approx([9.0])  # bin 9 of 0..30°
    assert stats.binomtest(sum(m < 0 for m in rotations), len(rotations)).pvalue > 0.001


def test_trivialaugment_draws_magnitude_bins_uniformly() -> None:
    policy = TrivialAugmentWide(ops=("Identity", "Rotate"))
    decoded = [policy.decode(c, height=32, width=32)
               for c in policy.draw(31 * 200, generator=_gen()).flatten().tolist()]
    bins = [round(abs(m) / (135.0 / 30)) for name, m in decoded if name == "Rotate"]
    assert stats.chisquare(torch.bincount(torch.tensor(bins), minlength=31).tolist()).pvalue > 0.001


def test_autoaugment_applies_each_step_with_its_probability() -> None:
    policy, n = AutoAugment(), 25 * 400
    codes = policy.draw(n, generator=_gen())
    # Sub-policy 15 is ("Equalize", 0.2), ("AutoContrast", 0.6); 14 ends with ("Invert", 0.0).
    firsts = [policy.decode(c, height=32, width=32)[0] for c in codes[0].tolist()]
    seconds = [policy.decode(c, height=32, width=32)[0] for c in codes[1].tolist()]
    assert "Invert" in firsts  # sub-policy 0's first step, at 0.1
    expected_invert = (0.1 + 0.1) / 25  # sub-policy 0 first, 23 second (14's second is 0.0)
    rate = (firsts.count("Invert") + seconds.count("Invert")) / n
    assert rate == pytest.approx(expected_invert, abs=0.004)
    identity = (codes == 0).float().mean(dim=1)  # a step not taken is the identity
    mean_skip = [sum(1 - sub[stage][1] for sub in CIFAR10_POLICY) / 25 for stage in (0, 1)]
    assert identity.tolist() == pytest.approx(mean_skip, abs=0.02)


def test_randaugment_at_magnitude_zero_keeps_images_under_operations_neutral_there() -> None:
    neutral = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
               "Brightness", "Color", "Contrast", "Sharpness", "Posterize")
    images = _images(64)
    out = RandAugment(num_ops=3, magnitude=0, ops=neutral)(images, generator=_gen())
    assert torch.equal(out, images)
    # The full set at magnitude 0 still changes some images (autocontrast, equalize, ...).
    assert not torch.equal(RandAugment(magnitude=0)(images, generator=_gen()), images)


def test_policy_names_build_the_policy() -> None:
    assert build_policy(AugmentConfig()) is None
    rand = AugmentConfig(policy="randaugment", policy_ops=3, policy_magnitude=5)
    assert (build_policy(rand).n_stages, build_policy(rand).magnitude) == (3, 5)
    assert isinstance(build_policy(AugmentConfig(policy="autoaugment")), AutoAugment)
    trivial = build_policy(AugmentConfig(policy="trivialaugment"))
    assert isinstance(trivial, TrivialAugmentWide)
    # A batch of one uint8 image, 1 or 3 channels, as the image-folder worker path gives it.
    one = _images(1, channels=1, size=8)
    assert trivial(one, generator=_gen()).shape == (1, 1, 8, 8)


def _info(channels: int, size: int) -> DatasetInfo:
    return DatasetInfo(name="toy", num_classes=10, in_channels=channels, image_size=(size, size),
                       class_names=[str(i) for i in range(10)], mean=(0.4,) * channels,
                       std=(0.2,) * channels, hflip=True)


@pytest.mark.parametrize("channels,size", SHAPES)
def test_build_augment_runs_the_policy_first_and_normalises(channels, size) -> None:
    info = _info(channels, size)
    cfg = AugmentConfig(preset="standard", policy="randaugment")
    images = _images(32, channels=channels, size=size)
    out = build_augment(cfg, info)(images, generator=_gen(3))
    assert out.shape == images.shape and out.dtype == torch.float32
    # By hand: the policy on uint8 with the generator, then the preset's crop with it.
    g = _gen(3)
    by_hand = RandAugment()(images, generator=g)
    for op in build_augment(AugmentConfig(preset="standard"), info).ops:  # centre, crop
        by_hand = op(by_hand, generator=g)
    torch.testing.assert_close(out, (by_hand.float() / 255 - 0.4) / 0.2)


@pytest.mark.parametrize("channels,size,side", [(3, 32, 8), (1, 8, 3)])
def test_cutout_blanks_one_square_per_image_to_zero_after_normalisation(channels, size,
                                                                        side) -> None:
    info = _info(channels, size)
    images = torch.full((200, channels, size, size), 250, dtype=torch.uint8)
    out = build_augment(AugmentConfig(cutout=side, preset="strong"), info)(images,
                                                                           generator=_gen())
    blank = (out == 0).all(dim=1)  # every channel at the mean
    squares = set()
    for mask in blank:
        rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask.sum() == height * width  # one rectangle
        assert height <= side and width <= side  # the square, clipped at the border
        squares.add((rows.min().item(), cols.min().item(), height.item(), width.item()))
    assert (blank.sum(dim=(1, 2)) == side * side).float().mean() > 0.2  # often whole
    assert len(squares) > 20  # each image its own square
