"""Test-time augmentation: the class probabilities of an image averaged with those of its mirror.

`flip` is airbench's test-time flip: the model sees each image and the image flipped left-right,
and the two outputs are averaged. It helps where the classes are mirror-symmetric in distribution
(CIFAR-10's animals and vehicles) and hurts where they are not (a mirrored 2 is no digit). The
mirrors travel in the same batches as the images (one pass over 2N images), which is no slower
than two passes and needs one code path for Keras models and exported runners alike.
"""
from __future__ import annotations

import numpy as np

from cnntrain.errors import CnntrainError
from cnntrain.spec.schema import TTA_CHOICES

NONE = "none"


def checked(tta: str) -> str:
    """`tta` if it is a choice, else a CnntrainError naming the choices."""
    if tta not in TTA_CHOICES:
        raise CnntrainError(f"unknown test-time augmentation {tta!r}",
                            hint=f"--tta (or fit.tta) is one of: {', '.join(TTA_CHOICES)}")
    return tta


def of_model(tta: str | None, metadata: dict) -> str:
    """The TTA to use: the one asked for, else the one the model's run was fit with, else none."""
    return checked(tta if tta is not None else (metadata or {}).get("tta") or NONE)


def label(tta: str) -> str:
    """How the output lines name it: ' (test-time flip)', or '' for none."""
    return "" if tta == NONE else f" (test-time {tta})"


def with_mirrors(x) -> np.ndarray:
    """The N images (N, H, W, C) followed by their N left-right mirrors."""
    x = np.asarray(x)
    return np.concatenate([x, x[:, :, ::-1]])


def mean_of_mirrors(outputs) -> np.ndarray:
    """(N, classes) from the 2N outputs of `with_mirrors` images: each image's mean with its mirror's.
    (a + b) / 2 in the outputs' own float type, as keras.layers.Average computes it in fit's figure."""
    out = np.asarray(outputs)
    n = len(out) // 2
    return (out[:n] + out[n:]) / out.dtype.type(2)


def test_figures(model, dataset, tta: str, *, metrics, strategy=None) -> dict:
    """fit's test figures: model.evaluate's loss and compiled metrics on `dataset`, for flip on the
    mean of the model's outputs for each image and its mirror (with "tta": "flip" among them).

    `metrics` are fresh ones of the spec (the model's own hold the state of its training)."""
    import contextlib

    from cnntrain.backend import keras

    if checked(tta) == NONE:
        figures = model.evaluate(dataset, verbose=0, return_dict=True)
        return {k: float(v) for k, v in figures.items()}
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        inputs = keras.Input(model.input_shape[1:])
        # float32 whatever the global policy: the average of two softmaxes, as the loss takes it.
        mean = keras.layers.Average(dtype="float32")([model(inputs), model(keras.ops.flip(inputs, axis=2))])
        both = keras.Model(inputs, mean)
        both.compile(loss=model.loss, metrics=metrics, jit_compile=bool(getattr(model, "jit_compile", False)))
    figures = both.evaluate(dataset, verbose=0, return_dict=True)
    return {**{k: float(v) for k, v in figures.items()}, "tta": tta}
