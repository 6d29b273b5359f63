"""Patch whitening: a first convolution whose filters decorrelate the image's pixel patches.

airbench (KellerJordan/cifar10-airbench) starts its network with a 2x2 convolution whose kernel is
computed, not learned: the eigenvectors of the covariance of 2x2x3 patches of training images,
each divided by the square root of its eigenvalue, and the same filters negated. Its output
channels are uncorrelated with unit variance, which lets the layers above train fast from the
first step. In a spec it is an initializer of a Conv2D:

    - Conv2D: {filters: 24, kernel_size: 2, kernel_initializer: PatchWhitening, trainable: false}

`fit` computes the kernel from up to `images` training images, as they reach that layer (after
normalization and any layer before it), right after building the model. Built without data
(`cnntrain check`, `summary`), the kernel is He-uniform. The saved model names He-uniform as its
initializer (its kernel is in the weights), so plain Keras loads it without cnntrain.
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import keras
from cnntrain.data.splits import as_images
from cnntrain.errors import CnntrainError


@keras.saving.register_keras_serializable(package="cnntrain")
class PatchWhitening(keras.initializers.Initializer):
    """filters = n or 2n, n = kernel height x width x input channels; eps keeps the smallest
    eigenvalues from blowing up their filters (airbench: 5e-4)."""

    def __init__(self, eps: float = 5e-4, images: int = 5000, seed=None):
        self.eps, self.images, self.seed = float(eps), int(images), seed

    def __call__(self, shape, dtype=None):
        return keras.initializers.HeUniform(seed=self.seed)(shape, dtype=dtype)

    def get_config(self):
        return {"eps": self.eps, "images": self.images, "seed": self.seed}


# The spec writes the bare name, as it writes "he_normal"; Keras' lookup finds it here.
keras.saving.get_custom_objects()["PatchWhitening"] = PatchWhitening


def patch_covariance(x: np.ndarray, kh: int, kw: int, chunk: int = 256) -> np.ndarray:
    """The covariance of every kh x kw patch (stride 1) of (n, h, w, c) images, flattened (kh, kw, c)
    in that order; in chunks of images, so memory stays small whatever n."""
    d = kh * kw * x.shape[-1]
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    for start in range(0, len(x), chunk):
        windows = np.lib.stride_tricks.sliding_window_view(x[start:start + chunk], (kh, kw), axis=(1, 2))
        flat = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, d).astype(np.float64)   # n, h', w', kh, kw, c
        total += flat.sum(axis=0)
        outer += flat.T @ flat
        count += len(flat)
    if count < 2:
        raise CnntrainError("PatchWhitening needs at least 2 patches of the training images")
    return (outer - np.outer(total, total) / count) / (count - 1)


def whitening_kernel(cov: np.ndarray, shape: tuple, eps: float) -> np.ndarray:
    """A (kh, kw, c, filters) kernel from a patch covariance: eigenvectors / sqrt(eigenvalue + eps),
    largest eigenvalue first; with filters = 2 x kh x kw x c, each filter and then its negation."""
    kh, kw, c, filters = shape
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    kernel = vectors[:, order] / np.sqrt(np.maximum(values[order], 0.0) + eps)
    if filters == 2 * kernel.shape[1]:
        kernel = np.concatenate([kernel, -kernel], axis=1)
    return kernel.reshape(kh, kw, c, filters).astype(np.float32)


def problem(layer) -> tuple[str, str] | None:
    """(what is wrong, what to do) where `layer` (built) uses PatchWhitening in a way it cannot work."""
    if not isinstance(getattr(layer, "kernel_initializer", None), PatchWhitening):
        return None
    if type(layer) is not keras.layers.Conv2D:
        return (f"PatchWhitening initializes a Conv2D's kernel, not a {type(layer).__name__}'s",
                "use it as the kernel_initializer of a Conv2D (the first one)")
    kh, kw, c, filters = layer.kernel.shape
    n = kh * kw * c
    if filters not in (n, 2 * n) or tuple(layer.dilation_rate) != (1, 1):
        return (f"a PatchWhitening Conv2D of kernel {kh}x{kw} on {c} channels has {n} or {2 * n} filters "
                f"(the patch's {n} directions, then also their negations) and no dilation; this one has "
                f"{filters} filters, dilation {tuple(layer.dilation_rate)}", f"set filters: {2 * n}")
    return None


def whiten(model, x_train) -> list[tuple[str, int]]:
    """Set the kernel of every Conv2D built with PatchWhitening (checked by `problem`) from `x_train`
    (images as the model takes them, uint8 or float); return (layer name, images used) for each."""
    done = []
    for index, layer in enumerate(model.layers):
        initializer = getattr(layer, "kernel_initializer", None)
        if not isinstance(initializer, PatchWhitening):
            continue
        kh, kw, c, filters = layer.kernel.shape
        rng = np.random.default_rng(0)
        pick = np.sort(rng.permutation(len(x_train))[:initializer.images])
        inputs = np.asarray(as_images(x_train)[pick], dtype=np.float32)
        for before in model.layers[:index]:
            inputs = np.asarray(keras.ops.convert_to_numpy(before(inputs, training=False)), dtype=np.float32)
        kernel = whitening_kernel(patch_covariance(inputs, kh, kw), (kh, kw, c, filters), initializer.eps)
        layer.kernel.assign(kernel)
        if layer.use_bias:
            layer.bias.assign(np.zeros(filters, dtype=np.float32))
        layer.kernel_initializer = keras.initializers.HeUniform(seed=initializer.seed)
        done.append((layer.name, len(pick)))
    return done
