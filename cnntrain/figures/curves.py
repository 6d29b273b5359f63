"""curves.png: loss and accuracy per epoch, training against validation."""
from __future__ import annotations

from cnntrain.errors import plural
from cnntrain.figures import new_figure, save_png
from cnntrain.runs.numbers import is_validation, validation_name


def curves_png(history: list[dict], path, title: str = ""):
    """Write curves.png: loss and accuracy per epoch of `history`, training against validation."""
    epochs = [row["epoch"] for row in history]
    metrics = [k for k in ("loss", "accuracy") if any(k in row for row in history)]
    fig = new_figure(5 * max(1, len(metrics)), 3.6)
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)
    for ax, key in zip(axes[0], metrics):
        for name, style in ((key, "-o"), (validation_name(key), "--s")):
            points = [(e, row[name]) for e, row in zip(epochs, history) if name in row]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, markersize=3, label="validation" if is_validation(name) else "training")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: {plural(len(epochs), 'epoch')}" if title else plural(len(epochs), "epoch"))
    fig.tight_layout()
    return save_png(fig, path)
