"""The spec's data section to arrays: the dataset, its limits, and the validation choice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnntrain import datasets
from cnntrain.errors import CnntrainError
from cnntrain.spec import Spec


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list
    source: str

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])


def load(spec: Spec, *, data_dir=None, offline=False) -> datasets.Dataset:
    d = spec["data"]
    return datasets.load_dataset(d["dataset"], path=d["path"], data_dir=data_dir, offline=offline,
                                 image_size=tuple(d["image_size"]) if d["image_size"] else None,
                                 color_mode=d["color_mode"])


def prepare(spec: Spec, *, data_dir=None, offline=False) -> Splits:
    from cnntrain import pipeline

    d = spec["data"]
    data = load(spec, data_dir=data_dir, offline=offline)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if d["limit_train"]:
        x_train, y_train = _subset(x_train, y_train, d["limit_train"], spec["seed"])
    if d["limit_test"] and x_test is not None:
        x_test, y_test = _subset(x_test, y_test, d["limit_test"], spec["seed"] + 1)
    x_val = y_val = None
    if d["validation"] == "split":
        x_train, y_train, x_val, y_val = pipeline.split_validation(x_train, y_train, d["validation_split"], spec["seed"])
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
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, list(data.class_names), data.source)


def _subset(x, y, n, seed):
    """n images drawn at random (seeded), in their original order. Not the first n: image
    folders and archives come sorted by class, so the first n could all be one class."""
    if n >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[keep], y[keep]
