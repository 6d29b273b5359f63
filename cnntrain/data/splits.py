"""The spec's data section to arrays: the dataset, its limits, the validation split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnntrain.data import Dataset, image_options, load_dataset
from cnntrain.data.catalog import DATASET_TRAIN_IMAGES
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


def load(spec: Spec, *, data_dir=None, offline=False, path=None) -> Dataset:
    """The spec's dataset; `path`, where given, stands for data.path."""
    d = spec["data"]
    return load_dataset(d["dataset"], path=path or d["path"], data_dir=data_dir, offline=offline,
                        **image_options(d))


def prepare(spec: Spec, *, data_dir=None, offline=False, path=None) -> Splits:
    """The spec's data section as Splits: the data set read, limited and split for validation."""
    return held_out(spec, load(spec, data_dir=data_dir, offline=offline, path=path))


def held_out(spec: Spec, data: Dataset) -> Splits:
    """The spec's splits of a data set already read: limited and split for validation (with the spec's
    seed, so `evaluate --split validation` finds the very images a run held out)."""
    d = spec["data"]
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if d["limit_train"]:
        x_train, y_train = _subset(x_train, y_train, d["limit_train"], spec["seed"])
    if d["limit_test"] and x_test is not None:
        x_test, y_test = _subset(x_test, y_test, d["limit_test"], spec["seed"] + 1)
    x_val = y_val = None
    if d["validation"] == "split":
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, d["validation_split"], spec["seed"])
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
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, list(data.class_names), data.source,
                  list(data.skipped))


def _subset(x, y, n, seed):
    """n images drawn at random (seeded), in their original order. Not the first n: image
    folders and archives come sorted by class, so the first n could all be one class."""
    if n >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[keep], y[keep]


def as_images(x) -> np.ndarray:
    """`x` as (N, height, width, channels); a (N, H, W) grayscale stack gains its channel axis."""
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
    """(x_train, y_train, x_val, y_val): a seeded split, stratified per class.

    The validation set holds floor(fraction * N + 0.5) examples, spread over the classes in
    proportion to their sizes (largest remainders), and every class keeps at least one
    training example. Both parts keep the original order of the examples.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CnntrainError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}",
                            hint="data.validation_split: 0.1 holds out 10% of the training data")
    x = np.asarray(x)
    y_flat = as_labels(y, len(x))
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
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    y = np.asarray(y)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]
