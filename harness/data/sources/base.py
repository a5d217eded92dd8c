"""What every dataset source shares: the contract, the in-memory split, the stratified carve.

``DatasetSource`` says where one dataset's files live, how to fetch them and how to read them;
``ensure`` turns an absent dataset into the one-line ``DataError`` that says which file to put
where.  A source reads its training and test splits either into memory (``TensorSplit``: uint8
``N×C×H×W`` images and int64 labels, small enough to sit on the training device whole) or as
files (``FileSplit``, ``harness.data.folders``).  ``stratified_split`` and ``holdout_count``
carve a held-out set class by class with a fixed seed: the test split of datasets that ship
none, and validation and training subsets (``harness.data.datasets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from harness.config import DataConfig
from harness.data.folders import FileSplit
from harness.downloads import download_timeout
from harness.errors import DataError


@dataclass(frozen=True)
class TensorSplit:
    """One split held whole: uint8 images ``N×C×H×W`` and int64 labels ``N``."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.dtype == torch.int64 and self.labels.shape == self.images.shape[:1]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> TensorSplit:
        index = torch.as_tensor(indices, dtype=torch.long)
        return TensorSplit(self.images[index].contiguous(), self.labels[index].contiguous())


# A split in memory (the device-resident path) or as files (image folders, with workers).
Split = Union[TensorSplit, FileSplit]


class DatasetSource:
    """Where one dataset's files live, how to fetch them and how to read them into tensors.

    ``mean``/``std`` of ``None`` are computed from the training split after the carve.
    """

    def __init__(
        self,
        name: str,
        *,
        hflip: bool,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        self.name = name
        self.hflip = hflip
        self.mean = mean
        self.std = std

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        """Expected paths (relative to root) that are absent; the folder alone if it is."""
        return []

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        """Try to make ``missing(root)`` empty; may raise anything."""

    def hint(self, root: Path, cfg: DataConfig) -> str:
        """Where the user should put which file (completes the missing-data message)."""
        return ""

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        """The full training split, the test split and the class names."""
        raise NotImplementedError

    def location(self, root: Path, cfg: DataConfig) -> str:
        """Where the files read are: a folder or an archive (recorded as the data's source)."""
        return str(root)

    def label(self, cfg: DataConfig) -> str:
        """The dataset's name as recorded: the registry's, or an image folder's own."""
        return self.name

    def image_files(self, root: Path, cfg: DataConfig) -> tuple[Path, Path]:
        """Sources read as files (``FileSplit``): what the decoded cache is keyed by (an
        archive or a folder) and the folder the files are in."""
        raise NotImplementedError(f"{self.name} is read into memory, not as files")

    def ensure(self, root: Path, cfg: DataConfig) -> None:
        """Make the files present (fetching them if allowed) or raise a one-line DataError."""
        download = cfg.download
        missing = self.missing(root, cfg)
        if not missing:
            return
        try:
            with download_timeout():
                self.fetch(root, cfg)
        except DataError:
            raise  # a corrupt or unsafe archive: its own message says what to do
        except Exception as exc:  # noqa: BLE001 - network, disk and archive errors alike
            why = f"download failed ({one_line(exc)})"
        else:
            missing = self.missing(root, cfg)
            if not missing:
                return
            why = "download did not provide it" if download else "data.download is false"
        what = str(missing[0]) + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        then = "run once with network" if download else "set data.download: true with network"
        raise DataError(
            f"{self.name}: {what} not found under {root} and {why}; {self.hint(root, cfg)} or {then}"
        )


def check_labels(labels: Tensor, n_images: int, num_classes: int) -> None:
    """ValueError unless ``labels`` are one per image, each in ``0..num_classes - 1``."""
    if labels.ndim != 1 or len(labels) != n_images:
        raise ValueError(f"{tuple(labels.shape)} labels for {n_images} images")
    if n_images and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1}")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as ``Type: message`` on one line of at most ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stratified_split(labels: np.ndarray, n_holdout: int, *, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), each sorted, holding out ``n_holdout`` images class by class.

    Each class gives its share rounded by largest remainder, so no class is over- or
    under-represented by more than one image, whatever the sizes.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_holdout / len(labels))
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: n_holdout - int(take.sum())]
    take[extra] += 1
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    )
    held.sort()
    kept = np.setdiff1d(np.arange(len(labels)), held, assume_unique=True)
    return kept, held


def holdout_count(size: float | int, n_total: int, *, dataset: str, key: str = "data.val_size",
                  what: str = "validation") -> int:
    """The number of images ``size`` (a fraction < 1 or a count) holds out of ``n_total``;
    a one-line DataError unless both sets keep at least one."""
    count = round(size * n_total) if size < 1 else int(size)
    if not 0 < count < n_total:
        raise DataError(
            f"{dataset}: {key}={size} gives {count} {what} images out of"
            f" {n_total}; it must leave both sets non-empty"
            f" (a fraction < 1 or a count < {n_total})"
        )
    return count
