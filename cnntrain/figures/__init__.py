"""Pictures: matplotlib, and the one atomic PNG writer every picture goes through.

Drawn with matplotlib's object API on the Agg canvas (no pyplot: no window, no global figure
state). Only the modules under figures/ import matplotlib; they draw what others computed.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs import atomic

DPI = 100


def new_figure(width: float, height: float):
    """A matplotlib Figure of width x height inches at DPI, not attached to any window."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


# The formats a picture can be written in, by file suffix; matplotlib writes each one itself.
FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff",
           ".pdf": "pdf", ".svg": "svg"}


def picture_format(path) -> str:
    """The format `path`'s suffix names, or an error: PNG bytes under a .jpg name would fool every reader."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        what = f"'{path.suffix}' is not a picture format cnntrain writes" if suffix else \
            "the file name has no suffix to say which picture format to write"
        raise CnntrainError(f"cannot write the picture: {what}", file=str(path),
                            hint="name it .png, .jpg, .webp, .tif, .pdf or .svg")
    return FORMATS[suffix]


def save_png(fig, path) -> Path:
    """Write `fig` to `path` through the atomic writer, as PNG or the format its suffix names
    (picture_format); a write error names the file."""
    path = Path(path)
    kind = picture_format(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp, warnings.catch_warnings():
            # A class or layer name from a file may hold control characters; matplotlib draws a box for
            # each and warns with the character itself, which would reach the terminal raw.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
            fig.savefig(tmp, dpi=DPI, format=kind)
    except OSError as exc:
        raise atomic.write_error(path, exc) from None
    return path
