"""Any folder of class subfolders (``data.path``), or a .zip/.tar archive of one, read as
files (``FileSplit``) and decoded into memory or by workers (``harness.data.datasets``)."""

from __future__ import annotations

from pathlib import Path

from harness.config import DataConfig
from harness.data import folders
from harness.data.archives import archive_changed, archive_stem, extract_stamped, is_archive
from harness.data.decoded import derived_root, writable
from harness.data.sources.base import DatasetSource, Split, holdout_count, stratified_split
from harness.errors import DataError

# Fixed, and independent of the trial seed, like every carve (``harness.data.datasets``).
FOLDER_TEST_SEED = 0


class ImageFolderSource(DatasetSource):
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
            raise DataError(self.not_found(root, cfg))

    def not_found(self, root: Path, cfg: DataConfig) -> str:
        """``data.path`` is absent: as given and, when relative, as resolved against the data
        root (the usual surprise: a path relative to the study file or the shell's folder)."""
        path = self._path(root, cfg)
        if Path(cfg.path or "").expanduser().is_absolute():
            return f"{self.name}: data.path {path} does not exist; {self.hint(root, cfg)}"
        return (f"{self.name}: data.path {cfg.path} does not exist: a relative path is resolved"
                f" against the data root {root}, giving {path}; {self.hint(root, cfg)}, give an"
                " absolute path, or set the data root (--data-root, HARNESS_DATA)")

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
        n_test = holdout_count(cfg.test_size, len(everything), dataset=self.name,
                                key="data.test_size", what="test")
        kept, held = stratified_split(everything.labels.numpy(), n_test, seed=FOLDER_TEST_SEED)
        return everything.subset(kept), everything.subset(held), classes
