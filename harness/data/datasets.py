"""Datasets: what each one is, where its files live, and how it reaches memory.

Owns the dataset registry (``DATASETS``), the in-memory form every dataset takes (uint8
``N×C×H×W`` images and int64 labels, small enough to sit on the training device whole), the
fixed-seed train/validation carve, and the one-line ``DataError`` that says which file to put
where when a dataset is absent and cannot be downloaded.

Files come through torchvision's real download code; CIFAR's extracted pickles are read here,
because torchvision insists on the md5 of every extracted batch and would refuse any file it
did not ship.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from harness.config import DataConfig
from harness.data.archives import archive_changed, archive_stem, extract, extract_stamped, is_archive
from harness.data.decoded import (
    GB,
    MixedSizes,
    decoded_bytes,
    derived_root,
    load_decoded,
    writable,
)
from harness.data import folders
from harness.data.folders import FileSplit
from harness.data.lineage import SplitRecord, describe
from harness.downloads import download_timeout
from harness.errors import DataError
from harness.registry import Registry

# Fixed, and independent of the trial seed, so that every trial of every study is validated
# and tested on the same images: seed-to-seed variance then measures training, not the split.
VAL_SPLIT_SEED = 0
DIGITS_TEST_SEED = 0
DIGITS_TEST_FRACTION = 0.2
FOLDER_TEST_SEED = 0
TRAIN_SUBSET_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an augmentation need to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (H, W)
    class_names: list[str]
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]
    hflip: bool  # whether a horizontal flip keeps the label (not for digits)


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


@dataclass(frozen=True)
class DataBundle:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    # Train, validation, test: name, files, digest and size of each (``harness.data.lineage``).
    lineage: tuple[SplitRecord, ...] = ()


# ---------------------------------------------------------------------------------------------
# Sources: one per on-disk format


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
            why = f"download failed ({_one_line(exc)})"
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


class _Digits(DatasetSource):
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


class _TorchvisionIdx(DatasetSource):
    """MNIST and Fashion-MNIST, through torchvision's classes (raw IDX files under root)."""

    def __init__(self, name: str, *, class_name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.class_name = class_name

    @property
    def dataset_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.class_name)

    def _files(self) -> list[str]:
        return [Path(url).stem for url, _ in self.dataset_class.resources]  # drops .gz

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(root / self.class_name / "raw")

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        raw = Path(self.class_name, "raw")
        if not (root / raw).is_dir():
            return [raw]
        return [raw / f for f in self._files() if not (root / raw / f).is_file()]

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        if cfg.download:
            # The constructor downloads all four files; the test split it then reads is small.
            self.dataset_class(str(root), train=False, download=True)

    def hint(self, root: Path, cfg: DataConfig) -> str:
        return (
            f"put {', '.join(self._files())} (gunzipped, from {self.dataset_class.mirrors[0]})"
            f" into {root / self.class_name / 'raw'}"
        )

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        cls = self.dataset_class
        splits = []
        for train in (True, False):
            try:
                ds = cls(str(root), train=train, download=False)
                images, labels = ds.data, ds.targets.to(torch.int64)
                if images.dtype != torch.uint8 or images.ndim != 3:
                    raise ValueError(f"images are {images.dtype} {tuple(images.shape)}")
                _check_labels(labels, len(images), len(cls.classes))
            except Exception as exc:  # noqa: BLE001 - torchvision asserts on malformed IDX
                raise DataError(
                    f"{self.name}: cannot read {root / self.class_name / 'raw'}"
                    f" ({_one_line(exc)}); delete it to download again"
                ) from None
            splits.append(TensorSplit(images.unsqueeze(1).contiguous(), labels.contiguous()))
        return splits[0], splits[1], list(cls.classes)


class CifarUnpickler(pickle.Unpickler):
    """Reads only what CIFAR batches hold: dicts, lists, strings, bytes, numbers and numpy
    arrays with their dtypes.  A plain ``pickle.load`` runs whatever callable a crafted file
    names; here any other global is refused before it is looked up."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        # Python 3 pickles (protocol 2) of bytes, as numpy writes its dtype codes.
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a CIFAR batch never holds (refused)")
        return super().find_class(module, name)


class _CifarPickles(DatasetSource):
    """CIFAR-10/100: torchvision downloads and extracts the archive; the pickles are read here."""

    def __init__(self, name: str, *, class_name: str, label_key: str, num_classes: int,
                 **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.class_name = class_name
        self.label_key = label_key
        self.num_classes = num_classes

    @property
    def dataset_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.class_name)

    def _files(self) -> list[str]:
        cls = self.dataset_class
        return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(root / self.dataset_class.base_folder)

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        folder = Path(self.dataset_class.base_folder)
        if not (root / folder).is_dir():
            return [folder]
        return [folder / f for f in self._files() if not (root / folder / f).is_file()]

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        from torchvision.datasets.utils import (
            check_integrity,
            download_and_extract_archive,
            extract_archive,
        )

        cls = self.dataset_class
        archive = root / cls.filename
        # An archive already in place needs no network, whatever data.download says.
        if archive.is_file() and check_integrity(str(archive), cls.tgz_md5):
            extract_archive(str(archive), str(root))
        elif cfg.download:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename,
                                         md5=cls.tgz_md5)

    def hint(self, root: Path, cfg: DataConfig) -> str:
        cls = self.dataset_class
        return f"put {cls.filename} from {cls.url} into {root}"

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        cls = self.dataset_class
        folder = root / cls.base_folder
        train = _concat([self._batch(folder / f) for f, _ in cls.train_list])
        test = _concat([self._batch(folder / f) for f, _ in cls.test_list])
        meta = self._unpickle(folder / cls.meta["filename"])
        names = meta.get(cls.meta["key"]) if isinstance(meta, dict) else None
        if not (isinstance(names, list) and len(names) == self.num_classes
                and all(isinstance(n, str) for n in names)):
            raise DataError(
                f"{self.name}: {folder / cls.meta['filename']} is corrupt (no list of"
                f" {self.num_classes} {cls.meta['key']}); delete {folder} to download again"
            )
        return train, test, names

    def _unpickle(self, path: Path) -> object:
        try:
            with path.open("rb") as f:
                return CifarUnpickler(f, encoding="latin1").load()  # written by Python 2
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
            raise DataError(
                f"{self.name}: {path} is corrupt ({_one_line(exc)});"
                f" delete {path.parent} to download again"
            ) from None

    def _batch(self, path: Path) -> TensorSplit:
        entry = self._unpickle(path)
        try:
            data, labels = entry["data"], entry[self.label_key]  # type: ignore[index]
            if not (isinstance(data, np.ndarray) and data.dtype == np.uint8
                    and data.ndim == 2 and data.shape[1] == 3 * 32 * 32):
                raise ValueError(f"data is not N×3072 uint8 (got {_describe_array(data)})")
            labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
            _check_labels(labels, len(data), self.num_classes)
        except Exception as exc:  # noqa: BLE001 - missing keys, wrong types, wrong shapes
            raise DataError(
                f"{self.name}: {path} is corrupt ({_one_line(exc)});"
                f" delete {path.parent} to download again"
            ) from None
        # Rows hold three 32×32 channel planes (R, G, B), each row-major: already C×H×W.
        images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))
        return TensorSplit(images, labels)


class _TinyImageNet(DatasetSource):
    """Tiny ImageNet (200 classes, 64×64): the official zip or its extracted folder.

    ``train/<wnid>/images/*.JPEG`` trains; the labelled ``val/`` (re-organised into class
    folders from ``val_annotations.txt``) is the test split, because the official test images
    have no labels; validation is carved from training like every other dataset's."""

    url = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    filename = "tiny-imagenet-200.zip"
    folder = "tiny-imagenet-200"
    md5 = "90528d7ca1a48142e341f4ef8d21d0de"
    size = 64

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        return [] if (root / self.folder / "wnids.txt").is_file() else [Path(self.folder)]

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        archive = root / self.filename
        if not archive.is_file() and cfg.download:
            from torchvision.datasets.utils import download_url

            download_url(self.url, str(root), filename=self.filename, md5=self.md5)
        if archive.is_file():
            target = root / self.folder
            if target.exists():
                raise DataError(
                    f"{self.name}: {target} exists but has no wnids.txt; delete it so that"
                    f" {archive} can be extracted there"
                )
            extract(archive, target, dataset=self.name)

    def hint(self, root: Path, cfg: DataConfig) -> str:
        return f"put {self.filename} (from {self.url}) or its extracted folder into {root}"

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(root / self.folder)

    def image_files(self, root: Path, cfg: DataConfig) -> tuple[Path, Path]:
        return root / self.folder, root / self.folder

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        base = root / self.folder
        wnids = folders.tiny_imagenet_classes(base, dataset=self.name)
        folders.reorganise_tiny_imagenet_val(base, wnids, dataset=self.name)
        train = folders.scan(base / "train", wnids, dataset=self.name)
        test = folders.scan(base / "val", wnids, dataset=self.name)
        for split, part in ((train, "train"), (test, "val")):
            if not len(split):
                raise folders.no_classes_error(base / part, dataset=self.name)
        return train, test, folders.tiny_imagenet_names(base, wnids)


class _ImageFolder(DatasetSource):
    """Any folder of class subfolders (``data.path``), or a .zip/.tar archive of one.

    With ``train/`` and ``test/`` (or ``val/``) subfolders those are the splits; otherwise
    the test split is carved from all images with a fixed seed (``data.test_size``).

    An archive is extracted once, beside it when it is inside the data root and its folder is
    writable, else into the data root, or ``~/.cache/harness`` when that is read-only (never
    into someone else's folder: a shared, read-only dataset stays as it is; an extraction
    already beside the archive is used), with a stamp of the archive's size, time and
    sha256: an archive replaced by another is extracted again, never read from its
    predecessor's files."""

    def _path(self, root: Path, cfg: DataConfig) -> Path:
        if not cfg.path:
            raise DataError(
                f"{self.name}: data.path is not set; give a folder of class subfolders"
                " (or a .zip/.tar archive of one), absolute or relative to the data root"
            )
        path = Path(cfg.path).expanduser()
        return path if path.is_absolute() else root / path

    def _folder(self, root: Path, cfg: DataConfig) -> Path:
        path = self._path(root, cfg)
        if not is_archive(path):
            return path
        beside = path.parent / archive_stem(path)
        if beside.is_dir() or (path.resolve().is_relative_to(root.resolve())
                               and writable(path.parent)):
            return beside
        return derived_root(root) / archive_stem(path)

    def image_files(self, root: Path, cfg: DataConfig) -> tuple[Path, Path]:
        return self._path(root, cfg), self._folder(root, cfg)

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(self._path(root, cfg))

    def label(self, cfg: DataConfig) -> str:
        path = Path(cfg.path or self.name)
        return archive_stem(path) if is_archive(path) else path.name

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        path, folder = self._path(root, cfg), self._folder(root, cfg)
        if not folder.is_dir() or (path.is_file() and archive_changed(path, folder)):
            return [path]
        return []

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        path = self._path(root, cfg)
        if is_archive(path) and path.is_file():
            extract_stamped(path, self._folder(root, cfg), dataset=self.name)

    def hint(self, root: Path, cfg: DataConfig) -> str:
        return "put a folder of class subfolders (or a .zip/.tar archive of one) there"

    def ensure(self, root: Path, cfg: DataConfig) -> None:
        # Nothing to download: only an archive to extract, whatever data.download says.
        self._path(root, cfg)
        if self.missing(root, cfg):
            self.fetch(root, cfg)
        if self.missing(root, cfg):
            raise DataError(
                f"{self.name}: data.path {self._path(root, cfg)} does not exist; {self.hint(root, cfg)}"
            )

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        folder = self._folder(root, cfg)
        train_dir = folder / "train"
        test_dir = next((folder / d for d in ("test", "val") if (folder / d).is_dir()), None)
        if train_dir.is_dir() and test_dir is not None:
            classes = folders.class_folders(train_dir)
            if len(classes) < 2:
                raise folders.no_classes_error(train_dir, dataset=self.name)
            extra = sorted(set(folders.class_folders(test_dir)) - set(classes))
            if extra:
                raise DataError(
                    f"{self.name}: {test_dir} has classes that {train_dir} lacks"
                    f" ({', '.join(extra[:5])}); every test class must be trained on"
                )
            train = folders.scan(train_dir, classes, dataset=self.name)
            test = folders.scan(test_dir, classes, dataset=self.name)
            if not len(test):
                raise folders.no_classes_error(test_dir, dataset=self.name)
            return train, test, classes
        classes = folders.class_folders(folder)
        if len(classes) < 2:
            raise folders.no_classes_error(folder, dataset=self.name)
        everything = folders.scan(folder, classes, dataset=self.name)
        n_test = _holdout_count(cfg.test_size, len(everything), dataset=self.name,
                                key="data.test_size", what="test")
        kept, held = stratified_split(everything.labels.numpy(), n_test, seed=FOLDER_TEST_SEED)
        return everything.subset(kept), everything.subset(held), classes


def _check_labels(labels: Tensor, n_images: int, num_classes: int) -> None:
    if labels.ndim != 1 or len(labels) != n_images:
        raise ValueError(f"{tuple(labels.shape)} labels for {n_images} images")
    if n_images and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1}")


def _concat(parts: list[TensorSplit]) -> TensorSplit:
    return TensorSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def _describe_array(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


DATASETS: Registry[DatasetSource] = Registry("dataset")
DATASETS.add("digits", _Digits("digits", hflip=False))
DATASETS.add("mnist", _TorchvisionIdx(
    "mnist", class_name="MNIST", hflip=False, mean=(0.1307,), std=(0.3081,)))
DATASETS.add("fashion_mnist", _TorchvisionIdx(
    "fashion_mnist", class_name="FashionMNIST", hflip=True, mean=(0.2860,), std=(0.3530,)))
DATASETS.add("cifar10", _CifarPickles(
    "cifar10", class_name="CIFAR10", label_key="labels", num_classes=10, hflip=True,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)))
DATASETS.add("tiny_imagenet", _TinyImageNet(
    "tiny_imagenet", hflip=True, mean=folders.IMAGENET_MEAN, std=folders.IMAGENET_STD))
DATASETS.add("imagefolder", _ImageFolder(
    "imagefolder", hflip=True, mean=folders.IMAGENET_MEAN, std=folders.IMAGENET_STD))
DATASETS.add("cifar100", _CifarPickles(
    "cifar100", class_name="CIFAR100", label_key="fine_labels", num_classes=100, hflip=True,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)))


# ---------------------------------------------------------------------------------------------
# Splitting and loading


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


def _holdout_count(size: float | int, n_total: int, *, dataset: str, key: str = "data.val_size",
                   what: str = "validation") -> int:
    count = round(size * n_total) if size < 1 else int(size)
    if not 0 < count < n_total:
        raise DataError(
            f"{dataset}: {key}={size} gives {count} {what} images out of"
            f" {n_total}; it must leave both sets non-empty"
            f" (a fraction < 1 or a count < {n_total})"
        )
    return count


def _resolve(root: Path | str) -> Path:
    return Path(root).expanduser().absolute()


def check_dataset(cfg: DataConfig, *, root: Path) -> None:
    """Preflight: the dataset's files are present (downloading them if allowed), else DataError."""
    DATASETS.get(cfg.dataset).ensure(_resolve(root), cfg)


def _into_memory(source: DatasetSource, root: Path, cfg: DataConfig, train: FileSplit,
                 test: FileSplit) -> tuple[Split, Split]:
    """An image folder's splits decoded into memory, as ``data.in_memory`` says
    (``harness.data.decoded``), or left as files."""
    if cfg.in_memory == "false":
        return train, test
    size = cfg.image_size or folders.native_size(train)
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
        train_images, test_images = load_decoded(root, path, folder, train, test,
                                                 size=cfg.image_size)
    except MixedSizes as exc:
        if cfg.in_memory == "auto":
            return train, test
        raise DataError(
            f"{cfg.dataset}: {exc.path} is {exc.shape[0]}x{exc.shape[1]}, the first image"
            f" {exc.expected[0]}x{exc.expected[1]}; data.in_memory=true needs one size: set"
            " data.image_size (each image resized and centre-cropped to it) or"
            " data.in_memory: false"
        ) from None
    return TensorSplit(train_images, train.labels), TensorSplit(test_images, test.labels)


def load_dataset(cfg: DataConfig, *, root: Path) -> DataBundle:
    """The dataset as uint8 tensors, with validation carved from training by a fixed seed."""
    source = DATASETS.get(cfg.dataset)
    root = _resolve(root)
    source.ensure(root, cfg)
    full_train, test, class_names = source.read(root, cfg)
    if isinstance(full_train, FileSplit):
        full_train, test = _into_memory(source, root, cfg, full_train, test)
    n_val = _holdout_count(cfg.val_size, len(full_train), dataset=cfg.dataset)
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
    if isinstance(train, FileSplit):
        channels = 3  # decoded as RGB
        height = width = cfg.image_size or folders.native_size(train)
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
    return DataBundle(info=info, train=train, val=val, test=test, lineage=lineage)
