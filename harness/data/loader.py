"""Batches from a split held on the training device.

Owns ``DeviceLoader``: the split moves to the device once, as uint8, and every batch is an
index into it followed by the batched transform, as in airbench.  No workers, no PIL, no
per-sample Python: at these image sizes the per-sample pipeline, not the model, is the limit.

Nothing in an epoch copies from the host: the shuffle and the augmentation's random numbers are
drawn by a generator on the device (on CUDA; elsewhere the CPU's), because a host-to-device copy
of even a few bytes waits for the kernels already queued and so stalls the step that follows.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from harness.config import TrialConfig
from harness.data.augment import BatchTransform, build_augment
from harness.data.datasets import DataBundle, DatasetInfo, TensorSplit


class DeviceLoader:
    """Yields ``(normalised float images, int64 labels)`` batches on ``device``.

    The shuffle and the augmentation draw from one generator seeded with ``seed``, so the n-th
    epoch of two loaders built alike on the same kind of device is the same, batch for batch.
    ``memory_format`` is the layout of the yielded images (``torch.channels_last`` for
    convolutions on CUDA, where it lets cuDNN skip its own transposes).
    """

    def __init__(
        self,
        split: TensorSplit,
        *,
        batch_size: int,
        device: torch.device,
        transform: BatchTransform | None,
        info: DatasetInfo,
        shuffle: bool,
        seed: int,
        drop_last: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.device = torch.device(device)
        # uint8 on the device: a quarter of float32's memory and transfer.
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        # Without a transform a batch is still normalised (a preset with no operations).
        self.transform = transform if transform is not None else BatchTransform([], info)
        self.info = info
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.memory_format = memory_format
        on_device = self.device.type == "cuda"
        self.generator = torch.Generator(self.device if on_device else "cpu").manual_seed(seed)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.num_samples
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.generator.device)
            order = order.to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            # index_select copies whole rows; ``images[index]`` goes element by element and is
            # an order of magnitude slower on the CPU.
            images = self.transform(self.images.index_select(0, index), generator=self.generator)
            yield (images.contiguous(memory_format=self.memory_format),
                   self.labels.index_select(0, index))


def build_loaders(
    data: DataBundle,
    cfg: TrialConfig,
    *,
    device: torch.device,
    seed: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[DeviceLoader, DeviceLoader, DeviceLoader]:
    """The training loader (shuffled, augmented) and the validation and test loaders."""
    train = cfg.train
    train_loader = DeviceLoader(
        data.train,
        batch_size=train.batch_size,
        device=device,
        transform=build_augment(cfg.augment, data.info),
        info=data.info,
        shuffle=True,
        seed=seed,
        # A last batch of one image would break batch norm; small datasets keep every batch.
        drop_last=len(data.train.labels) > train.batch_size,
        memory_format=memory_format,
    )
    eval_args = dict(batch_size=train.eval_batch_size, device=device, transform=None,
                     info=data.info, shuffle=False, seed=seed, memory_format=memory_format)
    return (train_loader, DeviceLoader(data.val, **eval_args),
            DeviceLoader(data.test, **eval_args))
