"""curves.png: loss and accuracy per epoch, training against validation."""
from __future__ import annotations

from cnntrain import runs


def curves_png(history: list[dict], path, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    metrics = [k for k in ("loss", "accuracy") if any(k in row for row in history)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6), squeeze=False)
    for ax, key in zip(axes[0], metrics):
        for name, style in ((key, "-o"), (f"val_{key}", "--s")):
            points = [(e, row[name]) for e, row in zip(epochs, history) if name in row]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, markersize=3, label="validation" if name.startswith("val_") else "training")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: {len(epochs)} epochs" if title else f"{len(epochs)} epochs")
    fig.tight_layout()
    try:
        with runs.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    except OSError as exc:
        raise runs.write_error(path, exc) from None
    finally:
        plt.close(fig)
