"""scikit-learn's bundled 8×8 digits: no files, no network; the test split is carved here."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from harness.config import DataConfig
from harness.data.sources.base import DatasetSource, Split, TensorSplit, stratified_split

# Fixed, and independent of the trial seed, like every carve (``harness.data.datasets``).
DIGITS_TEST_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def digits_file() -> Path | None:
    """The CSV file scikit-learn ships its digits in, located without importing it."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    return csv if csv is not None and csv.is_file() else None


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits`` gives them: images (n, 8, 8) of counts 0..16 and
    their labels.

    Read straight from the CSV file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``,
    64 pixel columns then the label), which is what ``load_digits`` parses: importing
    scikit-learn to call it costs every process a second at start-up.  Where that file is not
    found (another layout), ``load_digits`` itself.
    """
    csv = digits_file()
    if csv is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    with gzip.open(csv, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


class DigitsSource(DatasetSource):
    """scikit-learn's bundled 8×8 digits: no files, no network; the test split is carved here."""

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(digits_file() or "sklearn.datasets.load_digits")

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        images, target = read_digits()
        # Pixel values are counts 0..16 of a 4×4 block; rescale to the uint8 range of every
        # other dataset so that augmentation and normalisation treat them alike.
        pixels = np.rint(images * (255.0 / 16.0)).astype(np.uint8)
        full = TensorSplit(
            torch.from_numpy(pixels).unsqueeze(1).contiguous(),
            torch.from_numpy(target.astype(np.int64)),
        )
        n_test = round(DIGITS_TEST_FRACTION * len(full))
        train, test = stratified_split(full.labels.numpy(), n_test, seed=DIGITS_TEST_SEED)
        return full.subset(train), full.subset(test), [str(c) for c in range(10)]
