"""MNIST and Fashion-MNIST: raw IDX files under the data root, through torchvision's classes."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.config import DataConfig
from harness.data.sources.base import DatasetSource, Split, TensorSplit, check_labels, one_line
from harness.errors import DataError


class MnistSource(DatasetSource):
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
                check_labels(labels, len(images), len(cls.classes))
            except Exception as exc:  # noqa: BLE001 - torchvision asserts on malformed IDX
                raise DataError(
                    f"{self.name}: cannot read {root / self.class_name / 'raw'}"
                    f" ({one_line(exc)}); delete it to download again"
                ) from None
            splits.append(TensorSplit(images.unsqueeze(1).contiguous(), labels.contiguous()))
        return splits[0], splits[1], list(cls.classes)
