"""Datasets: what a loaded dataset is, and loading one by name.

Owns ``DataBundle`` (what the dataset is, ``DatasetInfo``, and its training, validation and
test splits with their lineage), ``load_dataset`` and the carves it makes: validation from training and an optional training subset
(``data.train_size``), both class by class with a fixed seed, and an image folder decoded into
memory when ``data.in_memory`` allows.  Each source (where the files live, how they are fetched
and read) is a module of ``harness.data.sources``, registered in ``DATASETS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import DataConfig
from harness.data import folders
from harness.data.augment import center_crop
from harness.data.decoded import GB, MixedSizes, decoded_bytes, load_decoded
from harness.data.folders import FileSplit
from harness.data.info import DatasetInfo
from harness.data.lineage import SplitRecord, describe
from harness.data.sources import DATASETS
from harness.data.sources.base import (
    DatasetSource,
    Split,
    TensorSplit,
    holdout_count,
    stratified_split,
)
from harness.errors import DataError

# Fixed, and independent of the trial seed, so that every trial of every study is validated
# and tested on the same images: seed-to-seed variance then measures training, not the split.
# (The sources that carve their own test split do so with fixed seeds as well.)
VAL_SPLIT_SEED = 0
TRAIN_SUBSET_SEED = 0


@dataclass(frozen=True)
class DataBundle:
    """A dataset loaded: what it is, and its training, validation and test splits."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    # Train, validation, test: name, files, digest and size of each (``harness.data.lineage``).
    lineage: tuple[SplitRecord, ...] = ()
    # Image folders: the side every image is fitted to and stored at (``folders.stored_side``:
    # ``data.image_size / data.crop_pct``); the model sees the centre ``info.image_size``.
    stored_side: int | None = None


def _resolve(root: Path | str) -> Path:
    return Path(root).expanduser().absolute()


def check_dataset(cfg: DataConfig, *, root: Path) -> None:
    """Preflight: the dataset's files are present (downloading them if allowed), else DataError."""
    DATASETS.get(cfg.dataset).ensure(_resolve(root), cfg)


def _into_memory(source: DatasetSource, root: Path, cfg: DataConfig, train: FileSplit,
                 test: FileSplit, *, side: int) -> tuple[Split, Split]:
    """An image folder's splits decoded into memory at ``side`` (``folders.stored_side``), as
    ``data.in_memory`` says (``harness.data.decoded``), or left as files."""
    if cfg.in_memory == "false":
        return train, test
    size = side
    n_images = len(train) + len(test)
    need = decoded_bytes(n_images, size)
    if need > cfg.memory_budget_gb * GB:
        if cfg.in_memory == "auto":
            return train, test
        raise DataError(
            f"{cfg.dataset}: data.in_memory=true needs {need / GB:.2f} GB for {n_images} images"
            f" at {size}x{size}, over data.memory_budget_gb={cfg.memory_budget_gb:g}; raise"
            " data.memory_budget_gb, set a smaller data.image_size or data.in_memory: false"
        )
    path, folder = source.image_files(root, cfg)
    try:
        # Native images (no image_size, the whole square) are stored as they are.
        native = cfg.image_size is None and cfg.crop_pct >= 1
        train_images, test_images = load_decoded(root, path, folder, train, test,
                                                 size=None if native else side)
    except MixedSizes as exc:
        if cfg.in_memory == "auto":
            return train, test
        raise DataError(
            f"{cfg.dataset}: {exc.path} is {exc.shape[0]}x{exc.shape[1]}, the first image"
            f" {exc.expected[0]}x{exc.expected[1]}; data.in_memory=true needs one size: set"
            " data.image_size (each image resized and centre-cropped to it) or"
            " data.in_memory: false"
        ) from None
    if native:  # the images' own size, one for all: fitted as the worker path fits them
        train_images, test_images = (center_crop(images, size=side).contiguous()
                                     for images in (train_images, test_images))
    return TensorSplit(train_images, train.labels), TensorSplit(test_images, test.labels)


def load_dataset(cfg: DataConfig, *, root: Path) -> DataBundle:
    """The dataset as uint8 tensors, with validation carved from training by a fixed seed."""
    source = DATASETS.get(cfg.dataset)
    root = _resolve(root)
    source.ensure(root, cfg)
    full_train, test, class_names = source.read(root, cfg)
    input_size = side = None
    if isinstance(full_train, FileSplit):  # an image folder: fitted to one protocol (folders)
        input_size = cfg.image_size or folders.native_size(full_train)
        side = folders.stored_side(input_size, cfg.crop_pct)
        full_train, test = _into_memory(source, root, cfg, full_train, test, side=side)
    n_val = holdout_count(cfg.val_size, len(full_train), dataset=cfg.dataset)
    kept, held = stratified_split(full_train.labels.numpy(), n_val, seed=VAL_SPLIT_SEED)
    train, val = full_train.subset(kept), full_train.subset(held)
    if cfg.train_size is not None:
        size = cfg.train_size
        n_train = round(size * len(train)) if size < 1 else int(size)
        if not 0 < n_train <= len(train):
            raise DataError(
                f"{cfg.dataset}: data.train_size={size} gives {n_train} training images; valid:"
                f" a fraction < 1 or a count from 1 to the {len(train)} that validation leaves"
            )
        if n_train < len(train):
            _, chosen = stratified_split(train.labels.numpy(), n_train, seed=TRAIN_SUBSET_SEED)
            train = train.subset(chosen)

    mean, std = source.mean, source.std
    if mean is None or std is None:
        pixels = train.images.to(torch.float64).div(255).transpose(0, 1).flatten(1)
        mean = tuple(pixels.mean(dim=1).tolist())
        std = tuple(pixels.std(dim=1).tolist())
    if input_size is not None:
        channels = 3  # decoded as RGB
        height = width = input_size
    else:
        _, channels, height, width = train.images.shape
    info = DatasetInfo(
        name=cfg.dataset,
        num_classes=len(class_names),
        in_channels=channels,
        image_size=(height, width),
        class_names=list(class_names),
        mean=mean,
        std=std,
        hflip=source.hflip,
    )
    lineage = describe(source.label(cfg), source.location(root, cfg),
                       shape=(channels, height, width), num_classes=len(class_names),
                       splits=(train, val, test))
    return DataBundle(info=info, train=train, val=val, test=test, lineage=lineage,
                      stored_side=side)
