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
from cnntrain.spec.schema import CACHES, COLOR_MODES, DATASETS, ON_BROKEN_CHOICES, RESIZE_CHOICES

from . import balance, cache, convert, decode, lookup, readers, rows
from .folder import ImageOptions
from .catalog import KNOWN
from .checks import fail


__all__ = ["DATASETS", "Dataset", "find_dataset", "image_options", "load_dataset", "verify_dataset"]


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
    skipped: list[str] = field(default_factory=list)  # unreadable images left out (data.on_broken: skip)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        raise CnntrainError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}",
                            hint=f"did you mean '{close[0]}'?" if close else
                            "use image_folder with data.path for your own images")


def _check_options(image_size, color_mode, resize="stretch", on_broken="error", cache="auto") -> tuple[int, int] | None:
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise CnntrainError(f"unknown color_mode '{color_mode}'; expected rgb or grayscale",
                            hint="set data.color_mode to rgb or grayscale, or leave it out")
    for key, value, choices in (("resize", resize, RESIZE_CHOICES), ("on_broken", on_broken, ON_BROKEN_CHOICES),
                                ("cache", cache, CACHES)):
        if value not in choices:
            raise CnntrainError(f"unknown {key} '{value}'; expected {' or '.join(choices)}",
                                hint=f"set data.{key} to one of {', '.join(choices)}")
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


def image_options(data: dict) -> dict:
    """load_dataset's image arguments from a spec's data section or a model's metadata (a key it
    lacks has its default): one reading for fit, evaluate, the model card and data verify."""
    size = data.get("image_size")
    return {"image_size": tuple(size) if size else None, "color_mode": data.get("color_mode"),
            "resize": data.get("resize") or "stretch", "on_broken": data.get("on_broken") or "error",
            "labels": data.get("labels"), "cache": data.get("cache") or "auto"}


def find_dataset(name: str, *, path: str | None = None,
                 data_dir: str | None = None) -> list[tuple[str, bool]]:
    """Where `load_dataset` looks, in order, and whether each place holds the data."""
    _check_name(name)
    if name == "image_folder" and not path:
        return []
    return [(c.shown(), c.exists()) for c in lookup.candidates(name, path, data_dir)]


def load_dataset(name: str, *, path: str | None = None, data_dir: str | None = None,
                 offline: bool = False, image_size: tuple[int, int] | None = None,
                 color_mode: str | None = None, resize: str = "stretch", on_broken: str = "error",
                 labels: str | None = None, cache: str = "auto", progress=None) -> Dataset:
    """Reads a data set from the first place that has it (see `find_dataset`),
    downloading it into Keras' cache as a last resort unless `offline`.
    `image_size` (height, width) resizes by the rule `resize` (stretch, pad, crop); `color_mode`
    "rgb"/"grayscale" converts; `on_broken` "skip" leaves unreadable image files out. `labels`, a
    CSV of filename,label[,split] rows (image_folder only), lists the images instead of `path`.
    `cache` (data.cache: auto, disk, memory, none) says whether decoded images are kept in the
    decoded-image cache (data/cache.py) and whether they are read from it into memory or a batch at
    a time (see _cached). `progress` (start(total), advance(count), done()) hears a decode's progress."""
    _check_name(name)
    size = _check_options(image_size, color_mode, resize, on_broken, cache)
    cache_choice = cache   # the name `cache` is the module's in the helpers below
    options = ImageOptions(size, color_mode, resize, on_broken)
    if labels is not None:
        if name != "image_folder":
            raise CnntrainError(f"data.labels is for your own images; {name} has its own labels",
                                file=labels, hint="set data.dataset: image_folder, or leave data.labels out")
        return _cached(name, lookup.Candidate("labels", labels), options, cache_choice, progress)
    if name == "image_folder" and not path:
        raise CnntrainError("image_folder needs a path (or data.labels); received none",
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
    return _cached(name, cand, options, cache_choice, progress)


# data.cache: auto keeps a split in memory up to this size and reads a larger one from the cache a
# batch at a time; below it, one array in memory feeds TensorFlow faster than reads from a file.
IN_MEMORY_BYTES = 1 << 30


def _cached(name, cand, options: ImageOptions, choice: str, progress=None) -> Dataset:
    """The data set from the decoded-image cache where it holds it, else read (and kept there when
    it was decoded from image files). data.cache (`choice`): memory keeps every split in memory,
    auto a split of up to IN_MEMORY_BYTES; disk, and auto above it, read a split from the cache
    file a batch at a time (rows.Rows), and a split that is to stay on disk is decoded straight into
    its cache file, so the decode never holds it all; none checks every file (one decode, nothing
    kept) and decodes each batch again when it is read (rows.Decoding)."""
    source = cand.path if not cand.path.endswith(os.sep) else cand.path[:-1]
    files = [] if cand.kind == "image_dir" else [cand.path]
    if choice == "none" or cand.kind not in ("image_dir", "archive", "labels"):
        return _arrays(_read(name, cand, options, decode.Output(progress=progress, later=choice == "none")),
                       options, source)
    entry = cache.key(name, cand.kind, cand.path, options)
    hit = cache.load(entry)
    if hit is None:
        try:
            build = cache.Build(entry, {"source": os.path.abspath(cand.path), "image_size": options.image_size,
                                        "color_mode": options.color_mode, "resize": options.resize})
        except OSError:   # a cache that cannot be written costs only the reuse
            return _arrays(_read(name, cand, options, decode.Output(progress=progress)), options, source)
        try:
            def into(split, shape):
                big = int(np.prod(shape, dtype=np.int64)) > IN_MEMORY_BYTES
                return build.into(split, shape) if choice == "disk" or (choice == "auto" and big) \
                    else decode.InMemory(shape)

            loaded = _read(name, cand, options, decode.Output(into, progress))
            arrays = (loaded.x_train, loaded.y_train, loaded.x_test, loaded.y_test, loaded.classes, loaded.skipped)
            try:
                build.commit(*arrays)
            except OSError as e:
                committed = e
            else:
                committed = None
        finally:
            build.close()
        hit = cache.load(entry)
        if hit is None and any(isinstance(a, rows.Writer) for a in arrays):
            raise fail(f"the decoded images cannot be kept in the cache {cache.root()} "
                       f"({getattr(committed, 'strerror', None) or committed})", cand.path,
                       hint="free disk space there, point CNNTRAIN_CACHE_DIR at a larger disk, or set "
                            "data.cache: memory")
        if hit is None:
            hit = arrays
        else:   # a split decoded into memory stays there, its cache file is the next fit's
            hit = tuple(a if k in (0, 2) and isinstance(a, np.ndarray) else h
                        for k, (a, h) in enumerate(zip(arrays, hit)))
    x_train, y_train, x_test, y_test, classes, skipped = hit
    x_train, x_test = (_placed(x, choice) for x in (x_train, x_test))
    return Dataset(x_train, y_train, x_test, y_test, classes, source, files, skipped)


def _placed(x, choice: str):
    """A split from the cache, in memory or left on disk as data.cache says."""
    if isinstance(x, rows.Rows) and (choice == "memory" or (choice == "auto" and x.nbytes <= IN_MEMORY_BYTES)):
        return np.asarray(x)
    return x


def _arrays(loaded: readers.Loaded, options: ImageOptions, source: str) -> Dataset:
    x_train, x_test = loaded.x_train, loaded.x_test
    if not loaded.decoded:
        x_train = convert.apply(x_train, options.image_size, options.color_mode, options.resize)
        x_test = convert.apply(x_test, options.image_size, options.color_mode, options.resize)
    return Dataset(x_train, loaded.y_train, x_test, loaded.y_test, loaded.classes, source, loaded.files,
                   loaded.skipped)


def _read(name, cand, options: ImageOptions, output: decode.Output) -> readers.Loaded:
    try:
        return readers.read(name, cand, options, output)
    except CnntrainError:
        raise
    except MemoryError as e:
        raise fail(f"not enough memory to load {name}", cand.path,
                   hint="free memory, use smaller images (data.image_size), or set data.cache: disk") from e
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
        return balance.counts(y, ds.class_names)

    return {
        "name": name, "source": ds.source,
        "train": int(len(ds.x_train)), "test": 0 if ds.x_test is None else int(len(ds.x_test)),
        "shape": [int(v) for v in ds.x_train.shape[1:]], "classes": list(ds.class_names),
        "per_class_train": per_class(ds.y_train),
        "per_class_test": None if ds.y_test is None else per_class(ds.y_test),
        "sha256": sha, "published": published, "skipped": ds.skipped,
    }
