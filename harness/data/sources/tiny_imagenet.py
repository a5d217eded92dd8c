"""Tiny ImageNet (200 classes, 64×64): the official zip or its extracted folder, read as
files (``FileSplit``) and decoded into memory or by workers (``harness.data.datasets``)."""

from __future__ import annotations

from pathlib import Path

from harness.config import DataConfig
from harness.data import folders
from harness.data.archives import extract
from harness.data.decoded import derived_root, writable
from harness.data.sources.base import DatasetSource, Split
from harness.errors import DataError


class TinyImageNetSource(DatasetSource):
    """Tiny ImageNet (200 classes, 64×64): the official zip or its extracted folder.

    ``train/<wnid>/images/*.JPEG`` trains; the labelled ``val/`` (re-organised into class
    folders from ``val_annotations.txt``) is the test split, because the official test images
    have no labels; validation is carved from training like every other dataset's."""

    url = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    filename = "tiny-imagenet-200.zip"
    folder = "tiny-imagenet-200"
    md5 = "90528d7ca1a48142e341f4ef8d21d0de"
    size = 64

    def _base(self, root: Path) -> Path:
        """The extracted folder: in the data root, else where a read-only data root's archive
        is extracted (``derived_root``: ``~/.cache/harness``)."""
        here = root / self.folder
        if (here / "wnids.txt").is_file():
            return here
        return derived_root(root) / self.folder

    def missing(self, root: Path, cfg: DataConfig) -> list[Path]:
        return [] if (self._base(root) / "wnids.txt").is_file() else [Path(self.folder)]

    def fetch(self, root: Path, cfg: DataConfig) -> None:
        archive = root / self.filename
        if not archive.is_file() and cfg.download:
            from torchvision.datasets.utils import download_url

            download_url(self.url, str(root), filename=self.filename, md5=self.md5)
        if archive.is_file():
            target = self._base(root)
            if target.exists():
                raise DataError(
                    f"{self.name}: {target} exists but has no wnids.txt; delete it so that"
                    f" {archive} can be extracted there"
                )
            extract(archive, target, dataset=self.name)

    def hint(self, root: Path, cfg: DataConfig) -> str:
        return f"put {self.filename} (from {self.url}) or its extracted folder into {root}"

    def location(self, root: Path, cfg: DataConfig) -> str:
        return str(self._base(root))

    def image_files(self, root: Path, cfg: DataConfig) -> tuple[Path, Path]:
        return self._base(root), self._base(root)

    def read(self, root: Path, cfg: DataConfig) -> tuple[Split, Split, list[str]]:
        base = self._base(root)
        wnids = folders.tiny_imagenet_classes(base, dataset=self.name)
        train = folders.scan(base / "train", wnids, dataset=self.name)
        if (base / "val" / "images").is_dir() and not writable(base / "val"):
            # A read-only data root (README: read-only is fine): read val where it lies.
            test = folders.tiny_imagenet_val_in_place(base, wnids, dataset=self.name)
        else:
            folders.reorganise_tiny_imagenet_val(base, wnids, dataset=self.name)
            test = folders.scan(base / "val", wnids, dataset=self.name)
        for split, part in ((train, "train"), (test, "val")):
            if not len(split):
                raise folders.no_classes_error(base / part, dataset=self.name)
        return train, test, folders.tiny_imagenet_names(base, wnids)
