"""The decoded-image cache (data.cache): an image folder, archive or labels CSV is decoded once and
its uint8 arrays kept on disk, so later fits, evaluate, resume and sweep trials skip the decode.

Where: $CNNTRAIN_CACHE_DIR, else $XDG_CACHE_HOME/cnntrain, else ~/.cache/cnntrain; never inside the
user's data folder. One folder per entry, named by a key over what decides the pixels: every source
file's path, size and modification time, image_size, color_mode, resize and on_broken, and this
module's FORMAT. An entry is written into a temporary folder and renamed into place whole, so a
fit killed while it decodes leaves no entry, only a temporary folder the next build removes. An
entry is checked before use (its manifest, each array's header, shape and byte size); a damaged one
is removed and built again, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid

import numpy as np

from . import labels_csv

FORMAT = 1
MANIFEST = "manifest.json"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_TMP = ".tmp-"
_STALE_TMP_S = 24 * 3600   # a temporary folder this old is a killed build's, not a running one's


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


def load(entry: str):
    """(x_train, y_train, x_test, y_test, classes, skipped) of a complete, sound entry, or None. The
    arrays are memory-mapped (read-only); a damaged entry is removed."""
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
            a = np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r", allow_pickle=False)
            if list(a.shape) != shape or a.dtype != np.dtype(manifest["dtypes"][name]):
                raise ValueError(f"{name} is {a.shape} {a.dtype}, the manifest says {shape}")
            arrays[name] = a
        classes, skipped = list(manifest["classes"]), list(manifest["skipped"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        shutil.rmtree(folder, ignore_errors=True)   # damaged: built again by the caller
        return None
    return (*(arrays[n] for n in _ARRAYS), classes, skipped)


def store(entry: str, x_train, y_train, x_test, y_test, classes, skipped) -> None:
    """Writes an entry whole or not at all. A cache that cannot be written costs only the reuse."""
    base = root()
    tmp = os.path.join(base, f"{_TMP}{entry}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(base, exist_ok=True)
        _clean_stale(base)
        os.makedirs(tmp)
        arrays = dict(zip(_ARRAYS, (x_train, y_train, x_test, y_test)))
        for name, a in arrays.items():
            if a is not None:
                with open(os.path.join(tmp, f"{name}.npy"), "wb") as f:
                    np.save(f, np.ascontiguousarray(a), allow_pickle=False)
                    f.flush()
                    os.fsync(f.fileno())
        manifest = {"format": FORMAT, "classes": list(classes), "skipped": list(skipped),
                    "shapes": {n: (None if a is None else list(a.shape)) for n, a in arrays.items()},
                    "dtypes": {n: (None if a is None else str(a.dtype)) for n, a in arrays.items()}}
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(base, entry))   # whole, or (another process won) not at all
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clean_stale(base: str) -> None:
    now = time.time()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(_TMP) and now - os.path.getmtime(path) > _STALE_TMP_S:
            shutil.rmtree(path, ignore_errors=True)


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
        except (OSError, ValueError, KeyError, TypeError):
            row["images"] = row["classes"] = None
        found.append(row)
    return found


def clear() -> tuple[int, int]:
    """Removes every entry and temporary folder: (folders removed, bytes freed)."""
    rows = entries()
    for row in rows:
        shutil.rmtree(os.path.join(root(), row["entry"]), ignore_errors=True)
    return len(rows), sum(r["bytes"] for r in rows)
