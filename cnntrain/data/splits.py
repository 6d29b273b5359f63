"""The spec's data section to arrays: the dataset, its limits, the validation split."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from cnntrain.data import Dataset, image_options, load_dataset
from cnntrain.data.catalog import DATASET_TRAIN_IMAGES
from cnntrain.data.rows import Lazy
from cnntrain.errors import CnntrainError
from cnntrain.spec import Spec


@dataclass
class Splits:
    """The arrays a fit trains, validates and tests on, with the class names and the data's source."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list
    source: str
    # What identifies the validation images: their count and a digest of their indices in the data
    # set's training images. A fit records it with the model; `evaluate --split validation` compares.
    held_out: dict | None = None
    skipped: list = field(default_factory=list)   # unreadable images left out (data.on_broken: skip)

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])


def train_images(spec: Spec) -> int | None:
    """Training images per epoch for a built-in dataset, before any data is read."""
    total = DATASET_TRAIN_IMAGES.get(spec["data"]["dataset"])
    if total is None:
        return None
    total = min(total, spec["data"]["limit_train"] or total)
    if spec["data"]["validation"] == "split":
        total -= round(total * spec["data"]["validation_split"])
    return total


def train_steps(spec: Spec) -> int | None:
    """The training steps of the spec's whole fit (every epoch) on a built-in dataset, before any data is read."""
    images = train_images(spec)
    return None if images is None else math.ceil(images / spec["fit"]["batch_size"]) * spec["fit"]["epochs"]


def load(spec: Spec, *, data_dir=None, offline=False, path=None, progress=None) -> Dataset:
    """The spec's dataset; `path`, where given, stands for data.path; `progress` hears a decode."""
    d = spec["data"]
    return load_dataset(d["dataset"], path=path or d["path"], data_dir=data_dir, offline=offline,
                        progress=progress, **image_options(d))


def prepare(spec: Spec, *, data_dir=None, offline=False, path=None, progress=None) -> Splits:
    """The spec's data section as Splits: the data set read, limited and split for validation."""
    return held_out(spec, load(spec, data_dir=data_dir, offline=offline, path=path, progress=progress))


def held_out(spec: Spec, data: Dataset) -> Splits:
    """The spec's splits of a data set already read: limited and split for validation (with the spec's
    seed, so `evaluate --split validation` finds the very images a run held out)."""
    d = spec["data"]
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    index = np.arange(len(x_train))   # of each training image in the data set, for the held-out digest
    if d["limit_train"]:
        index = _subset(len(x_train), d["limit_train"], spec["seed"])
        x_train, y_train = take(x_train, index), y_train[index]
    if d["limit_test"] and x_test is not None:
        keep = _subset(len(x_test), d["limit_test"], spec["seed"] + 1)
        x_test, y_test = take(x_test, keep), y_test[keep]
    x_val = y_val = held = None
    if d["validation"] == "split":
        train_idx, val_idx = validation_indices(y_train, d["validation_split"], spec["seed"])
        held = {"images": len(val_idx), "digest": hashlib.sha256(index[val_idx].astype("<i8").tobytes()).hexdigest()}
        x_train, y_train, x_val, y_val = (take(x_train, train_idx), y_train[train_idx], take(x_train, val_idx),
                                          y_train[val_idx])
    elif d["validation"] == "test":
        if x_test is None:
            raise spec.error(("data", "validation"), f"data.validation is 'test' but {data.source} has no test split",
                             "use validation: split, or add a test/ folder beside train/")
        x_val, y_val = x_test, y_test
    expected = spec["model"]["input_shape"]
    if expected is not None and tuple(expected) != tuple(x_train.shape[1:]):
        raise spec.error(("model", "input_shape"), f"model.input_shape is {list(expected)} but the images of "
                         f"{data.source} are {list(x_train.shape[1:])}",
                         f"set model.input_shape: {list(x_train.shape[1:])}, or resize with data.image_size")
    if len(x_train) == 0:
        raise CnntrainError("no training images left after the validation split", file=data.source)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, list(data.class_names), data.source, held,
                  list(data.skipped))


def same_held_out(splits: Splits, recorded: dict | None, spec_file) -> None:
    """Refuse validation images drawn again that are not those a fit held out (`recorded`, from the
    model's metadata): its spec.yaml was edited since (seed, validation_split, limits) or the data changed.
    A model from before this was recorded has nothing to compare."""
    if recorded is None or recorded == splits.held_out:
        return
    now = splits.held_out or {"images": 0}
    differs = (f"{recorded['images']:,} images at fit, {now['images']:,} now" if now["images"] != recorded["images"]
               else f"{now['images']:,} images both times, but other ones")
    raise CnntrainError(f"the validation images drawn again from spec.yaml are not the ones the run held out "
                        f"({differs})", file=str(spec_file),
                        hint="spec.yaml or the data changed since the fit (seed, data.validation_split, limits): "
                             "restore them, or evaluate with --split test")


def take(x, index):
    """The images at `index`: copied from an array, or, from images read when indexed (rows.Lazy: the
    cache file, or files decoded again), the same indexed anew, nothing read: a validation split of
    100,000 cached images costs 800 KB."""
    return x.subset(index) if isinstance(x, Lazy) else x[index]


def _subset(total: int, n: int, seed: int) -> np.ndarray:
    """The indices of n images of `total` drawn at random (seeded), in their original order. Not the
    first n: image folders and archives come sorted by class, so the first n could all be one class."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def as_images(x) -> np.ndarray:
    """`x` as (N, height, width, channels); a (N, H, W) grayscale stack gains its channel axis.
    Images read when indexed (rows.Lazy, always 4-D) stay unread."""
    if isinstance(x, Lazy):
        return x
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) greyscale, as MNIST ships
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise CnntrainError(f"expected images shaped (N, height, width, channels), got {x.shape}")
    return x


def as_labels(y, n: int) -> np.ndarray:
    """`y` as N integer class indices; CIFAR's (N, 1) labels are flattened."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # CIFAR ships (N, 1)
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise CnntrainError(f"expected {n} integer labels, got an array shaped {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise CnntrainError("labels must be integer class indices")
        y = y.astype(np.int64)
    return y


def split_validation(x, y, fraction: float, seed: int):
    """(x_train, y_train, x_val, y_val): a seeded split, stratified per class (validation_indices)."""
    train_idx, val_idx = validation_indices(y, fraction, seed)
    x, y = np.asarray(x), np.asarray(y)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def validation_indices(y, fraction: float, seed: int):
    """(train indices, validation indices): a seeded split, stratified per class.

    The validation set holds floor(fraction * N + 0.5) examples, spread over the classes in
    proportion to their sizes (largest remainders), and every class keeps at least one
    training example. Both parts keep the original order of the examples.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CnntrainError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}",
                            hint="data.validation_split: 0.1 holds out 10% of the training data")
    y_flat = as_labels(y, len(y))
    n = len(y_flat)
    classes, inverse, counts = np.unique(y_flat, return_inverse=True, return_counts=True)

    ideal = fraction * counts
    take = np.minimum(np.floor(ideal).astype(np.int64), counts - 1)
    room = (counts - 1) - take
    short = int(np.floor(fraction * n + 0.5)) - int(take.sum())
    if short > 0:
        # Largest remainder first; ties go to the lower class, so it is deterministic.
        remainder = np.where(room > 0, ideal - take, -np.inf)
        order = np.lexsort((np.arange(len(classes)), -remainder))
        for c in order[:short]:
            if room[c] > 0:
                take[c] += 1
    if take.sum() == 0:
        raise CnntrainError(
            f"a validation fraction of {fraction} leaves no validation examples out of {n}",
            hint="use a larger validation_split or more data")

    rng = np.random.default_rng(seed)
    val_mask = np.zeros(n, dtype=bool)
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        val_mask[rng.permutation(members)[:take[c]]] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
