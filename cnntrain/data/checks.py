"""Shape, dtype and label checks shared by every reader, so each format reports
the same mistakes in the same words."""
from __future__ import annotations

import numpy as np

from cnntrain.errors import CnntrainError

from .catalog import DATASET_CLASSES, DATASET_SHAPES, DATASET_TEST_IMAGES, DATASET_TRAIN_IMAGES

_SPLIT = {"train": "training", "test": "test"}
_NOT_IT = "check data.dataset and data.path (your own images are dataset: image_folder)"


def fail(message: str, file: str | None, hint: str | None = None) -> CnntrainError:
    return CnntrainError(message, file=None if file is None else str(file), hint=hint)


def images(x, file: str, key: str) -> np.ndarray:
    """Pixels as uint8 (N, H, W, C); (N, H, W) gains C=1 as a view, not a copy."""
    if not isinstance(x, np.ndarray):
        raise fail(f"'{key}' is a {type(x).__name__}; expected a numpy array of images", file)
    if x.dtype != np.uint8:
        raise fail(f"'{key}' has dtype {x.dtype}; expected uint8 pixels in 0-255", file,
                   hint="store images as uint8, e.g. np.savez(..., x_train=x.astype('uint8'))")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape[1:]:
        raise fail(f"'{key}' has shape {tuple(x.shape)}; expected (N, height, width) or "
                   "(N, height, width, channels) with 1 or 3 channels", file)
    return x


def labels(y, count: int, n_classes: int, file: str, key: str, images_key: str) -> np.ndarray:
    """Labels as int64 (N,), checked against the image count and the class count."""
    y = np.asarray(y) if not isinstance(y, np.ndarray) else y
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' CIFAR layout is (N, 1)
        y = y[:, 0]
    if y.ndim != 1:
        raise fail(f"'{key}' has shape {tuple(y.shape)}; expected (N,) integer class labels", file)
    if y.size and y.dtype.kind not in "iu":
        raise fail(f"'{key}' has dtype {y.dtype}; expected integer class labels", file,
                   hint="labels are class indices 0..n-1, not one-hot or float")
    if len(y) != count:
        raise fail(f"'{key}' holds {len(y)} labels but '{images_key}' holds {count} images; "
                   "expected one label per image", file)
    y = y.astype(np.int64, copy=False)
    if y.size:
        bad = np.flatnonzero((y < 0) | (y >= n_classes))
        if bad.size:
            i = int(bad[0])
            raise fail(f"'{key}' holds label {int(y[i])} at index {i} ({bad.size} labels out of "
                       f"range); expected labels in [0, {n_classes}) for {n_classes} classes", file)
    return y


def same_image_shape(x_train: np.ndarray, x_test: np.ndarray, file: str) -> None:
    if x_train.shape[1:] != x_test.shape[1:]:
        raise fail(f"test images are {tuple(x_test.shape[1:])} but training images are "
                   f"{tuple(x_train.shape[1:])}; expected one image shape", file)


def _shown(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def claimed(name: str, split: str, count: int, shape, file: str, what: str) -> None:
    """Refuses data that cannot be the built-in data set `name`, before it is allocated: more
    images than its `split` ("train" or "test") holds, or images of another shape. `shape` is
    (height, width[, channels]) or None; `what` says who claims it ("'x_train' holds")."""
    most = (DATASET_TRAIN_IMAGES if split == "train" else DATASET_TEST_IMAGES).get(name)
    if most is None:
        return
    if count > most:
        raise fail(f"{what} {count:,} images; {name} has at most {most:,} {_SPLIT[split]} images, so this "
                   f"is not {name} data", file, hint=_NOT_IT)
    want = DATASET_SHAPES[name]
    if shape is not None and tuple(int(d) for d in shape) != want[:len(shape)]:
        raise fail(f"{what} images of {_shown(shape)}; {name} images are {_shown(want[:len(shape)])}, "
                   f"so this is not {name} data", file, hint=_NOT_IT)


def classes(name: str, names: list, file: str) -> None:
    """Refuses a class list that cannot be the built-in data set `name`'s."""
    want = DATASET_CLASSES.get(name)
    if want is not None and len(names) != want:
        raise fail(f"holds {len(names)} classes; {name} has {want}, so this is not {name} data",
                   file, hint=_NOT_IT)
