"""explain's picture: the image with its class activation map over it and the top classes on it.

What the map is, and how it is computed, is in cnntrain.insight.gradcam.
"""
from __future__ import annotations

import numpy as np

from cnntrain.figures import new_figure, save_png

_SIZE = 3.2   # inches per panel: a 32x32 image is blown up, a 224x224 one shown at about its size


def draw_cam(image: np.ndarray, cam: np.ndarray, top: list, chosen: str, layer: str, out_path) -> str:
    """Two panels, the image and the map over it; `top` is [(class, probability)], most probable first."""
    pixels = image.astype(np.float32) / 255.0
    gray = pixels.shape[-1] == 1
    fig = new_figure(2 * _SIZE, _SIZE + 0.9)
    for k, title in enumerate(("image", f"Grad-CAM of '{chosen}'")):
        ax = fig.add_axes((0.02 + 0.5 * k, 0.02, 0.46, _SIZE / (_SIZE + 0.9) - 0.04))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(pixels[..., 0] if gray else pixels, cmap="gray" if gray else None, vmin=0, vmax=1)
        if k:
            h, w = image.shape[:2]
            # The map stretched over the whole image: each cell over the part of it that it sees.
            ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                      interpolation="bilinear")
        ax.set_title(title, fontsize=9)
    text = "   ".join(f"{name} {p:.1%}" for name, p in top)
    fig.text(0.5, 1 - 0.35 / (_SIZE + 0.9), text, ha="center", va="center", fontsize=10)
    fig.text(0.5, 1 - 0.7 / (_SIZE + 0.9), f"maps of {layer}", ha="center", va="center", fontsize=8,
             color="0.4")
    return str(save_png(fig, out_path))
