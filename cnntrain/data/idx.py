"""MNIST-style IDX files, raw or gzipped.

Layout: 2 zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, then each dimension as a big-endian uint32, then the data.
Images are 0x00000803 (N, rows, cols), labels 0x00000801 (N,).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from . import checks
from .catalog import IDX_NAMES
from .checks import fail

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_GZIP_MAGIC = b"\x1f\x8b"


def read(path: str, magic: int, name: str, split: str) -> np.ndarray:
    """One IDX file of data set `name`'s `split` as a uint8 array shaped as its header says; a
    header that claims more (or other) images than the data set has is refused before allocating."""
    kind = "image" if magic == IMAGES_MAGIC else "label"
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            # Sniffing the gzip magic (not the extension) reads a misnamed file too.
            f = gzip.GzipFile(fileobj=raw) if gz else raw
            header = _exact(f, 4, path, "the 4-byte magic number")
            got = struct.unpack(">I", header)[0]
            if got != magic:
                raise fail(f"wrong IDX magic number 0x{got:08x}; expected 0x{magic:08x} "
                           f"(an IDX {kind} file: unsigned bytes, {magic & 0xff} dimension"
                           f"{'s' if magic & 0xff > 1 else ''})", path,
                           hint="image files are *-images-idx3-ubyte, label files "
                                "*-labels-idx1-ubyte; check the file is not swapped or corrupt")
            ndim = magic & 0xff
            dims = struct.unpack(f">{ndim}I", _exact(f, 4 * ndim, path, "the dimensions"))
            checks.claimed(name, split, dims[0], dims[1:] or None, path, "its header claims")
            size = int(np.prod(dims, dtype=np.int64))
            shown = f"{' x '.join(map(str, dims))} = {size} bytes"
            # A raw file's size is known up front: a header that lies (or a
            # truncated file) is caught before allocating what it claims.
            left = None if gz else os.fstat(raw.fileno()).st_size - raw.tell()
            if left is not None and left < size:
                raise fail(f"holds {left} bytes of data but its header says {shown}; "
                           "the file is truncated", path, hint="download or copy the file again")
            # Read straight into the final array: one allocation, and it is writable.
            out = np.empty(dims, dtype=np.uint8)
            n = f.readinto(memoryview(out).cast("B")) if out.size else 0
            if n != out.size:
                raise fail(f"holds {n} bytes of data but its header says {shown}; "
                           "the file is truncated", path, hint="download or copy the file again")
            if f.read(1):
                raise fail(f"holds more data than its header says ({shown}); "
                           "expected the file to end there", path,
                           hint="the file is corrupt or not an IDX file; download it again")
            return out
    except (OSError, EOFError, zlib.error) as e:
        what = "gzip stream is truncated or corrupt" if isinstance(e, (EOFError, zlib.error,
                                                                       gzip.BadGzipFile)) \
            else "file cannot be read"
        raise fail(f"the {what} ({type(e).__name__}: {e})", path,
                   hint="download or copy the file again") from e


def _exact(f, n: int, path: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise fail(f"ends after {len(data)} bytes, before {what}; expected an IDX header", path,
                   hint="the file is truncated; download or copy it again")
    return data


def find(name: str, folder: str) -> str | None:
    """The file for one IDX name in a folder: raw, .gz, or the dotted spelling
    (train-images.idx3-ubyte) some mirrors use."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        p = os.path.join(folder, candidate)
        if os.path.isfile(p):
            return p
    return None


def complete(folder: str) -> bool:
    return all(find(n, folder) for n in IDX_NAMES)


def read_set(folder: str, dataset: str, n_classes: int):
    """The four files of an MNIST-style folder of `dataset`: (x_train, y_train, x_test, y_test,
    files)."""
    paths = [find(n, folder) for n in IDX_NAMES]
    for name, p in zip(IDX_NAMES, paths):
        if p is None:
            raise fail(f"'{name}' (or '{name}.gz') is missing; expected all four IDX files "
                       f"together: {', '.join(IDX_NAMES)}", folder)
    tr_x, tr_y, te_x, te_y = paths
    x_train = checks.images(read(tr_x, IMAGES_MAGIC, dataset, "train"), tr_x, "images")
    y_train = checks.labels(read(tr_y, LABELS_MAGIC, dataset, "train"), len(x_train), n_classes, tr_y,
                            "labels", os.path.basename(tr_x))
    x_test = checks.images(read(te_x, IMAGES_MAGIC, dataset, "test"), te_x, "images")
    y_test = checks.labels(read(te_y, LABELS_MAGIC, dataset, "test"), len(x_test), n_classes, te_y,
                           "labels", os.path.basename(te_x))
    checks.same_image_shape(x_train, x_test, te_x)
    return x_train, y_train, x_test, y_test, paths
