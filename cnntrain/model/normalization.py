"""Normalization: per-channel statistics of the training split, and the layer at the model's front.

The layer, not the input pipeline, normalizes: a saved model then carries its own preprocessing,
and `predict` and `evaluate` feed it raw 0-255 images exactly as training did.
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import keras
from cnntrain.data.splits import as_images
from cnntrain.errors import CnntrainError
from cnntrain.spec.schema import NORMALIZE_CHOICES

# Bytes of 8-byte temporaries per chunk when computing statistics: bounded memory
# whatever the size of the training set.
_STATS_CHUNK_BYTES = 32 * 2**20


def channel_stats(x_train) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) variance of images, in bounded-size chunks.

    uint8 images (the normal case) are counted into a 256-bin histogram per channel:
    the sums are then exact integers, the result is rounded once, and it is ~2.5x
    faster than float64 arithmetic. Other dtypes go through float64 chunks. Neither
    makes the 4x float copy of the whole set that `x.astype("float32").mean()` would.
    """
    x = as_images(x_train)
    if len(x) == 0:
        raise CnntrainError("cannot compute normalization statistics of an empty training set")
    channels = x.shape[-1]
    per_image = int(np.prod(x.shape[1:]))
    step = max(1, _STATS_CHUNK_BYTES // (8 * per_image))
    count = len(x) * per_image // channels
    if x.dtype == np.uint8:
        hist = np.zeros(256 * channels, dtype=np.int64)
        offsets = (np.arange(channels) * 256).astype(np.uint16)
        for start in range(0, len(x), step):
            chunk = x[start:start + step].reshape(-1, channels)
            hist += np.bincount((chunk + offsets).ravel(), minlength=256 * channels)
        values = np.arange(256, dtype=np.int64)
        # Python integers from here: count * sum(x^2) overflows int64 for big sets.
        total = [int(h @ values) for h in hist.reshape(channels, 256)]
        total_sq = [int(h @ (values * values)) for h in hist.reshape(channels, 256)]
        mean = np.array([t / count for t in total])
        var = np.array([(count * q - t * t) / (count * count) for t, q in zip(total, total_sq)])
        return mean, var
    total = np.zeros(channels)
    for start in range(0, len(x), step):
        total += x[start:start + step].reshape(-1, channels).astype(np.float64).sum(axis=0)
    mean = total / count
    # Second pass around the mean: no cancellation for float data far from zero.
    total_sq = np.zeros(channels)
    for start in range(0, len(x), step):
        centred = x[start:start + step].reshape(-1, channels).astype(np.float64) - mean
        total_sq += np.einsum("ij,ij->j", centred, centred)
    return mean, total_sq / count


def normalization_layer(normalize: str, x_train: np.ndarray):
    """The layer at the front of the model that normalizes 0-255 float images.

    "none" -> None; "scale" -> Rescaling(1/255); "standardize" -> Normalization with
    the per-channel mean and variance of `x_train` (the training split only).
    """
    if normalize == "none":
        return None
    if normalize == "scale":
        return keras.layers.Rescaling(1.0 / 255.0, name="scale")
    if normalize == "standardize":
        mean, var = channel_stats(x_train)
        layer = keras.layers.Normalization(axis=-1, mean=mean.tolist(), variance=var.tolist(),
                                           name="standardize")
        # Built now, eagerly: built on first call inside a tf.data map or tf.function,
        # its mean/variance would be that graph's tensors and unusable anywhere else.
        layer.build((None,) + as_images(x_train).shape[1:])
        return layer
    raise CnntrainError(f"unknown normalization {normalize!r}",
                        hint=f"preprocess.normalize is one of {', '.join(NORMALIZE_CHOICES)}")
