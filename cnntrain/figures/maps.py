"""filters.png and activations.png: a first layer's kernels, and feature maps, as grids of tiles.

Laid out on a fixed grid of inches at 100 dpi, so a figure's pixel size follows from the
number of tiles and is returned with the path. The scaling rules are in cnntrain.insight.maps.
"""
from __future__ import annotations

import math

import numpy as np

from cnntrain.figures import DPI, new_figure, save_png


def _saved(fig, out_path) -> tuple[str, tuple[int, int]]:
    path = save_png(fig, out_path)
    w, h = fig.get_size_inches()
    return str(path), (int(round(w * DPI)), int(round(h * DPI)))


def _axes(fig, size: tuple[float, float], x: float, y: float, w: float, h: float):
    """An axes at x, y (inches from the top-left), w x h inches, no ticks."""
    width, height = size
    ax = fig.add_axes((x / width, 1 - (y + h) / height, w / width, h / height))
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _scaled(a: np.ndarray) -> tuple[np.ndarray, bool]:
    lo, hi = float(a.min()), float(a.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros_like(a, dtype=np.float32), True
    return ((a - lo) / (hi - lo)).astype(np.float32), False


def draw_filters(layer_name: str, kernel: np.ndarray, out_path, max_filters: int) -> tuple[str, tuple[int, int]]:
    """The kernels (kh, kw, depth, filters) as a grid of tiles; (path, pixel size)."""
    kh, kw, depth, m = kernel.shape
    shown = min(m, max_filters)
    rgb = depth == 3
    cols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / cols)
    cell, tile, top, margin = 0.8, 0.64, 0.9, 0.3
    bar = 0 if rgb else 0.9
    width = max(cols * cell + 2 * margin + bar, 5.0)
    height = top + rows * cell + margin
    fig = new_figure(width, height)
    extra = f" (first {shown} of {m})" if shown < m else ""
    fig.suptitle(f"{layer_name}: {m} filters, kernel {kh}x{kw}x{depth}{extra}", y=1 - 0.15 / height,
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
    return _saved(fig, out_path)


def draw_activations(model_name: str, x: np.ndarray, sections: list, maps: list, max_maps: int,
                     out_path) -> tuple[str, tuple[int, int]]:
    """The input image, then up to max_maps maps of each (label, data_format) section; (path, pixel size)."""
    cols = min(8, max_maps)
    cell, tile, head, top, margin = 0.9, 0.72, 0.35, 0.55, 0.25
    counts = [min(m.shape[0 if fmt == "channels_first" else -1], max_maps) for m, (_, fmt) in zip(maps, sections)]
    blocks = [1] + [math.ceil(n / cols) for n in counts]
    width = max(cols * cell + 2 * margin, 4.5)
    height = top + sum(head + b * cell for b in blocks) + margin
    fig = new_figure(width, height)
    fig.suptitle(f"feature maps of {model_name}", y=1 - 0.12 / height,
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
    for (label, fmt), m, n, b in zip(sections, maps, counts, blocks[1:]):
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
    return _saved(fig, out_path)
