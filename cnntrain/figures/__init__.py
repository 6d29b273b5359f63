"""Pictures: matplotlib, and the one atomic PNG writer every picture goes through.

Drawn with matplotlib's object API on the Agg canvas (no pyplot: no window, no global figure
state). Only the modules under figures/ import matplotlib; they draw what others computed.
"""
from __future__ import annotations

from pathlib import Path

from cnntrain.runs import atomic

DPI = 100


def new_figure(width: float, height: float):
    """A matplotlib Figure of width x height inches at DPI, not attached to any window."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def save_png(fig, path) -> Path:
    """Write `fig` to `path` as PNG through the atomic writer; a write error names the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    except OSError as exc:
        raise atomic.write_error(path, exc) from None
    return path
