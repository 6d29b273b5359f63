"""history.csv: one row per epoch, the union of the rows' keys as columns."""
from __future__ import annotations

from cnntrain.runs.atomic import write_text


def write_history(path, rows):
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
