"""Atomic file writes: a file is either its old self or complete, whatever kills the writer.

Every file cnntrain writes goes through here: the run folder's JSON, CSV and models, and the
pictures. Write errors become `FILE: cannot write: <reason>` with what to do.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from cnntrain.errors import CnntrainError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; on success rename it over `path`.

    A kill at any moment leaves either the old file or the new one, never half of one
    (a kill can leave the temporary file itself: RunLock sweeps those). The temporary file
    is flushed to disk before the rename, and a failed flush fails the write: on file systems
    that allocate late (ext4, XFS, NFS) a full disk may show only then, and renaming a file
    whose data never reached the disk over a good one would lose both.
    """
    path = Path(path)
    suffix = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any file we write
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # this file system has no fsync
            raise
    finally:
        os.close(fd)


def _fsync_dir(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync_tree(path, *, files: bool = True):
    """Flush a folder's files (and the folders themselves) to disk before they are renamed into
    place, as atomic_path does for one file; `files=False`: only the folder's own entry list."""
    path = Path(path)
    if files:
        for parent, _dirs, names in os.walk(path):
            for name in names:
                _fsync(os.path.join(parent, name))
            _fsync_dir(parent)
    _fsync_dir(path)


def write_bytes(path, data: bytes):
    """Write `data` to `path` atomically; a write error names the file."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise write_error(path, exc) from None


def write_text(path, text: str):
    """Write `text` (UTF-8) to `path` atomically; a write error names the file."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, data):
    """Write `data` as indented JSON to `path` atomically (NumPy values as plain numbers)."""
    write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(value):
    """NumPy scalars and arrays as JSON numbers and lists; anything else as its text."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(path, exc: OSError) -> CnntrainError:
    """`FILE: cannot write: <reason>` with what to do. The reason is the system's short text for the
    error number: h5py (weights files) puts a page of its own diagnostics in strerror."""
    if exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = ((exc.strerror or str(exc)).strip().splitlines() or [type(exc).__name__])[0]
    if exc.errno in _READ_ONLY:
        hint = "the folder is read-only or not writable by you: choose another folder with --out"
    elif exc.errno in _FULL:
        hint = "free some disk space or choose another folder with --out"
    else:
        hint = "check the disk and the folder, or choose another folder with --out"
    return CnntrainError(f"cannot write: {reason}", file=str(path),
                         hint=hint + "; the files already in the run folder are intact")


def copy_file(source, path):
    """An atomic copy: `path` is either its old self or a complete copy of `source`."""
    try:
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as exc:
        raise write_error(path, exc) from None


MAX_JSON_BYTES = 64 * 2**20   # far above any file cnntrain writes; a bigger one is not read whole


def read_json(path):
    """A JSON file cnntrain wrote; a missing or unreadable one is a CnntrainError naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise CnntrainError(f"cannot read JSON: the file is over {MAX_JSON_BYTES // 2**20} MB, which no file "
                                "cnntrain writes is", file=str(path))
        return json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise CnntrainError("file not found", file=str(path)) from None
    except RecursionError:   # json nests by recursion: '[' 100,000 deep
        raise CnntrainError("cannot read JSON: nested too deeply", file=str(path)) from None
    except (OSError, ValueError) as exc:   # UnicodeDecodeError is a ValueError
        raise CnntrainError(f"cannot read JSON: {exc}", file=str(path)) from None
