"""Dirac initialization: a convolution that starts out passing its input through.

airbench (KellerJordan/cifar10-airbench) starts every convolution of its blocks as a partial
identity: the first `input channels` filters copy one input channel each (a 1 at the kernel's
centre, 0 elsewhere), the other filters start random. A deep plain stack then begins close to its
shallower self, and trains faster in its first epochs. In a spec:

    - Conv2D: {filters: 64, kernel_size: 3, padding: same, kernel_initializer: Dirac}

The other filters are Glorot-uniform, Keras' own default for a Conv2D, so naming Dirac changes
only the identity part. Once the model is built, `fit` names Glorot-uniform as the layer's
initializer (the kernel is in the weights), so plain Keras loads the saved model without cnntrain.
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import keras


@keras.saving.register_keras_serializable(package="cnntrain")
class Dirac(keras.initializers.Initializer):
    """A (height, width, in, out) kernel: filter i < min(in, out) is the identity on channel i."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=self.seed)(shape, dtype="float32"))
        if len(shape) >= 3:
            *space, channels_in, channels_out = shape
            n = min(channels_in, channels_out)
            kernel[..., :n] = 0.0
            centre = tuple(s // 2 for s in space)
            kernel[(*centre, np.arange(n), np.arange(n))] = 1.0
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


# The spec writes the bare name, as it writes "glorot_uniform"; Keras' lookup finds it here.
keras.saving.get_custom_objects()["Dirac"] = Dirac


def settle(model) -> None:
    """Name Glorot-uniform where a built layer named Dirac: its kernel already holds the identity."""
    for layer in model.layers:
        initializer = getattr(layer, "kernel_initializer", None)
        if isinstance(initializer, Dirac):
            layer.kernel_initializer = keras.initializers.GlorotUniform(seed=initializer.seed)
