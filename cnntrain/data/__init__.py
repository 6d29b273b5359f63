"""Image classification data sets as uint8 arrays, read from their real formats.

No TensorFlow here: reading is numpy, Pillow and the standard library, so
commands that only look at data stay fast. Keras is imported only to download.
"""
from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from cnntrain.errors import CnntrainError, DataNotFound
from cnntrain.spec.schema import COLOR_MODES, DATASETS

from . import convert, lookup, readers
from .catalog import KNOWN
from .checks import fail


__all__ = ["DATASETS", "Dataset", "find_dataset", "load_dataset", "verify_dataset"]


@dataclass
class Dataset:
    """A data set as uint8 arrays with its class names and where it was read from."""
    x_train: np.ndarray        # uint8 (N, H, W, C), C=1 for grayscale
    y_train: np.ndarray        # int64 (N,), in [0, len(class_names))
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    source: str                # the file(s) or folder it was read from
    files: list[str] = field(default_factory=list)  # the files read, for checksums

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        raise CnntrainError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}",
                            hint=f"did you mean '{close[0]}'?" if close else
                            "use image_folder with data.path for your own images")


def _check_options(image_size, color_mode) -> tuple[int, int] | None:
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise CnntrainError(f"unknown color_mode '{color_mode}'; expected rgb or grayscale",
                            hint="set data.color_mode to rgb or grayscale, or leave it out")
    if image_size is None:
        return None
    try:
        h, w = (int(v) for v in image_size)
        if h <= 0 or w <= 0 or (h, w) != tuple(image_size):
            raise ValueError
    except (TypeError, ValueError):
        raise CnntrainError(f"image_size {image_size!r} is not [height, width] in positive "
                            "integers", hint="set data.image_size: [height, width]") from None
    return h, w


def find_dataset(name: str, *, path: str | None = None,
                 data_dir: str | None = None) -> list[tuple[str, bool]]:
    """Where `load_dataset` looks, in order, and whether each place holds the data."""
    _check_name(name)
    if name == "image_folder" and not path:
        return []
    return [(c.shown(), c.exists()) for c in lookup.candidates(name, path, data_dir)]


def load_dataset(name: str, *, path: str | None = None, data_dir: str | None = None,
                 offline: bool = False, image_size: tuple[int, int] | None = None,
                 color_mode: str | None = None) -> Dataset:
    """Reads a data set from the first place that has it (see `find_dataset`),
    downloading it into Keras' cache as a last resort unless `offline`.
    `image_size` (height, width) resizes; `color_mode` "rgb"/"grayscale" converts."""
    _check_name(name)
    size = _check_options(image_size, color_mode)
    if name == "image_folder" and not path:
        raise CnntrainError("image_folder needs a path; received none",
                            hint="set data.path to a folder of train/<class>/<image> "
                                 "(or <class>/<image>), or a .tar.gz of one")
    cands = lookup.candidates(name, path, data_dir)
    cand = next((c for c in cands if c.exists()), None)
    if cand is None:
        if path or name == "image_folder" or offline:
            raise _not_found(name, cands, path, data_dir, None)
        try:
            cand = lookup.download(name)
        except Exception as e:  # urllib, hash and OS errors alike
            raise _not_found(name, cands, path, data_dir, e) from e
    loaded = _read(name, cand, size, color_mode)
    x_train, x_test = loaded.x_train, loaded.x_test
    if not loaded.decoded:
        x_train = convert.apply(x_train, size, color_mode)
        x_test = convert.apply(x_test, size, color_mode)
    source = cand.path if not cand.path.endswith(os.sep) else cand.path[:-1]
    return Dataset(x_train, loaded.y_train, x_test, loaded.y_test, loaded.classes,
                   source, loaded.files)


def _read(name, cand, size, color_mode) -> readers.Loaded:
    try:
        return readers.read(name, cand, size, color_mode)
    except CnntrainError:
        raise
    except MemoryError as e:
        raise fail(f"not enough memory to load {name}", cand.path,
                   hint="free memory, or use smaller images (data.image_size)") from e
    except Exception as e:  # the contract: only CnntrainError escapes
        raise fail(f"cannot be read ({type(e).__name__}: {e})", cand.path) from e


def _not_found(name, cands, path, data_dir, error) -> CnntrainError:
    looked = "\n".join(f"  {c.shown()}" for c in cands)
    if path:
        what = ("does not exist" if not os.path.exists(path)
                else f"holds no {name} data in a layout cnntrain reads")
        hint = (_supply(name, "") if name == "image_folder" else
                f"set data.path to {KNOWN[name].how_to_supply}, or to a folder holding it")
        return DataNotFound(f"data.path {what}", looked, file=path, hint=hint)
    folder = lookup.data_folder(data_dir) or lookup.keras_cache()
    msg = "\n"
    if error is None:
        msg += "and offline mode is on, so nothing was downloaded"
    else:
        origins = [d.origin for d in KNOWN[name].downloads]
        where = origins[0] if len(origins) == 1 else \
            f"{os.path.dirname(origins[0])}/ ({len(origins)} files)"
        msg += f"and the download from {where} failed ({type(error).__name__}: {error})"
    return DataNotFound(f"no {name} data found", looked, msg, hint=_supply(name, folder) + ", or pass --data-dir DIR "
                         "(or set CNNTRAIN_DATA_DIR)")


def _supply(name: str, folder: str) -> str:
    if name == "image_folder":
        return "set data.path to a folder of train/<class>/<image> or a .tar.gz of one"
    return f"put {KNOWN[name].how_to_supply} in {folder}"


def _digests(path: str, algorithms) -> dict[str, str]:
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def verify_dataset(name: str, **kwargs) -> dict:
    """Loads the data set and reports what it holds, the sha256 of each file read,
    and, for files under a published name, whether they match the published
    checksum (a mismatch is reported, not raised: user-built files differ)."""
    ds = load_dataset(name, **kwargs)
    known = KNOWN.get(name)
    sha, published = {}, {}
    for f in ds.files:
        expected = known.checksums.get(os.path.basename(f)) if known else None
        try:
            got = _digests(f, {"sha256"} | ({expected[0]} if expected else set()))
        except OSError as e:
            raise fail(f"cannot be read ({e.strerror or e})", f) from e
        sha[f] = got["sha256"]
        if expected:
            published[f] = {"algorithm": expected[0], "expected": expected[1],
                            "actual": got[expected[0]], "match": got[expected[0]] == expected[1]}

    def per_class(y):
        counts = np.bincount(y, minlength=len(ds.class_names))
        return {c: int(n) for c, n in zip(ds.class_names, counts)}

    return {
        "name": name, "source": ds.source,
        "train": int(len(ds.x_train)), "test": 0 if ds.x_test is None else int(len(ds.x_test)),
        "shape": [int(v) for v in ds.x_train.shape[1:]], "classes": list(ds.class_names),
        "per_class_train": per_class(ds.y_train),
        "per_class_test": None if ds.y_test is None else per_class(ds.y_test),
        "sha256": sha, "published": published,
    }
