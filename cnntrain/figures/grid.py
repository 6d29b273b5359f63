"""augment.png: training images in the first column, augmented versions of each beside them."""
from __future__ import annotations

import numpy as np

from cnntrain.figures import new_figure, save_png


def augment_grid_png(columns: list, labels: list[str], out, title: str, captions: list | None = None) -> str:
    """`columns[0]` the originals, then one batch per version, each (rows, H, W, C) in 0-255;
    `captions[c][r]` (or a None column) is written under an image: a mixed image's label."""
    rows, cols = len(labels), len(columns)
    fig = new_figure(1.3 * cols, 1.3 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, batch in enumerate(columns):
        for r in range(rows):
            ax = axes[r][c]
            image = np.clip(batch[r], 0, 255).astype(np.uint8)
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"#{c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=8)
            if captions and captions[c] and captions[c][r]:
                ax.set_xlabel(captions[c][r], fontsize=6)
    fig.suptitle(f"{title}: augmentation during fit (training batches only)", fontsize=9)
    fig.tight_layout()
    return str(save_png(fig, out))
