"""How an export checks itself: the same real images through the Keras model and the exported one,
top-1 agreement, the largest probability difference, accuracy, single-image latency, tolerances."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from cnntrain.data import splits
from cnntrain.errors import CnntrainError

REPRESENTATIVE_IMAGES = 300   # int8 calibration images, from the training split
CHECK_BATCH = 256             # images per predict call of the check (the runners' own default)
LATENCY_RUNS = 50
LATENCY_WARMUP = 5

# What an export must meet on the check images. The bounds are there to catch a broken
# conversion (normalization lost, channels swapped, a miscalibrated int8 file: agreement and
# accuracy fall by tens of points), not to grade rounding: a false alarm costs more than a
# loose bound. Measured on MNIST and CIFAR-10 models trained for one epoch (10,000 test
# images each) and on the tiny test models:
# - float32 formats are the same arithmetic in another runtime: max difference 0 to 4e-6, no
#   top-1 change. 1e-4 leaves room for other CPUs and kernels; a flip needs two classes
#   within 1e-4 of each other, so agreement is held at 99.9%.
# - float16 rounds the weights: max difference 3e-5 to 3.4e-3, agreement 99.8% to 100%.
# - dynamic (int8 weights, activations quantized on the fly) and int8 (integer kernels):
#   max difference 9e-4 to 0.35, agreement 97.7% to 100%, accuracy within 0.1 point. Images
#   near a decision boundary change class, more so with the flat probabilities of a
#   part-trained model, so one image's difference says little: these are held to agreement
#   and accuracy drop (points of accuracy, on a labelled check set), and max_diff is None.
TOLERANCES = {
    ("savedmodel", "none"): {"min_agreement": 0.999, "max_diff": 1e-4, "max_accuracy_drop": 0.001},
    ("onnx", "none"): {"min_agreement": 0.999, "max_diff": 1e-4, "max_accuracy_drop": 0.001},
    ("tflite", "none"): {"min_agreement": 0.999, "max_diff": 1e-4, "max_accuracy_drop": 0.001},
    ("tflite", "float16"): {"min_agreement": 0.99, "max_diff": 0.05, "max_accuracy_drop": 0.005},
    ("tflite", "dynamic"): {"min_agreement": 0.97, "max_diff": None, "max_accuracy_drop": 0.02},
    ("tflite", "int8"): {"min_agreement": 0.95, "max_diff": None, "max_accuracy_drop": 0.03},
}


def tolerance(fmt: str, quantize: str, keras_compute_dtype: str = "float32") -> dict:
    """The bounds for an export. A mixed-precision .keras model computes in bfloat16 or float16
    while a float32 export computes in float32: the difference is the Keras side's rounding
    (measured 0.0094 on MNIST, 3 of 2,000 top-1 changed), so it is held to float16's bounds."""
    if quantize == "none" and keras_compute_dtype != "float32":
        return dict(TOLERANCES[("tflite", "float16")])
    return dict(TOLERANCES[(fmt, quantize)])


def compute_dtype(model) -> str:
    """float32, or the lower precision that some layer of a mixed-precision model computes in."""
    for layer in [model, *getattr(model, "layers", [])]:
        dtype = getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32")
        if dtype != "float32":
            return str(dtype)
    return "float32"


# ---------------------------------------------------------------- images


def _subset(x, y, limit, seed):
    if limit is None or len(x) <= limit:
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(x), int(limit), replace=False))
    return splits.take(x, keep), (None if y is None else y[keep])


def dataset_images(metadata: dict, split: str, *, class_names, data_dir=None, offline=False, limit=None, seed=0):
    """(uint8 images, labels in the model's class order, where from) of the model's own data set.
    Images streamed from disk (rows.Lazy) stay there: `predictions` reads them a block at a time."""
    from cnntrain.assess import evaluate

    data, x, y = evaluate._load_data(metadata, data_dir=data_dir, offline=offline, split=split)
    y = evaluate._align_labels(y, getattr(data, "class_names", None), list(class_names))
    x, y = _subset(splits.as_images(x), np.asarray(y, dtype=np.int64), limit, seed)
    return x, y, f"{split} split of {metadata.get('dataset')} ({getattr(data, 'source', '')})"


def folder_images(folder, shape, *, class_names, metadata=None, limit=None, seed=0):
    """(uint8 images, labels or None, where from) of the image files under `folder`, each read as
    predict reads it for the model whose `metadata` is given (its data.resize rule, its background).

    Files in sub-folders named after the model's classes (DIR/<class>/*.png, as an image
    folder data set) are labelled, and then accuracy is measured too; any other layout gives
    agreement and probability differences only. At most `limit` files are read.
    """
    from cnntrain.assess.predict import auto_background, read_for_model
    from cnntrain.data import image_files as images

    folder = Path(folder)
    if not folder.is_dir():
        raise CnntrainError("--check-images is not a folder", file=str(folder),
                            hint="give a folder of image files (optionally DIR/<class>/<image>)")
    paths, errors = images.expand_paths([str(folder)])
    if errors:
        raise errors[0]
    names = [str(n) for n in class_names]
    parents = [p.parent.name if p.parent != folder else None for p in paths]
    y = np.array([names.index(n) for n in parents], np.int64) if all(n in names for n in parents) else None
    paths, y = _subset(np.array(paths, dtype=object), y, limit, seed)   # chosen before any is decoded
    metadata = metadata or {}
    background, resize = auto_background(metadata, shape), metadata.get("resize", "stretch")
    x = np.stack([read_for_model(p, shape, "auto", background, resize)[0] for p in paths])
    return x, y, f"image files under {folder}"


# ---------------------------------------------------------------- figures


def predictions(runner, x) -> np.ndarray:
    """The runner's class probabilities for images `x`, read a block at a time (x may be on disk)."""
    from cnntrain.assess import tta

    return tta.view_outputs(runner.predict, x, tta.NONE, CHECK_BATCH)


def compare(reference: np.ndarray, exported: np.ndarray, labels=None) -> dict:
    """Top-1 agreement, max and mean absolute probability difference, both accuracies."""
    reference = np.asarray(reference, dtype=np.float64)
    exported = np.asarray(exported, dtype=np.float64)
    same = reference.argmax(axis=1) == exported.argmax(axis=1)
    diff = np.abs(reference - exported)
    figures = {
        "images": int(len(reference)),
        "agreement": float(same.mean()),
        "disagreements": int((~same).sum()),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "accuracy": None, "keras_accuracy": None, "accuracy_drop": None,
    }
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        figures["accuracy"] = float(np.mean(exported.argmax(axis=1) == labels))
        figures["keras_accuracy"] = float(np.mean(reference.argmax(axis=1) == labels))
        figures["accuracy_drop"] = figures["keras_accuracy"] - figures["accuracy"]
    return figures


def failures(figures: dict, limits: dict) -> list[str]:
    """What is outside the tolerance, in words; empty when the export passes."""
    found = []
    if figures["agreement"] < limits["min_agreement"]:
        found.append(f"top-1 agreement {figures['agreement']:.2%} is below {limits['min_agreement']:.1%}")
    if limits["max_diff"] is not None and figures["max_abs_diff"] > limits["max_diff"]:
        found.append(f"max probability difference {figures['max_abs_diff']:.3g} is above {limits['max_diff']:g}")
    drop = figures.get("accuracy_drop")
    if drop is not None and drop > limits["max_accuracy_drop"] + 1e-12:
        found.append(f"accuracy drop {drop * 100:.2f} points is above {limits['max_accuracy_drop'] * 100:g}")
    return found


def latency_ms(runner, image, runs: int = LATENCY_RUNS, warmup: int = LATENCY_WARMUP) -> float:
    """The median wall time of one single-image prediction, in milliseconds."""
    batch = np.asarray(image)[np.newaxis]
    for _ in range(warmup):
        runner.predict(batch)
    times = []
    for _ in range(int(runs)):
        start = time.perf_counter()
        runner.predict(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
