"""Pictures of what a CNN learned: its first filters and its feature maps.

PNG files for a person to open. Drawn with matplotlib's object API on the Agg
canvas (no pyplot, so no window and no global figure state). Every figure is
laid out on a fixed grid of inches at 100 dpi, so its pixel size follows from
the number of tiles and is returned with the path.

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

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cnntrain.backend import keras
from cnntrain.errors import CnntrainError

DPI = 100
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


def _save(fig: Figure, out_path) -> tuple[str, tuple[int, int]]:
    """Write the PNG atomically (a temporary file, then rename); return path and pixel size."""
    path = Path(out_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    except OSError as exc:
        raise CnntrainError(f"cannot write the picture: {exc.strerror or exc}", file=str(path),
                            hint="check that the folder exists and is writable") from None
    w, h = fig.get_size_inches()
    return str(path), (int(round(w * DPI)), int(round(h * DPI)))


def _axes(fig: Figure, size: tuple[float, float], x: float, y: float, w: float, h: float):
    """An axes at x, y (inches from the top-left), w x h inches, no ticks."""
    width, height = size
    ax = fig.add_axes((x / width, 1 - (y + h) / height, w / width, h / height))
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


# ----------------------------------------------------------------- filters

def filters_figure(model, out_path) -> dict:
    """The first 2-D convolution's kernels as a grid of small images."""
    layer = next((lay for lay in _layers(model) if type(lay).__name__ == "Conv2D"
                  or ("BaseConv" in _bases(lay) and len(getattr(lay, "kernel_size", ())) == 2
                      and "BaseConvTranspose" not in _bases(lay))), None)
    if layer is None:
        raise CnntrainError(
            "the model has no Conv2D layer, so there are no filters to draw",
            hint="filters are taken from the first Conv2D layer of the model")
    try:
        kernel = np.asarray(layer.get_weights()[0], dtype=np.float32)
    except (AttributeError, ValueError, IndexError):
        raise CnntrainError(f"{layer.name} has no weights yet", hint="build or train the model first") from None
    kh, kw, depth, m = kernel.shape
    shown = min(m, MAX_FILTERS)
    rgb = depth == 3
    cols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    cell, tile, top, margin = 0.8, 0.64, 0.9, 0.3
    bar = 0 if rgb else 0.9
    width = max(cols * cell + 2 * margin + bar, 5.0)
    height = top + rows * cell + margin
    fig = Figure(figsize=(width, height), dpi=DPI)
    extra = f" (first {shown} of {m})" if shown < m else ""
    fig.suptitle(f"{layer.name}: {m} filters, kernel {kh}x{kw}x{depth}{extra}", y=1 - 0.15 / height,
                 va="top", fontsize=11)
    if rgb:
        note = "RGB, each filter scaled to [0, 1] on its own"
    elif depth == 1:
        note = "grayscale, all filters on one scale"
    else:
        note = f"mean over the {depth} input channels, all filters on one scale"
    fig.text(0.5, 1 - 0.5 / height, note, ha="center", va="top", fontsize=8, color="0.3")
    gray = kernel.mean(axis=2)                     # (kh, kw, m)
    limit = float(np.abs(gray[..., :shown]).max()) or 1.0
    x0 = (width - bar - cols * cell) / 2
    image = None
    for i in range(shown):
        r, c = divmod(i, cols)
        ax = _axes(fig, (width, height), x0 + c * cell + (cell - tile) / 2, top + r * cell, tile, tile)
        ax.set_title(str(i), fontsize=6, pad=1)
        if rgb:
            w = kernel[..., i]
            lo, hi = float(w.min()), float(w.max())
            ax.imshow((w - lo) / (hi - lo) if hi > lo else np.zeros_like(w), interpolation="nearest")
        else:
            image = ax.imshow(gray[..., i], cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
    if image is not None:
        cax = _axes(fig, (width, height), width - bar + 0.15, top, 0.15, rows * cell - (cell - tile))
        fig.colorbar(image, cax=cax, format="%.3g").ax.tick_params(labelsize=7)
        cax.set_yticks(np.linspace(-limit, limit, 5))
    path, size = _save(fig, out_path)
    return {"layer": layer.name, "filters": int(m), "shown": int(shown), "path": path, "size": size}


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


def _scaled(a: np.ndarray) -> tuple[np.ndarray, bool]:
    lo, hi = float(a.min()), float(a.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(a, dtype=np.float32), True
    return ((a - lo) / (hi - lo)).astype(np.float32), False


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
                            hint="read it with cnntrain.images.read_image(height=..., width=..., channels=...)")
    probe = keras.Model(inputs=model.inputs, outputs=[t for _, t, _ in sections])
    maps = probe([x[None].astype(np.float32)], training=False)
    maps = [keras.ops.convert_to_numpy(m)[0] for m in (maps if isinstance(maps, (list, tuple)) else [maps])]

    cols = min(8, max_maps)
    cell, tile, head, top, margin = 0.9, 0.72, 0.35, 0.55, 0.25
    counts = [min(m.shape[0 if fmt == "channels_first" else -1], max_maps) for m, (_, _, fmt) in zip(maps, sections)]
    blocks = [1] + [math.ceil(n / cols) for n in counts]
    width = max(cols * cell + 2 * margin, 4.5)
    height = top + sum(head + b * cell for b in blocks) + margin
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.suptitle(f"feature maps of {getattr(model, 'name', 'the model')}", y=1 - 0.12 / height,
                 va="top", fontsize=11)
    size = (width, height)
    x0 = (width - cols * cell) / 2
    y = top
    fig.text(x0 / width, 1 - (y + 0.05) / height, f"input  {tuple(x.shape)}", va="top", fontsize=9,
             weight="bold")
    ax = _axes(fig, size, x0 + (cell - tile) / 2, y + head, tile, tile)
    if x.shape[-1] == 3:
        ax.imshow(x.astype(np.uint8) if x.dtype == np.uint8 else _scaled(x)[0], interpolation="nearest")
    else:
        shown = x.mean(axis=-1)
        ax.imshow(shown, cmap="gray", interpolation="nearest",
                  **({"vmin": 0, "vmax": 255} if x.dtype == np.uint8 else {}))
    y += head + cell
    for (label, _, fmt), m, n, b in zip(sections, maps, counts, blocks[1:]):
        channels = m.shape[0] if fmt == "channels_first" else m.shape[-1]
        more = f"   (first {n} of {channels} maps)" if n < channels else ""
        text = label + more
        fig.text(x0 / width, 1 - (y + 0.05) / height, text, va="top", weight="bold",
                 fontsize=9 if len(text) * 0.075 < width - x0 else 7)
        for k in range(n):
            fmap = m[k] if fmt == "channels_first" else m[..., k]
            scaled, const = _scaled(fmap)
            r, c = divmod(k, cols)
            ax = _axes(fig, size, x0 + c * cell + (cell - tile) / 2, y + head + r * cell, tile, tile)
            ax.imshow(scaled, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{k}" + (" const" if const else ""), fontsize=6, pad=1)
        y += head + b * cell
    path, px = _save(fig, out_path)
    return {"path": path, "size": px, "layers": [label for label, _, _ in sections],
            "maps_per_layer": counts}
