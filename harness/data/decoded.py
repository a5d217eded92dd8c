"""Image folders held in memory: every image decoded once, into a cache in the data root.

A folder of small images (CIFAR-10 as JPEGs is 60,000 files of 32×32) decoded and augmented
one image at a time by two DataLoader workers cannot feed a model; as uint8 tensors it takes
the path MNIST and CIFAR's pickles take (``DeviceLoader``: the split on the device, batched
augmentation).  ``data.in_memory`` chooses:

- ``auto`` (the default): in memory when the decoded images, train and test, fit
  ``data.memory_budget_gb`` (4 GB: CIFAR-10 is 0.18 GB, Tiny ImageNet at 64 px 1.3 GB, at
  224 px 15 GB) and either share one size or ``data.image_size`` is set; else the worker path.
- ``true``: in memory, or one line saying which key or file stands in the way.
- ``false``: the worker path.

The cache is ``<data root>/.harness-cache/<folder>-<path digest>-<size>px-<key>/`` (under
``~/.cache/harness`` instead when the data root is read-only): ``train.npy``,
``test.npy`` (uint8 ``N×3×S×S``) and ``meta.json`` (labels, classes, the files' order).  The
key digests the source — the archive's bytes when ``data.path`` is an archive, else every
image's path, size and modification time — with the image size and this module's format, so
changed files give a new key and a new cache; stale caches of the same folder are removed.
Caches are built under a lock (concurrent trials and workers decode once, the others wait) in
a staging folder renamed into place when complete, so a process killed half-way leaves
nothing a later run would trust; a cache that does not load whole is rebuilt.

With ``data.image_size`` (or ``data.crop_pct`` < 1) set, each image is fitted to
``folders.stored_side`` (``folders.fit``: the short side resized, the centre kept), as the
worker path fits each image it decodes, so both paths see the same images (``folders``'
module docstring); without them every image must have the size of the first, and is stored
as it is (its centre square is taken after loading).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.data.archives import archive_sha256, locked
from harness.data.folders import FileSplit, decode, fit

CACHE_DIR = ".harness-cache"
FORMAT = 1
GB = 10**9


class MixedSizes(Exception):
    """An image whose size differs from the first one's, with no ``data.image_size``."""

    def __init__(self, path: str, shape: tuple[int, int], expected: tuple[int, int]) -> None:
        super().__init__(path)
        self.path, self.shape, self.expected = path, shape, expected


def decoded_bytes(n_images: int, size: int) -> int:
    return n_images * 3 * size * size


def source_key(source: Path, images: Path, files: Sequence[str], *, size: int | None) -> str:
    """A digest of what the cache is decoded from (module docstring); an archive's sha256
    comes from its extraction's stamp when that still matches, so a trial does not read the
    archive again."""
    digest = hashlib.sha256(f"harness-decoded {FORMAT} size={size}\n".encode())
    if source.is_file():  # an archive: its bytes
        digest.update(archive_sha256(source, images).encode())
    else:
        for path in files:
            st = os.stat(path)
            rel = os.path.relpath(path, source)
            digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decode_all(paths: Sequence[str], *, size: int | None,
               expected: tuple[int, int] | None = None) -> Tensor:
    """Every image as uint8 ``N×3×S×S`` (``MixedSizes`` when ``size`` is None and one's size
    is not ``expected``, by default the first one's; ``DataError`` naming a file that does not
    decode)."""
    first = decode(paths[0])
    if size is not None:
        expected = (size, size)
    elif expected is None:
        expected = tuple(first.shape[-2:])
    out = torch.empty((len(paths), 3, *expected), dtype=torch.uint8)
    for i, path in enumerate(paths):
        image = first if i == 0 else decode(path)
        if size is None and tuple(image.shape[-2:]) != expected:
            raise MixedSizes(path, tuple(image.shape[-2:]), expected)
        out[i] = image if size is None else fit(image, size)
    return out


def _names(split: FileSplit, images: Path) -> list[str]:
    return [os.path.relpath(p, images) for p in split.paths]


def _load(folder: Path, images: Path, train: FileSplit, test: FileSplit
          ) -> tuple[Tensor, Tensor] | None:
    """The cached images, or None when the cache is absent or does not load whole."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = [torch.from_numpy(np.load(folder / f"{name}.npy", allow_pickle=False))
                  for name in ("train", "test")]
    except (OSError, ValueError, EOFError) as exc:
        if folder.exists():
            print(f"note: decoded cache {folder} does not load ({type(exc).__name__}); rebuilding",
                  file=sys.stderr)
        return None
    for split, name, tensor in ((train, "train", arrays[0]), (test, "test", arrays[1])):
        if (meta.get("format") != FORMAT or meta.get(f"{name}_files") != _names(split, images)
                or meta.get(f"{name}_labels") != split.labels.tolist()
                or tensor.dtype != torch.uint8 or tensor.ndim != 4 or len(tensor) != len(split)):
            print(f"note: decoded cache {folder} does not match its images; rebuilding",
                  file=sys.stderr)
            return None
    return arrays[0], arrays[1]


def _write(folder: Path, train: FileSplit, test: FileSplit, arrays: tuple[Tensor, Tensor],
           *, source: Path, images: Path, size: int | None) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        for name, tensor in zip(("train", "test"), arrays):
            np.save(staging / f"{name}.npy", tensor.numpy(), allow_pickle=False)
        meta = {"format": FORMAT, "source": str(source), "image_size": size}
        for name, split in (("train", train), ("test", test)):
            meta[f"{name}_files"] = _names(split, images)
            meta[f"{name}_labels"] = split.labels.tolist()
        (staging / "meta.json").write_text(json.dumps(meta))
        if folder.exists():  # one that did not load: replaced whole
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def writable(folder: Path) -> bool:
    """Whether ``folder`` is meant to be written: permitted, and with a write bit set (root may
    write anywhere, but a folder of mode 555 is read-only by intent, as a shared dataset is)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def derived_root(root: Path) -> Path:
    """Where files derived from a dataset (extractions, decoded caches) go: the data root when
    it is writable (or does not exist yet), else ``$XDG_CACHE_HOME/harness`` (by default
    ``~/.cache/harness``), so a read-only shared data root is read and never written."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if writable(probe):
        return root
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "harness"


def cache_folder(root: Path, source: Path, key: str, size: int | None) -> Path:
    """``<folder>-<where>-<size>px-<key>``: ``where`` digests the source's full path, so two
    folders of one name (``a/pets``, ``b/pets``) keep a cache each instead of taking each
    other's for stale."""
    stem = source.name.split(".")[0] or "images"
    where = hashlib.sha256(os.fsencode(os.path.abspath(source))).hexdigest()[:8]
    return derived_root(root) / CACHE_DIR / f"{stem}-{where}-{size or 'native'}px-{key}"


def load_decoded(root: Path, source: Path, images: Path, train: FileSplit, test: FileSplit,
                 *, size: int | None) -> tuple[Tensor, Tensor]:
    """The train and test images as uint8 tensors, from the cache or decoded into it (module
    docstring).  ``source`` is ``data.path`` (a folder or an archive), ``images`` the folder
    the splits' files are in (the archive's extraction).  ``MixedSizes`` and ``DataError``
    pass through."""
    key = source_key(source, images, [*train.paths, *test.paths], size=size)
    folder = cache_folder(root, source, key, size)
    # Found once per content: the next trial goes to the worker path without decoding again.
    mixed = folder.parent / f"{folder.name}.mixed.json"
    with locked(folder.parent / f"{folder.name}.lock"):
        if mixed.is_file():
            found = json.loads(mixed.read_text())
            raise MixedSizes(found["path"], tuple(found["shape"]), tuple(found["expected"]))
        cached = _load(folder, images, train, test)
        if cached is not None:
            return cached
        try:
            train_images = decode_all(train.paths, size=size)
            arrays = (train_images, decode_all(test.paths, size=size,
                                               expected=tuple(train_images.shape[-2:])))
        except MixedSizes as exc:
            mixed.write_text(json.dumps({"path": exc.path, "shape": exc.shape,
                                         "expected": exc.expected}))
            raise
        _write(folder, train, test, arrays, source=source, images=images, size=size)
    _remove_stale(folder)
    return arrays


def _remove_stale(current: Path) -> None:
    """Caches of the same source and size under other keys (its files changed since), and
    staging folders left by killed processes, unless another process holds their lock."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for other in current.parent.iterdir():
        name = other.name
        partial = name.startswith(f".{prefix}") and ".partial-" in name
        if name.startswith(prefix) and name.endswith(".mixed.json"):
            other.unlink(missing_ok=True)
            continue
        if other == current or not other.is_dir() or not (name.startswith(prefix) or partial):
            continue
        lock = current.parent / (f"{name.split('.partial-')[0].lstrip('.')}.lock" if partial
                                 else f"{name}.lock")
        try:
            with open(lock, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(other, ignore_errors=True)
                if not partial:
                    lock.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            continue  # being built or read right now
