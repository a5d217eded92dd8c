"""Lineage: what a trial trained, validated and was tested on, as the tracking store records it.

Each split is described by the dataset's name, where its files are (a path, or the URL they
came from), a digest of exactly the images and labels the split holds, its size and its image
shape.  The digest is of the content after every carve (validation, ``data.train_size``), so
two trials on different data (another archive, another subset) have different digests, and two
trials on the same data the same one, wherever the files lie.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from harness.data.folders import FileSplit

# MLflow's contexts for a run's inputs: the UI shows them beside each dataset.
CONTEXTS = ("train", "validation", "test")
DIGEST_LENGTH = 16  # hex digits; MLflow keeps at most 36


@dataclass(frozen=True)
class SplitRecord:
    context: str  # train | validation | test
    name: str  # the dataset: "cifar10", or an image folder's name
    source: str  # the files' path (or URL)
    digest: str
    n_images: int
    image_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    path: str = "memory"  # memory (uint8 tensors, batched augmentation) or files (workers)

    def profile(self) -> dict[str, object]:
        return {"num_images": self.n_images, "image_shape": list(self.image_shape),
                "num_classes": self.num_classes, "context": self.context,
                "data_path": self.path}


def split_digest(split) -> str:
    """sha256 of a split's content: its uint8 image bytes, shape and labels in memory; for
    image files (the worker path), each file's name relative to the split's common folder,
    size, modification time and label."""
    h = hashlib.sha256()
    if isinstance(split, FileSplit):
        base = os.path.commonpath(split.paths) if split.paths else ""
        for path in split.paths:
            stat = os.stat(path)
            h.update(f"{os.path.relpath(path, base)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                     .encode())
    else:
        images = split.images.contiguous()
        h.update(repr(tuple(images.shape)).encode())
        h.update(memoryview(images.numpy()).cast("B"))
    h.update(memoryview(split.labels.contiguous().numpy()).cast("B"))
    return h.hexdigest()[:DIGEST_LENGTH]


def describe(name: str, source: str, *, shape: tuple[int, int, int], num_classes: int,
             splits: tuple) -> tuple[SplitRecord, ...]:
    """The train, validation and test splits (``TensorSplit`` or ``FileSplit``) of the dataset
    ``name`` read from ``source``, images of ``shape`` (C, H, W)."""
    return tuple(SplitRecord(context, name, source, split_digest(split), len(split), shape,
                             num_classes, "files" if isinstance(split, FileSplit) else "memory")
                 for context, split in zip(CONTEXTS, splits))
