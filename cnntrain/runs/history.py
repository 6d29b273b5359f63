"""history.csv: one row per epoch, the union of the rows' keys as columns."""
from __future__ import annotations

import csv

from cnntrain.errors import CnntrainError
from cnntrain.runs.atomic import write_text


def write_history(path, rows):
    """Write history.csv from the per-epoch rows, their keys' union as columns."""
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join(_csv_number(row.get(k)) for k in keys))
    write_text(path, "\n".join(lines) + "\n")


def _csv_number(value):
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def read_history(path) -> list[dict]:
    """history.csv back as the rows write_history took: the epoch an int, the figures floats."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in ("", None)}
                for row in rows]
    except (OSError, ValueError, TypeError) as exc:
        raise CnntrainError(f"cannot read the run's history: {exc}", file=str(path),
                            hint="history.csv is written by cnntrain fit, one row per epoch") from None
