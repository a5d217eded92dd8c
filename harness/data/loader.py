"""Batches for training and evaluation, from memory or from files.

Owns ``DeviceLoader``, ``FolderLoader`` (image folders: files decoded by DataLoader workers,
see ``folders``), and ``build_loaders``, which picks one by the kind of split.

``DeviceLoader``: the split moves to the device once, as uint8, and every batch is an
index into it followed by the batched transform, as in airbench.  No workers, no PIL, no
per-sample Python: at these image sizes the per-sample pipeline, not the model, is the limit.

Nothing in an epoch copies from the host: the shuffle and the augmentation's random numbers are
drawn by a generator on the device (on CUDA; elsewhere the CPU's), because a host-to-device copy
of even a few bytes waits for the kernels already queued and so stalls the step that follows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Union

import torch
from torch import Tensor
from torch.profiler import record_function

from harness.config import TrialConfig
from harness.data import folders
from harness.data.augment import BatchTransform, build_augment, center_crop, evaluation
from harness.data.datasets import DataBundle
from harness.data.folders import FileSplit
from harness.data.info import DatasetInfo
from harness.data.sources.base import Split, TensorSplit


class _Batches:
    """What both loaders share: ``labels`` in batches of ``batch_size`` on ``device``, in
    ``memory_format``, shuffled or not, with every random draw of an epoch from one generator
    seeded with ``seed`` (on the device on CUDA, else the CPU's), whose state is all a
    checkpoint needs to repeat the next epoch exactly."""

    def __init__(self, labels: Tensor, *, batch_size: int, device: torch.device, shuffle: bool,
                 seed: int, drop_last: bool, memory_format: torch.memory_format) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.device = torch.device(device)
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.memory_format = memory_format
        on_device = self.device.type == "cuda"
        self.generator = torch.Generator(self.device if on_device else "cpu").manual_seed(seed)

    @property
    def num_samples(self) -> int:
        return len(self.labels)


class DeviceLoader(_Batches):
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
        device = torch.device(device)
        super().__init__(split.labels.to(device), batch_size=batch_size, device=device,
                         shuffle=shuffle, seed=seed, drop_last=drop_last,
                         memory_format=memory_format)
        # uint8 on the device: a quarter of float32's memory and transfer.
        self.images = split.images.to(self.device)
        # Without a transform, evaluation's: the centre crop, normalised.
        self.transform = transform if transform is not None else evaluation(info)
        self.info = info

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
        # What a profile of a trial calls the batches' time (benchmarks/profile_trial.py).
        label = "harness.train_batch" if self.shuffle else "harness.eval_batch"
        for i in range(len(self)):
            with record_function(label):
                index = order[i * self.batch_size : (i + 1) * self.batch_size]
                # index_select copies whole rows; ``images[index]`` goes element by element
                # and is an order of magnitude slower on the CPU.
                images = self.transform(self.images.index_select(0, index),
                                        generator=self.generator)
                batch = (images.contiguous(memory_format=self.memory_format),
                         self.labels.index_select(0, index))
            yield batch


class FolderLoader(_Batches):
    """Yields ``(normalised float images, int64 labels)`` batches on ``device`` from files.

    Images are decoded and transformed one at a time by ``workers`` DataLoader processes
    (started once, kept for every epoch), each as ``folders.ImageTransform`` says.  All of an
    epoch's randomness (the order, and each image's seed, which its augmentation draws from)
    comes from ``generator``, as in ``DeviceLoader``, so its state is all a checkpoint needs to
    repeat the next epoch exactly.
    """

    def __init__(
        self,
        split: FileSplit,
        *,
        batch_size: int,
        device: torch.device,
        transform: folders.ImageTransform,
        shuffle: bool,
        seed: int,
        workers: int,
        drop_last: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        super().__init__(split.labels, batch_size=batch_size, device=device, shuffle=shuffle,
                         seed=seed, drop_last=drop_last, memory_format=memory_format)
        self.split = split
        on_device = self.device.type == "cuda"
        self.order = folders.SeededOrder(len(split), shuffle=shuffle)
        self.loader = torch.utils.data.DataLoader(
            folders.ImageFiles(split, transform),
            batch_size=batch_size,
            sampler=self.order,
            num_workers=workers,
            drop_last=drop_last,
            pin_memory=on_device,
            persistent_workers=workers > 0,
            # Its workers' base seed from a generator of its own, not the training process's
            # global one (each image's draws come from its own seed anyway).
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # One read from the device per epoch, for the seed the workers' draws derive from.
        seed = torch.randint(2**62, (1,), generator=self.generator, device=self.generator.device)
        self.order.set_epoch_seed(int(seed.item()))
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            yield images.contiguous(memory_format=self.memory_format), labels


Loader = Union[DeviceLoader, FolderLoader]


def eval_loader(data: DataBundle, split: Split, *, batch_size: int, device: torch.device,
                workers: int = 0,
                memory_format: torch.memory_format = torch.contiguous_format) -> Loader:
    """Batches of ``split`` in order, without augmentation, normalised."""
    if isinstance(split, FileSplit):
        return FolderLoader(
            split, batch_size=batch_size, device=device, shuffle=False, seed=0,
            workers=workers, memory_format=memory_format,
            transform=folders.eval_transform(data.info, side=data.stored_side))
    return DeviceLoader(split, batch_size=batch_size, device=device, transform=None,
                        info=data.info, shuffle=False, seed=0, memory_format=memory_format)


#: On the CPU an evaluation batch of about this many pixels per channel keeps a narrow
#: ResNet's activations in cache: 128 images at 32 px, 167 at 28, 32 at 64 (measured in
#: benchmarks/README.md: 1.7–2.5× the throughput of batches of 1,000 on this machine).
CPU_EVAL_PIXELS = 128 * 32 * 32


def eval_batch_size(setting: int | str, info: DatasetInfo, device: torch.device) -> int:
    """``train.eval_batch_size`` resolved: a number is kept; ``auto`` is 1024 images on a GPU
    and :data:`CPU_EVAL_PIXELS` worth of images (16 to 1024) on the CPU."""
    if setting != "auto":
        return int(setting)
    if device.type != "cpu":
        return 1024
    height, width = info.image_size
    return max(16, min(1024, CPU_EVAL_PIXELS // (height * width)))


def build_loaders(
    data: DataBundle,
    cfg: TrialConfig,
    *,
    device: torch.device,
    seed: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[Loader, Loader, Loader]:
    """The training loader (shuffled, augmented) and the validation and test loaders."""
    train, info = cfg.train, data.info
    # A last batch of one image would break batch norm; small datasets keep every batch.
    drop_last = len(data.train.labels) > train.batch_size
    if isinstance(data.train, FileSplit):
        train_loader: Loader = FolderLoader(
            data.train, batch_size=train.batch_size, device=device,
            transform=folders.train_transform(cfg.augment, info, side=data.stored_side),
            shuffle=True, seed=seed,
            workers=cfg.data.workers, drop_last=drop_last, memory_format=memory_format)
    else:
        train_loader = DeviceLoader(
            data.train, batch_size=train.batch_size, device=device,
            transform=build_augment(cfg.augment, info), info=info, shuffle=True, seed=seed,
            drop_last=drop_last, memory_format=memory_format)
    eval_args = dict(batch_size=eval_batch_size(train.eval_batch_size, info, device),
                     device=device, workers=cfg.data.workers, memory_format=memory_format)
    return (train_loader, eval_loader(data, data.val, **eval_args),
            eval_loader(data, data.test, **eval_args))


def preview_images(data: DataBundle, split: Split, n: int) -> Tensor:
    """The first ``n`` images of ``split`` as uint8 ``N×C×H×W``, as evaluation sees them
    before normalisation (for prediction grids and Grad-CAM overlays)."""
    if isinstance(split, FileSplit):
        return folders.preview_images(split, data.info, side=data.stored_side, n=n)
    return center_crop(split.images[:n], size=data.info.image_size[0])
