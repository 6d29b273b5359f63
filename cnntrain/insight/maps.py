"""Pictures of what a CNN learned: its first filters and its feature maps.

What is computed here (the first convolution's kernels, the feature maps of one image)
is drawn by cnntrain.figures.maps.

Scaling, so that tiles can be compared:
- filters_figure: a first layer with 3 input channels is drawn as one RGB tile
  per filter, that filter's weights scaled jointly (all three channels) to
  [0, 1]. Otherwise one grayscale tile per filter (the mean over the input
  channels when there are several), all filters on one symmetric scale
  [-a, a] with a colour bar, so a brighter tile really has larger weights.
- activations_figure: each feature map is min-max scaled on its own (a map that
  is constant is drawn black and labelled "const").
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import keras
from cnntrain.errors import CnntrainError
from cnntrain.figures.maps import draw_activations, draw_filters
from cnntrain.model import backbones

MAX_FILTERS = 256
_CONV = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
# Element-wise layers whose output replaces the map of the conv/pool they follow.
_FOLLOWERS = {"Activation", "ReLU", "ELU", "LeakyReLU", "PReLU", "Softmax", "ThresholdedReLU",
              "BatchNormalization", "LayerNormalization", "GroupNormalization"}


def _bases(layer) -> set[str]:
    return {cls.__name__ for cls in type(layer).__mro__}


def _is_map_layer(layer) -> bool:
    b = _bases(layer)
    if "BaseGlobalPooling" in b or type(layer).__name__.startswith("Global"):
        return False
    return bool(b & {"BaseConv", "BaseDepthwiseConv", "BaseSeparableConv", "BaseConvTranspose",
                     "BasePooling", *_CONV})


def _layers(model) -> list:
    try:
        return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    except AttributeError:
        raise CnntrainError("not a Keras model", hint="pass the model loaded from model.keras") from None


# ----------------------------------------------------------------- filters

def _is_conv2d(layer) -> bool:
    bases = _bases(layer)
    return type(layer).__name__ == "Conv2D" or ("BaseConv" in bases and "BaseConvTranspose" not in bases
                                                and len(getattr(layer, "kernel_size", ())) == 2)


def _convolutions(model, prefix=""):
    """(name, layer) of each 2-D convolution in order, inside nested models (a backbone) too, named
    backbone/layer there; a backbone's input adapter is left out (its kernel is the family's
    preprocessing, set, not learned)."""
    adapters = backbones.input_adapters(model) if isinstance(model, keras.Model) else []
    for layer in _layers(model):
        if isinstance(layer, keras.Model):
            yield from _convolutions(layer, f"{prefix}{layer.name}/")
        elif _is_conv2d(layer) and not any(layer is a for a in adapters):
            yield prefix + layer.name, layer


def filters_figure(model, out_path) -> dict:
    """The first 2-D convolution's kernels as a grid of small images."""
    name, layer = next(_convolutions(model), (None, None))
    if layer is None:
        raise CnntrainError(
            "the model has no Conv2D layer, so there are no filters to draw",
            hint="filters are taken from the first Conv2D layer of the model")
    try:
        kernel = np.asarray(layer.get_weights()[0], dtype=np.float32)
    except (AttributeError, ValueError, IndexError):
        raise CnntrainError(f"{name} has no weights yet", hint="build or train the model first") from None
    path, size = draw_filters(name, kernel, out_path, MAX_FILTERS)
    return {"layer": name, "filters": int(kernel.shape[-1]), "shown": int(min(kernel.shape[-1], MAX_FILTERS)),
            "path": path, "size": size}


# ----------------------------------------------------------------- activations

def _sections(model) -> list[tuple[str, object]]:
    """(label, output tensor) for each conv/pool layer, taken after the element-wise
    layers that follow it (BatchNormalization, Activation, ...): the map that the
    next conv/pool layer actually sees."""
    layers = _layers(model)
    out = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if not _is_map_layer(layer):
            i += 1
            continue
        last = layer
        while i + 1 < len(layers) and type(layers[i + 1]).__name__ in _FOLLOWERS:
            i += 1
            last = layers[i]
        i += 1
        try:
            tensor = last.output
            shape = tuple(tensor.shape[1:])
        except (AttributeError, ValueError):
            raise CnntrainError(f"{last.name} has no output yet", hint="build the model before drawing it") from None
        if len(shape) != 3:
            continue  # 1-D or 3-D maps are not drawn
        names = layer.name if last is layer else f"{layer.name} -> {last.name}"
        fmt = getattr(layer, "data_format", "channels_last")
        out.append((f"{names}  {shape}", tensor, fmt))
    return out


def activations_figure(model, image: np.ndarray, out_path, max_maps: int = 16) -> dict:
    """The input image and up to `max_maps` feature maps of each conv/pool stage, one figure.

    A conv or pooling layer followed by element-wise layers (BatchNormalization,
    Activation, ReLU, ...) is shown once, after the last of them, labelled
    "conv2d -> activation  (26, 26, 32)". `image` is fed as the model expects raw
    input (uint8 pixel values are cast to float32; the model's own normalization
    layers apply).
    """
    if max_maps < 1:
        raise CnntrainError("max_maps must be at least 1", hint="ask for 1 or more feature maps per layer")
    sections = _sections(model)
    if not sections:
        raise CnntrainError("the model has no convolution or pooling layer with 2-D feature maps",
                            hint="activation maps are drawn for Conv2D/pooling layers only")
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[..., None]
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != len(expected) or any(e is not None and e != v for e, v in zip(expected, x.shape)):
        raise CnntrainError(f"the image has shape {x.shape} but the model expects {expected}",
                            hint="read it with cnntrain.data.image_files.read_image(height=..., width=..., channels=...)")
    probe = keras.Model(inputs=model.inputs, outputs=[t for _, t, _ in sections])
    maps = probe([x[None].astype(np.float32)], training=False)
    maps = [keras.ops.convert_to_numpy(m)[0] for m in (maps if isinstance(maps, (list, tuple)) else [maps])]

    path, px = draw_activations(getattr(model, 'name', 'the model'), x, [(label, fmt) for label, _, fmt in sections],
                                maps, max_maps, out_path)
    counts = [min(m.shape[0 if fmt == "channels_first" else -1], max_maps) for m, (_, _, fmt) in zip(maps, sections)]
    return {"path": path, "size": px, "layers": [label for label, _, _ in sections], "maps_per_layer": counts}
