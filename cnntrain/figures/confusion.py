"""confusion.png: the confusion matrix with counts in the cells and class names on the axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntrain.figures import new_figure, save_png

# Past this many classes the cells are too small for their numbers: the figure drops the counts.
MAX_ANNOTATED_CLASSES = 30


def confusion_png(result: dict, path) -> Path:
    """The confusion matrix as a figure: counts in the cells, class names on the axes.

    The size is fixed by the class count (no tight bounding box), written atomically.
    """
    names = [str(c) for c in result["class_names"]]
    cm = np.asarray(result["confusion"], dtype=np.int64)
    n = len(names)
    side = figure_inches(n)
    fig = new_figure(side, side)
    # Laid out to fit every label at the fixed size: fixed margins cut the colour bar's "1000" to "100".
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    small = n > 12
    ax.set_xticklabels(names, rotation=45 if not small else 90, ha="right" if not small else "center",
                       fontsize=8 if small else 10)
    ax.set_yticklabels(names, fontsize=8 if small else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {100.0 * result['accuracy']:.2f}% on {result['samples']:,} images")
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = cm.max() / 2 if cm.size and cm.max() else 0
        fontsize = 9 if n <= 12 else 6
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if cm[i, j] > threshold else "black")
    return save_png(fig, path)


def figure_inches(num_classes: int) -> float:
    """Side of the square confusion figure in inches (100 dpi): grows with the classes, within 5-20."""
    return float(min(20.0, max(5.0, 2.0 + 0.5 * num_classes)))
