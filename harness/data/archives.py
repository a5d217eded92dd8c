"""Safe extraction of dataset archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz).

Owns ``extract``: every member is checked before anything is written, so an archive that would
write outside its destination (an absolute name, a ``..`` component, a link pointing away, a
device file) is refused whole with one line naming the member.  Extraction goes to a temporary
folder beside the destination and is renamed into place at the end, so a crash or a corrupt
member half-way leaves no half-extracted dataset behind for the next run to trust.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from harness.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """``tiny-imagenet-200.zip`` → ``tiny-imagenet-200``; ``pets.tar.gz`` → ``pets``."""
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_name(name: str, *, archive: Path, dataset: str) -> None:
    """A member name must stay inside the destination once joined to it."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise DataError(
            f"{dataset}: {archive}: member {name!r} would be written outside the data root;"
            " refusing to extract it (repack the archive with relative paths)"
        )


def _zip_members(archive: Path, zf: zipfile.ZipFile, *, dataset: str) -> None:
    for info in zf.infolist():
        _check_name(info.filename, archive=archive, dataset=dataset)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(
                f"{dataset}: {archive}: member {info.filename!r} is a symbolic link;"
                " refusing to extract it (links could point outside the data root)"
            )


def _tar_members(archive: Path, tf: tarfile.TarFile, *, dataset: str) -> None:
    for member in tf.getmembers():
        _check_name(member.name, archive=archive, dataset=dataset)
        if member.issym() or member.islnk():
            target = PurePosixPath(member.name).parent / member.linkname
            if member.islnk():
                target = PurePosixPath(member.linkname)
            try:
                _check_name(str(target), archive=archive, dataset=dataset)
            except DataError:
                raise DataError(
                    f"{dataset}: {archive}: member {member.name!r} links to"
                    f" {member.linkname!r}, outside the data root; refusing to extract it"
                ) from None
        elif not (member.isfile() or member.isdir()):
            raise DataError(
                f"{dataset}: {archive}: member {member.name!r} is a device or fifo;"
                " refusing to extract it"
            )


# Errors of writing the extraction (a full disk, a quota, a file-size limit, a read-only or
# forbidden folder): the archive is not corrupt, and must not be reported so.
_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                 errno.EPERM}


def _corrupt(archive: Path, exc: BaseException, *, dataset: str) -> DataError:
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return DataError(
        f"{dataset}: {archive} is not a readable archive ({what}); delete it and download or"
        " copy it again"
    )


def extract(archive: Path, dest: Path, *, dataset: str) -> Path:
    """Extract ``archive`` so that its contents end up in ``dest`` (a folder that must not
    exist yet); an archive holding a single folder gives that folder's contents.  Returns
    ``dest``.  Raises a one-line ``DataError`` for an unsafe or corrupt
    archive, leaving nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    _zip_members(archive, zf, dataset=dataset)
                    zf.extractall(staging)  # CRC-checks every member as it reads it
            else:
                with tarfile.open(archive) as tf:
                    _tar_members(archive, tf, dataset=dataset)
                    # The stdlib's own guard as well (PEP 706): it refuses what we checked.
                    tf.extractall(staging, filter="data")
        except DataError:
            raise
        except OSError as exc:
            if exc.errno in _CANNOT_WRITE:  # the destination's fault, not the archive's
                raise DataError(
                    f"{dataset}: cannot extract {archive} into {dest.parent}"
                    f" ({os.strerror(exc.errno)}); free space there or give another"
                    " --data-root, then run again (the archive itself is fine)"
                ) from None
            raise _corrupt(archive, exc, dataset=dataset) from None
        except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, ValueError) as exc:
            raise _corrupt(archive, exc, dataset=dataset) from None
        # An archive of one top-level folder (``tiny-imagenet-200/…``) is that folder.
        entries = list(staging.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        top.rename(dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


# ---------------------------------------------------------------------------------------------
# Extractions that follow their archive

STAMP = ".harness-archive.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def locked(path: Path):
    """An exclusive flock on ``path`` (created if absent) for the block: one process at a time
    extracts an archive or builds a cache, the others wait and then find it done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def archive_sha256(archive: Path, folder: Path) -> str:
    """The archive's sha256: from the stamp of its extraction into ``folder`` while the
    archive's size and time still match it, else read from the archive's bytes."""
    st = archive.stat()
    try:
        stamp = json.loads((folder / STAMP).read_text())
        if (stamp.get("size"), stamp.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
            return str(stamp["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    return _sha256(archive)


def _stamp(archive: Path, sha256: str | None = None) -> dict:
    st = archive.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256 or _sha256(archive)}


def archive_changed(archive: Path, folder: Path) -> bool:
    """Whether ``folder`` was extracted from another archive than the one now at ``archive``.

    A folder without a stamp (extracted by hand, or before stamps) is trusted as it is."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    st = archive.stat()
    if (stamp.get("size"), stamp.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return False
    return stamp.get("sha256") != _sha256(archive)  # touched or copied: the bytes decide


def extract_stamped(archive: Path, dest: Path, *, dataset: str) -> Path:
    """``extract`` into ``dest`` with a stamp of the archive; a ``dest`` extracted from another
    archive is replaced whole (the new extraction is complete before the old one goes).
    Concurrent callers extract once: the others find the fresh stamp."""
    with locked(dest.parent / f".{dest.name}.lock"):
        if dest.is_dir() and not archive_changed(archive, dest):
            return dest
        sha256 = _sha256(archive)
        fresh = dest.parent / f".{dest.name}.new-{os.getpid()}"
        if fresh.exists():
            shutil.rmtree(fresh)
        extract(archive, fresh, dataset=dataset)
        (fresh / STAMP).write_text(json.dumps(_stamp(archive, sha256)))
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            dest.rename(old)
            fresh.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            fresh.rename(dest)
    return dest
