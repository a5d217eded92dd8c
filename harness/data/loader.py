"""Batches from a split held on the training device.

Owns ``DeviceLoader``: the split moves to the device once, as uint8, and every batch is an
index into it followed by the batched transform, as in airbench.  No workers, no PIL, no
per-sample Python: at these image sizes the per-sample pipeline, not the model, is the limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from harness.data.augment import BatchTransform, normalize
from harness.data.datasets import DatasetInfo, TensorSplit


class DeviceLoader:
    """Yields ``(normalised float images, int64 labels)`` batches on ``device``.

    The shuffle and the augmentation draw from one CPU generator seeded with ``seed``, so
    the n-th epoch of two loaders built alike is the same, batch for batch.
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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.device = torch.device(device)
        # uint8 on the device: a quarter of float32's memory and transfer.
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.transform = transform
        self.info = info
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

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
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            images, labels = self.images[index], self.labels[index]
            if self.transform is None:
                yield normalize(images, self.info), labels
            else:
                yield self.transform(images, generator=self.generator), labels
