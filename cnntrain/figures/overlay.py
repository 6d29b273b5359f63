"""compare.png: several runs' curves on shared axes, one colour per run."""
from __future__ import annotations

from cnntrain.figures import new_figure, save_png
from cnntrain.runs.numbers import validation_name


def overlay_png(series: list[tuple[str, list[dict]]], path, title: str = ""):
    """series: (label, history rows) per run. Validation solid, training dashed, per metric."""
    metrics = [k for k in ("loss", "accuracy") if any(k in row for _, rows in series for row in rows)] or ["loss"]
    fig = new_figure(5.5 * len(metrics), 4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(series))]
    for ax, key in zip(axes, metrics):
        for (label, rows), colour in zip(series, colours):
            for name, style, part in ((validation_name(key), "-o", "validation"), (key, "--", "training")):
                points = [(row["epoch"], row[name]) for row in rows if name in row]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, color=colour, markersize=3, label=f"{label} ({part})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title or f"{len(series)} runs")
    fig.tight_layout()
    return save_png(fig, path)
