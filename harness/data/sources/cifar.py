"""CIFAR-10 and CIFAR-100: torchvision downloads and extracts the archive; the pickles are
read here, because torchvision insists on the md5 of every extracted batch and would refuse
any file it did not ship.  ``CifarUnpickler`` refuses any global a CIFAR batch never holds."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from harness.config import DataConfig
from harness.data.sources.base import DatasetSource, Split, TensorSplit, check_labels, one_line
from harness.errors import DataError


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


class CifarSource(DatasetSource):
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
                f"{self.name}: {path} is corrupt ({one_line(exc)});"
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
            check_labels(labels, len(data), self.num_classes)
        except Exception as exc:  # noqa: BLE001 - missing keys, wrong types, wrong shapes
            raise DataError(
                f"{self.name}: {path} is corrupt ({one_line(exc)});"
                f" delete {path.parent} to download again"
            ) from None
        # Rows hold three 32×32 channel planes (R, G, B), each row-major: already C×H×W.
        images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))
        return TensorSplit(images, labels)


def _concat(parts: list[TensorSplit]) -> TensorSplit:
    return TensorSplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))


def _describe_array(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__
