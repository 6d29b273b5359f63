"""Keras' `.npz` layout (mnist.npz): x_train, y_train, x_test, y_test."""
from __future__ import annotations

import zipfile
import zlib

import numpy as np

from . import checks
from .checks import fail

_LAYOUT = "x_train (N, H, W) uint8, y_train (N,), x_test, y_test"


def read(path: str, name: str, n_classes: int):
    """Returns (x_train, y_train, x_test, y_test) of data set `name`; the test pair may be None, None."""
    try:
        # allow_pickle=False: an npz of pixels never needs pickle, and one that asks
        # for it could run code. The file is opened here: np.load leaves its own handle open
        # when the archive turns out truncated.
        with open(path, "rb") as handle:
            z = np.load(handle, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise fail("holds a single .npy array; expected an .npz archive in Keras' layout: "
                           f"{_LAYOUT}", path,
                           hint="write it with np.savez(path, x_train=..., y_train=..., "
                                "x_test=..., y_test=...)")
            with z:
                keys = set(z.files)
                missing = [k for k in ("x_train", "y_train") if k not in keys]
                has_test = ("x_test" in keys, "y_test" in keys)
                if has_test[0] != has_test[1]:
                    missing.append("y_test" if has_test[0] else "x_test")
                if missing:
                    raise fail(f"key '{missing[0]}' is missing; received keys {sorted(keys)}, "
                               f"expected Keras' npz layout: {_LAYOUT}", path,
                               hint="write it with np.savez(path, x_train=..., y_train=..., "
                                    "x_test=..., y_test=...)")
                wanted = [k for k in ("x_train", "y_train", "x_test", "y_test") if k in keys]
                for k in wanted:
                    _claimed(z, k, path, name)
                arrays = {k: _member(z, k, path) for k in wanted}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise fail(f"cannot be read as a .npz archive ({type(e).__name__}: {e}); the file is "
                   "truncated, corrupt, or not an npz", path,
                   hint="write it again with np.savez, or download it again") from e
    x_train = checks.images(arrays["x_train"], path, "x_train")
    y_train = checks.labels(arrays["y_train"], len(x_train), n_classes, path, "y_train", "x_train")
    if "x_test" not in arrays:
        return x_train, y_train, None, None
    x_test = checks.images(arrays["x_test"], path, "x_test")
    y_test = checks.labels(arrays["y_test"], len(x_test), n_classes, path, "y_test", "x_test")
    checks.same_image_shape(x_train, x_test, path)
    return x_train, y_train, x_test, y_test


def _claimed(z, key: str, path: str, name: str) -> None:
    """Checks the shape an array's .npy header claims against the data set, before numpy
    allocates it: np.load allocates what the header says, whatever the member holds."""
    member = key + ".npy" if key + ".npy" in z.zip.namelist() else key
    with z.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape = read_header(f)[0]
    if shape:
        checks.claimed(name, key.split("_")[1], shape[0], shape[1:3] if key[0] == "x" else None,
                       path, f"'{key}' holds")


def _member(z, key: str, path: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:
        if "pickle" in str(e):
            raise fail(f"'{key}' is an object array, which needs pickle to load; expected "
                       "plain numeric arrays", path,
                       hint="save numeric arrays (uint8 images, integer labels)") from e
        raise
