"""DeviceLoader: permutations per epoch, reproducibility, batch counts."""

from __future__ import annotations

import pytest
import torch

from harness.config import AugmentConfig
from harness.data import DatasetInfo, DeviceLoader, TensorSplit, build_augment, normalize
from harness.data.loader import eval_batch_size

INFO = DatasetInfo(name="toy", num_classes=10, in_channels=1, image_size=(4, 4),
                   class_names=[str(i) for i in range(10)], mean=(0.5,), std=(0.5,),
                   hflip=False)


def _split(n: int = 103) -> TensorSplit:
    # Each image is filled with its own index, so a batch tells which samples it holds.
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4)
    return TensorSplit(images.contiguous(), torch.arange(n, dtype=torch.int64))


def _loader(split: TensorSplit, *, seed: int = 0, **kwargs) -> DeviceLoader:
    options = dict(batch_size=10, device=torch.device("cpu"), transform=None, info=INFO,
                   shuffle=True, seed=seed)
    return DeviceLoader(split, **{**options, **kwargs})


def _epoch(loader: DeviceLoader) -> list[torch.Tensor]:
    return [labels for _, labels in loader]


def test_each_epoch_is_a_permutation_covering_every_sample_once() -> None:
    loader = _loader(_split())
    first, second = torch.cat(_epoch(loader)), torch.cat(_epoch(loader))
    assert sorted(first.tolist()) == list(range(103))
    assert sorted(second.tolist()) == list(range(103))
    assert not torch.equal(first, second)  # reshuffled every epoch


def test_batches_are_normalised_images_matching_their_labels() -> None:
    for images, labels in _loader(_split()):
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 4, 4)
        expected = normalize((labels % 256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4),
                             INFO)
        assert torch.equal(images, expected)


def test_two_loaders_with_the_same_seed_give_the_same_epochs() -> None:
    transform = build_augment(AugmentConfig(preset="standard"), INFO)
    a = _loader(_split(), seed=3, transform=transform)
    b = _loader(_split(), seed=3, transform=transform)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    other = _loader(_split(), seed=4)
    assert not torch.equal(torch.cat(_epoch(other)), torch.cat(_epoch(_loader(_split(), seed=3))))


@pytest.mark.parametrize(("drop_last", "n_batches", "last"), [(False, 11, 3), (True, 10, 10)])
def test_batch_count_with_and_without_drop_last(drop_last: bool, n_batches: int,
                                                last: int) -> None:
    loader = _loader(_split(103), drop_last=drop_last)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == n_batches
    assert len(batches[-1]) == last
    assert loader.num_samples == 103


def test_without_shuffle_the_order_is_the_split_order() -> None:
    loader = _loader(_split(25), shuffle=False)
    assert torch.cat(_epoch(loader)).tolist() == list(range(25))


@pytest.mark.parametrize(("side", "expected"), [(32, 128), (28, 167), (64, 32), (8, 1024),
                                                (224, 16)])
def test_auto_eval_batches_on_the_cpu_hold_about_128_cifar_images_worth_of_pixels(
        side: int, expected: int) -> None:
    info = DatasetInfo(name="toy", num_classes=10, in_channels=3, image_size=(side, side),
                       class_names=[str(i) for i in range(10)], mean=(0.5,) * 3,
                       std=(0.5,) * 3, hflip=True)
    assert eval_batch_size("auto", info, torch.device("cpu")) == expected
    assert eval_batch_size("auto", info, torch.device("cuda")) == 1024
    assert eval_batch_size(300, info, torch.device("cpu")) == 300
