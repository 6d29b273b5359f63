"""The decoded-image cache (data.cache): an image folder, archive or labels CSV is decoded once and
its uint8 arrays kept on disk, so later fits, evaluate, resume and sweep trials skip the decode.

Where: $CNNTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/cnntrain, else ~/.cache/cnntrain; never inside the
user's data folder. One folder per entry, named by a key over what decides the pixels: every source
file's path, size and modification time, image_size, color_mode, resize and on_broken, and this
module's FORMAT. An entry is written into a temporary folder and renamed into place whole, so a
fit killed while it decodes leaves no entry, only a temporary folder the next build removes (the
builder holds a lock on it: a folder whose lock is free is a dead build's). The images are written
there block by block as they are decoded (rows.Writer), never all held in memory. An entry is
checked before use (its manifest, each array's header, shape and byte size); a damaged one is
removed and built again, never trusted. Its images are read as rows.Rows: a batch at a time.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid

import numpy as np

from . import labels_csv, rows

FORMAT = 2   # 2: every array's header is rows.HEADER_BYTES long
MANIFEST = "manifest.json"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_TMP = ".tmp-"
_LOCK = ".building"


def root() -> str:
    given = os.environ.get("CNNTRAIN_CACHE_DIR")
    if given:
        return os.path.abspath(os.path.expanduser(given))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "cnntrain")


def _stat(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _files_under(folder: str) -> list:
    found, seen = [], set()
    for here, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(here, name)
            if os.path.isfile(path):
                found.append(_stat(path))
    return found


def key(name: str, kind: str, path: str, options) -> str:
    """The entry's name for data set `name` read from `path` by reader `kind` (image_dir, archive,
    labels): a built-in name's checks passed when it was built."""
    if kind == "image_dir":
        files = _files_under(path)
    elif kind == "labels":
        folder = os.path.dirname(os.path.abspath(path))
        files = [_stat(path)] + [_stat(os.path.join(folder, row["filename"])) for _, row in labels_csv.rows(path)
                                 if os.path.isfile(os.path.join(folder, row["filename"]))]
    else:
        files = [_stat(path)]
    described = {"format": FORMAT, "name": name, "kind": kind, "files": files, "image_size": options.image_size,
                 "color_mode": options.color_mode, "resize": options.resize, "on_broken": options.on_broken}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def _open_npy(path: str):
    """(offset of the data, shape, dtype) of a .npy file whose size is exactly what its header says."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
    if fortran or dtype.hasobject:
        raise ValueError(f"{path} is not a plain C-ordered array")
    if os.path.getsize(path) != offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ValueError(f"{path} is {os.path.getsize(path):,} bytes, not what its header says")
    return offset, shape, dtype


def load(entry: str):
    """(x_train, y_train, x_test, y_test, classes, skipped) of a complete, sound entry, or None. The
    images are rows.Rows, read when indexed; the labels arrays; a damaged entry is removed."""
    folder = os.path.join(root(), entry)
    if not os.path.isdir(folder):
        return None
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        arrays = {}
        for name in _ARRAYS:
            shape = manifest["shapes"].get(name)
            if shape is None:
                arrays[name] = None
                continue
            path = os.path.join(folder, f"{name}.npy")
            offset, got, dtype = _open_npy(path)
            if list(got) != shape or dtype != np.dtype(manifest["dtypes"][name]):
                raise ValueError(f"{name} is {got} {dtype}, the manifest says {shape}")
            arrays[name] = (rows.Rows(path, offset, got, dtype) if name.startswith("x_")
                            else np.load(path, allow_pickle=False))
        classes, skipped = list(manifest["classes"]), list(manifest["skipped"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        shutil.rmtree(folder, ignore_errors=True)   # damaged: built again by the caller
        return None
    try:   # the manifest's time is the entry's last use, which `cnntrain data cache` shows
        os.utime(os.path.join(folder, MANIFEST))
    except OSError:   # a read-only cache is still read
        pass
    return (*(arrays[n] for n in _ARRAYS), classes, skipped)


class Build:
    """An entry being written: `into` gives decode.Output the files the images are decoded into,
    `commit` writes the rest and renames the folder into place; `close` removes what is left of it.
    Raises OSError where the cache cannot be written at all."""

    def __init__(self, entry: str, about: dict | None = None):
        # `about`: what `cnntrain data cache` shows of the entry (its source folder, image size...).
        self.about = dict(about or {})
        base = root()
        os.makedirs(base, exist_ok=True)
        _clean_stale(base)
        self.entry, self.tmp = entry, os.path.join(base, f"{_TMP}{entry}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp)
        self._lock = os.open(os.path.join(self.tmp, _LOCK), os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.writers: dict[str, rows.Writer] = {}

    def into(self, split: str, shape) -> rows.Writer:
        self.writers[split] = rows.Writer(os.path.join(self.tmp, f"{split}.npy"), shape)
        return self.writers[split]

    def commit(self, x_train, y_train, x_test, y_test, classes, skipped) -> None:
        arrays = dict(zip(_ARRAYS, (x_train, y_train, x_test, y_test)))
        shapes = {}
        for name, a in arrays.items():
            if isinstance(a, rows.Writer):
                a.close()
            elif a is not None:
                with open(os.path.join(self.tmp, f"{name}.npy"), "wb") as f:
                    f.write(rows.header(a.shape, a.dtype))
                    f.write(np.ascontiguousarray(a).data.cast("B"))
                    f.flush()
                    os.fsync(f.fileno())
            shapes[name] = None if a is None else [list(a.shape), str(a.dtype)]
        manifest = {"format": FORMAT, "about": self.about, "classes": list(classes), "skipped": list(skipped),
                    "shapes": {n: (v and v[0]) for n, v in shapes.items()},
                    "dtypes": {n: (v and v[1]) for n, v in shapes.items()}}
        with open(os.path.join(self.tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        final = os.path.join(root(), self.entry)
        os.rename(self.tmp, final)   # whole, or (another process won) not at all
        self.tmp = final
        os.remove(os.path.join(final, _LOCK))

    def close(self) -> None:
        for w in self.writers.values():
            w._closer()
        os.close(self._lock)
        if os.path.basename(self.tmp).startswith(_TMP):   # not committed
            shutil.rmtree(self.tmp, ignore_errors=True)


def _clean_stale(base: str) -> None:
    """Removes the temporary folders of builds that died (killed, or the machine went down)."""
    for name in os.listdir(base):
        if name.startswith(_TMP) and not _building(os.path.join(base, name)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _building(folder: str) -> bool:
    """Whether a live process holds the build lock of this temporary folder."""
    try:
        fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR)
    except OSError:   # no lock file: a build older than locks, or one just starting
        try:
            return time.time() - os.path.getmtime(folder) < 3600
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def entries() -> list[dict]:
    """Every complete entry: its name, size in bytes, images and classes; temporary folders too."""
    base = root()
    found = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        if not os.path.isdir(path):
            continue
        size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
        row = {"entry": name, "bytes": size, "partial": name.startswith(_TMP)}
        try:
            with open(os.path.join(path, MANIFEST), encoding="utf-8") as f:
                manifest = json.load(f)
            row["images"] = sum(manifest["shapes"][n][0] for n in ("x_train", "x_test") if manifest["shapes"][n])
            row["classes"] = len(manifest["classes"])
            row["about"] = manifest.get("about") or {}
            row["shape"] = next((manifest["shapes"][n][1:] for n in ("x_train", "x_test") if manifest["shapes"][n]), None)
            row["used"] = os.path.getmtime(os.path.join(path, MANIFEST))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            row["images"] = row["classes"] = row["used"] = row["shape"] = None
            row["about"] = {}
        found.append(row)
    # The entry used last first: the one a user looks for, and old ones at the bottom to clear.
    return sorted(found, key=lambda r: -(r["used"] or 0))


def clear() -> tuple[int, int]:
    """Removes every entry and temporary folder: (folders removed, bytes freed)."""
    found = entries()
    for row in found:
        shutil.rmtree(os.path.join(root(), row["entry"]), ignore_errors=True)
    return len(found), sum(r["bytes"] for r in found)
