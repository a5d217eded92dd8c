"""Image-folder datasets: files on disk, decoded and augmented per image in worker processes.

Owns ``FileSplit`` (image paths and labels), the scan of a folder of class subfolders, the
Tiny ImageNet layout (``val/`` re-organised from ``val_annotations.txt``), ``fit`` (the one
geometry every folder image gets first, on both paths), the per-image transforms for training
and evaluation, and the ``Dataset`` the workers read.

One protocol on both paths.  An image is decoded as RGB and fitted: its short side resized to
the image size (antialiased) and the centre square kept; the in-memory path stores exactly
that (``decoded``).  Evaluation sees the fitted image, normalised.  Training runs on it the
very ``BatchTransform`` the in-memory path runs on its batches (``augment.build_augment``:
the policy, the preset's geometry and colour, cutout, normalisation, in that order); the
worker path runs it on a batch of one with the image's own generator.  So an image's training
view is the same function of (image, draws) on both paths, and its evaluation view the same
function of the image, whichever path ``data.in_memory: auto`` picks.

These datasets do not fit on the device as uint8 (Tiny ImageNet at 224 px is 15 GB), so they
keep the classic path: a ``DataLoader`` with workers, one image at a time.  Every image's
random draws come from a seed the main process hands it with its index, so an epoch is the
same whatever the number of workers, and a resumed trial repeats it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.config import AugmentConfig
from harness.data.augment import BatchTransform, build_augment, center_crop, evaluation
from harness.data.info import DatasetInfo
from harness.errors import DataError

# The protocol above; trial runs carry it as the tag ``harness.data_protocol``.  Version 1
# (no tag) evaluated the worker path on a 256/224 resize and centre crop, drew ``resized_crop``
# from the whole image and ran torchvision's per-image transforms, policy after the geometry.
PROTOCOL = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff",
                  ".webp")
# ImageNet's statistics: what pretrained torchvision weights were trained with, and the
# usual choice for any folder of photographs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FileSplit:
    """One split as image files: absolute paths and int64 labels ``N``."""

    paths: tuple[str, ...]
    labels: Tensor

    def __post_init__(self) -> None:
        assert self.labels.dtype == torch.int64 and self.labels.shape == (len(self.paths),)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray) -> FileSplit:
        index = torch.as_tensor(indices, dtype=torch.long)
        return FileSplit(tuple(self.paths[i] for i in index.tolist()),
                         self.labels[index].contiguous())


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_under(folder: Path) -> list[str]:
    """Every image file below ``folder`` (any depth: Tiny ImageNet keeps ``<class>/images/``),
    sorted, so a split's order does not depend on the file system."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in filenames if _is_image(Path(f))]
    return sorted(found)


def class_folders(folder: Path) -> list[str]:
    """The names of ``folder``'s subfolders that hold at least one image, sorted."""
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and _images_under(d))


def scan(folder: Path, classes: Sequence[str], *, dataset: str) -> FileSplit:
    """The images of ``folder/<class>/…`` for each of ``classes`` (label = position in it).

    A class with a folder but no images is an error; a class without a folder has no images
    in this split (a test folder may lack classes)."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        images = _images_under(sub)
        if not images:
            raise DataError(
                f"{dataset}: {sub} has no images ({', '.join(IMAGE_SUFFIXES[:4])}, …);"
                " remove the folder or put the class's images in it"
            )
        paths += images
        labels += [label] * len(images)
    return FileSplit(tuple(paths), torch.tensor(labels, dtype=torch.int64))


def no_classes_error(folder: Path, *, dataset: str) -> DataError:
    """The folder has fewer than two class folders with images: says which, and the layout."""
    found = class_folders(folder)
    layout = (f"expected {folder}/<class>/<image> (or train/ and test/ folders of those),"
              f" images being {', '.join(IMAGE_SUFFIXES[:4])}, …")
    if len(found) == 1:
        return DataError(
            f"{dataset}: {folder} has one class folder with images ({found[0]}); a classifier"
            f" needs at least two classes, one subfolder each: {layout}"
        )
    return DataError(f"{dataset}: {folder} has no class folders with images; {layout}")


# ---------------------------------------------------------------------------------------------
# Tiny ImageNet


def tiny_imagenet_classes(base: Path, *, dataset: str) -> list[str]:
    wnids = base / "wnids.txt"
    try:
        names = [line.strip() for line in wnids.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(f"{dataset}: cannot read {wnids} ({exc})") from None
    if not names or any(not n.isalnum() for n in names):
        raise DataError(f"{dataset}: {wnids} is not a list of WordNet ids (n01443537, …)")
    return sorted(names)


def tiny_imagenet_names(base: Path, wnids: Sequence[str]) -> list[str]:
    """A readable, unique name per class: the first synonym in ``words.txt``, else the id."""
    words: dict[str, str] = {}
    path = base / "words.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [f"{n} ({w})" if seen[n] > 1 else n for n, w in zip(names, wnids)]


def _tiny_imagenet_val_annotations(base: Path, wnids: Sequence[str], *,
                                   dataset: str) -> list[tuple[str, str]]:
    """``(file name, wnid)`` of each line of ``val/val_annotations.txt``, each checked to be a
    plain file name and a known class (names come from a file in the archive)."""
    val = base / "val"
    annotations = val / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(
            f"{dataset}: {annotations} is missing, so {val / 'images'} cannot be sorted into"
            " classes; extract the official tiny-imagenet-200.zip again"
        )
    known = set(wnids)
    out = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not line.strip():
            continue
        if len(fields) < 2:
            raise DataError(f"{dataset}: {annotations}:{number}: expected '<file> <wnid> …'")
        name, wnid = fields[0].strip(), fields[1].strip()
        if Path(name).name != name or name in ("", ".", "..") or wnid not in known:
            raise DataError(
                f"{dataset}: {annotations}:{number}: {name!r} {wnid!r} is not a file name and"
                " a class of wnids.txt"
            )
        out.append((name, wnid))
    return out


def tiny_imagenet_val_in_place(base: Path, wnids: Sequence[str], *, dataset: str) -> FileSplit:
    """The labelled ``val/images`` as a split without moving a file (a read-only data root),
    in the order the re-organised folders give: by class, then by path."""
    images = base / "val" / "images"
    label = {wnid: i for i, wnid in enumerate(wnids)}
    rows = []
    for name, wnid in _tiny_imagenet_val_annotations(base, wnids, dataset=dataset):
        if not (images / name).is_file():
            raise DataError(f"{dataset}: {images / name} does not exist")
        rows.append((label[wnid], str(base / "val" / wnid / name), str(images / name)))
    rows.sort()
    return FileSplit(tuple(path for _, _, path in rows),
                     torch.tensor([lab for lab, _, _ in rows], dtype=torch.int64))


def reorganise_tiny_imagenet_val(base: Path, wnids: Sequence[str], *, dataset: str) -> None:
    """Move ``val/images/<file>`` into ``val/<wnid>/<file>`` as ``val_annotations.txt`` says.

    Idempotent and resumable: files already in their class folder are left alone, so a run
    killed half-way finishes the job next time."""
    val = base / "val"
    images = val / "images"
    if not images.is_dir():
        return  # already re-organised
    annotations = val / "val_annotations.txt"
    for name, wnid in _tiny_imagenet_val_annotations(base, wnids, dataset=dataset):
        source, target = images / name, val / wnid / name
        if source.is_file():
            target.parent.mkdir(exist_ok=True)
            os.replace(source, target)
        elif not target.is_file():
            raise DataError(f"{dataset}: {annotations}: {source} does not exist")
    try:
        images.rmdir()
    except OSError:
        pass  # images no annotation names stay where they were; they belong to no class


# ---------------------------------------------------------------------------------------------
# Decoding and transforms


def decode(path: str) -> Tensor:
    """One image file as uint8 RGB ``3×H×W`` (grey and palette images are converted)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError:
        pass  # a format torchvision's decoders lack (bmp, tiff, …): PIL has them
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as image:
            return pil_to_tensor(image.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable file
        raise DataError(f"cannot decode image {path} ({type(exc).__name__}: {exc})") from None


def native_size(split: FileSplit) -> int:
    """The short side of the split's first image: the crop size when none is configured."""
    image = decode(split.paths[0])
    return int(min(image.shape[-2:]))


def fit(image: Tensor, size: int) -> Tensor:
    """The short side resized to ``size`` (antialiased) and the centre ``size×size`` kept: what
    every folder image is before anything else, on both paths."""
    if tuple(image.shape[-2:]) == (size, size):
        return image
    from torchvision.transforms.v2 import functional as F

    return F.center_crop(F.resize(image, size, antialias=True), [size, size])


def stored_side(size: int, crop_pct: float) -> int:
    """The side every image is fitted to (``data.image_size / data.crop_pct``): ImageNet's 256
    for 224 at 0.875; ``size`` itself at 1."""
    return size if crop_pct >= 1 else round(size / crop_pct)


class ImageTransform:
    """One decoded image of the worker path to the model's input (module docstring): fitted to
    ``side``, then ``transform`` (training's augmentation, or evaluation's centre crop) on a
    batch of one, drawing from a generator seeded with ``seed``."""

    def __init__(self, transform: BatchTransform, *, side: int) -> None:
        self.transform = transform
        self.side = side

    def __call__(self, image: Tensor, seed: int) -> Tensor:
        batch = fit(image, self.side).unsqueeze(0)
        return self.transform(batch, generator=torch.Generator().manual_seed(seed))[0]


def train_transform(cfg: AugmentConfig, info: DatasetInfo, *, side: int | None = None
                    ) -> ImageTransform:
    """Training on the worker path: ``cfg``'s batched augmentation, one image at a time, on
    images fitted to ``side`` (by default the model's input size)."""
    return ImageTransform(build_augment(cfg, info), side=side or info.image_size[0])


def eval_transform(info: DatasetInfo, *, side: int | None = None) -> ImageTransform:
    return ImageTransform(evaluation(info), side=side or info.image_size[0])


def preview_images(split: FileSplit, info: DatasetInfo, *, side: int | None, n: int) -> Tensor:
    """The first ``n`` images as evaluation sees them, before normalisation: uint8 N×3×S×S."""
    size = info.image_size[0]
    return torch.stack([center_crop(fit(decode(p), side or size), size=size)
                        for p in split.paths[:n]])


class ImageFiles(torch.utils.data.Dataset):
    """Items are ``(index, seed)``: the image is decoded, then transformed with its draws from
    a generator of its own seeded with ``seed``, so they do not depend on which worker got it,
    and the training process's global random state (dropout, mixing) is never touched."""

    def __init__(self, split: FileSplit, transform: ImageTransform) -> None:
        self.paths = split.paths
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = item
        return self.transform(decode(self.paths[index]), seed), self.labels[index]


class SeededOrder(torch.utils.data.Sampler):
    """An epoch's order and per-image seeds, both drawn from one seed given before the epoch."""

    def __init__(self, n: int, *, shuffle: bool) -> None:
        self.n = n
        self.shuffle = shuffle
        self.order = torch.arange(n)
        self.seeds = torch.zeros(n, dtype=torch.int64)

    def set_epoch_seed(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        self.seeds = torch.randint(2**62, (self.n,), generator=g)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(zip(self.order.tolist(), self.seeds.tolist()))
