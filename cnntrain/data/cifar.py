"""CIFAR-10's python batches (data_batch_1..5, test_batch, batches.meta).

The batches are pickles. Unpickling runs whatever globals the stream names, so
we use an unpickler that resolves only numpy's array reconstruction: a real
batch is a dict of bytes keys, lists, ints and one uint8 array, nothing more.
"""
from __future__ import annotations

import io
import os
import pickle

import numpy as np

from . import checks
from .catalog import CIFAR10_CLASSES, CIFAR_BATCH_IMAGES
from .checks import fail

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
BATCH_NAMES = frozenset(TRAIN_BATCHES + ("test_batch", "batches.meta"))
# The most a batch file can hold: its pixels, plus room for the labels, file names and pickle
# framing (the published batches are 31,035,704 bytes, 315,704 of them not pixels); batches.meta
# is 158 bytes. A file (or archive member) over these is refused before it is read.
BATCH_BYTES = CIFAR_BATCH_IMAGES * 3072 + (1 << 20)
META_BYTES = 1 << 16


def max_bytes(name: str) -> int:
    """The most bytes the batch file `name` (a basename in BATCH_NAMES) may hold."""
    return META_BYTES if name == "batches.meta" else BATCH_BYTES


def too_large(name: str, size: int, where: str, member: str | None = None):
    prefix = f"member '{member}': " if member else ""
    return fail(f"{prefix}{name} is {size:,} bytes; a CIFAR-10 {'batches.meta' if name == 'batches.meta' else 'batch'} "
                f"holds at most {max_bytes(name):,}, so this is not a CIFAR-10 python batch", where,
                hint="replace it with the original cifar-10-python.tar.gz from "
                     "https://www.cs.toronto.edu/~kriz/cifar.html")

try:  # numpy >= 2 moved multiarray to numpy._core; old pickles still name numpy.core
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

# Resolved to the objects directly so that old names never import the
# deprecated numpy.core shim. _frombuffer is what pickle protocol 5 uses for
# arrays (a batch re-saved with Python 3's default protocol); it only builds an
# array from bytes.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(module, name) from None


def unpickle(data: bytes, where: str, member: str | None = None):
    """One batch pickle, restricted; `where` is the file (or archive) for errors."""
    prefix = f"member '{member}': " if member else ""
    try:
        return _Restricted(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise fail(f"{prefix}refusing to unpickle global '{e.qualname}': a CIFAR-10 batch holds "
                   "only numpy arrays, lists and strings, so this file is corrupt or malicious "
                   "(nothing in it was run)", where,
                   hint="replace it with the original cifar-10-python.tar.gz from "
                        "https://www.cs.toronto.edu/~kriz/cifar.html") from None
    except Exception as e:  # a broken pickle can raise almost anything
        raise fail(f"{prefix}cannot be read as a CIFAR-10 python batch ({type(e).__name__}: {e}); "
                   "the file is truncated or corrupt", where,
                   hint="copy or download cifar-10-python.tar.gz again") from e


def _get(d, key: str, where: str, member: str | None):
    # encoding="bytes" gives bytes keys for Python 2's batches; a re-pickle may use str.
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    prefix = f"member '{member}': " if member else ""
    keys = sorted(k.decode("latin-1") if isinstance(k, bytes) else str(k) for k in d)
    raise fail(f"{prefix}key '{key}' is missing; received keys {keys}, expected a CIFAR-10 batch "
               "with 'data' (N, 3072) uint8 and 'labels'", where)


def parse_batch(data: bytes, where: str, member: str | None = None):
    """A data or test batch: (pixels (N, 3072) uint8, labels list)."""
    d = unpickle(data, where, member)
    if not isinstance(d, dict):
        raise fail(f"{'member ' + repr(member) + ': ' if member else ''}holds a "
                   f"{type(d).__name__}; expected a CIFAR-10 batch dict", where)
    pixels = _get(d, "data", where, member)
    key = f"{member}: data" if member else "data"
    if (not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2
            or pixels.shape[1] != 3072):
        shape = getattr(pixels, "shape", None)
        raise fail(f"'{key}' is {type(pixels).__name__} {getattr(pixels, 'dtype', '')} "
                   f"{tuple(shape) if shape is not None else ''}; expected a uint8 array "
                   "(N, 3072): 1024 red, 1024 green, 1024 blue values per 32x32 image", where)
    if len(pixels) > CIFAR_BATCH_IMAGES:
        raise fail(f"'{key}' holds {len(pixels):,} images; a CIFAR-10 batch holds at most "
                   f"{CIFAR_BATCH_IMAGES:,}", where)
    labels = _get(d, "labels", where, member)
    # A pickle can share one list many times over: 31 KB of nested shared lists become gigabytes
    # in np.asarray. A batch's labels are a flat list of ints, one per image: checked as such
    # before numpy sees them. Their range is checked in assemble(): batches.meta (the class
    # count) may come later in an archive.
    lkey = f"{member}: labels" if member else "labels"
    if isinstance(labels, list):
        bad = next((i for i, v in enumerate(labels) if type(v) is not int), None)
        if bad is not None:
            raise fail(f"'{lkey}' holds a {type(labels[bad]).__name__} at index {bad}; expected a "
                       "flat list of integer class labels, one per image", where)
    elif not isinstance(labels, np.ndarray):
        raise fail(f"'{lkey}' is a {type(labels).__name__}; expected a list of integer class labels",
                   where)
    if len(labels) != len(pixels):
        raise fail(f"'{lkey}' holds {len(labels):,} labels but '{key}' holds {len(pixels):,} images; "
                   "expected one label per image", where)
    return pixels, labels, where, (f"{member}: " if member else "")


def parse_meta(data: bytes, where: str, member: str | None = None) -> list[str]:
    d = unpickle(data, where, member)
    names = _get(d, "label_names", where, member) if isinstance(d, dict) else None
    # str() of a nested shared list could be gigabytes: names must be strings already.
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise fail("'label_names' is not a list of class names; expected a CIFAR-10 "
                   "batches.meta", where)
    checks.classes("cifar10", names, where)
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def assemble(parts: dict, where: str):
    """Builds the arrays from parsed parts {basename: parsed}: (x_train, y_train,
    x_test, y_test, class_names). Missing batches.meta means the usual names."""
    missing = [n for n in TRAIN_BATCHES + ("test_batch",) if n not in parts]
    if missing:
        raise fail(f"'{missing[0]}' is missing; expected data_batch_1 to data_batch_5 and "
                   "test_batch (CIFAR-10's python version)", where,
                   hint="use the complete cifar-10-batches-py folder or cifar-10-python.tar.gz")
    classes = parts.get("batches.meta") or list(CIFAR10_CLASSES)
    x_train, y_train = _stack([parts.pop(n) for n in TRAIN_BATCHES], classes)
    x_test, y_test = _stack([parts.pop("test_batch")], classes)
    return x_train, y_train, x_test, y_test, classes


def _stack(batches, classes):
    n = sum(len(b[0]) for b in batches)
    # One final array; each batch is transposed straight into it (channel-first
    # rows to (32, 32, 3)), so no full-size intermediate copy exists.
    x = np.empty((n, 32, 32, 3), dtype=np.uint8)
    ys, start = [], 0
    for pixels, labels, file, prefix in batches:
        stop = start + len(pixels)
        x[start:stop] = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        ys.append(checks.labels(np.asarray(labels), len(pixels), len(classes), file,
                                f"{prefix}labels", f"{prefix}data"))
        start = stop
    return x, np.concatenate(ys)


def read_dir(folder: str):
    """A cifar-10-batches-py folder: (x_train, y_train, x_test, y_test, classes, files)."""
    parts, files = {}, []
    for name in TRAIN_BATCHES + ("test_batch", "batches.meta"):
        p = os.path.join(folder, name)
        if not os.path.isfile(p):
            continue
        try:
            with open(p, "rb") as f:
                data = f.read(max_bytes(name) + 1)
        except OSError as e:
            raise fail(f"cannot be read ({e.strerror or e})", p) from e
        if len(data) > max_bytes(name):
            raise too_large(name, os.path.getsize(p), p)
        parts[name] = parse_meta(data, p) if name == "batches.meta" else parse_batch(data, p)
        del data
        files.append(p)
    return (*assemble(parts, folder), files)
