"""history.csv: one row per epoch, the union of the rows' keys as columns."""
from __future__ import annotations

import csv
import io

from cnntrain.errors import CnntrainError, not_regular
from cnntrain.runs import schema
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


MAX_BYTES = 64 << 20   # a row per epoch: 64 MB is a million epochs of 60 figures


def read_history(path) -> list[dict]:
    """history.csv back as the rows write_history took: the epoch an int from 1, the figures floats
    (an empty cell, a figure an epoch did not have, is left out). A damaged file is a schema.Damaged
    error naming the line and the column; every reader (fit --resume, compare, card) takes it so."""
    kind = not_regular(path)
    if kind:   # open() of a FIFO blocks until something writes to it
        raise schema.damaged(path, "", f"is {kind}, not a regular file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CnntrainError(f"cannot read the run's history: {exc.strerror or exc}", file=str(path),
                            hint="history.csv is written by cnntrain fit, one row per epoch") from None
    if len(raw) > MAX_BYTES:
        raise schema.damaged(path, "", f"the file is over {MAX_BYTES >> 20} MB, which no history.csv is")
    try:
        table = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise schema.damaged(path, "", f"not a CSV table ({exc})") from None
    if not table:
        return []
    header, rows = table[0], []
    for line, cells in enumerate(table[1:], 2):
        if len(cells) > len(header):
            raise schema.damaged(path, "", f"line {line} holds {len(cells)} cells, the header names {len(header)}")
        row = {}
        for key, text in zip(header, cells):
            if text == "":
                continue
            try:
                row[key] = int(text) if key == "epoch" else float(text)
            except ValueError:
                what = "an integer" if key == "epoch" else "a number"
                raise schema.damaged(path, "", f"line {line}: '{key}' must be {what}, received: {text[:80]!r}") from None
        rows.append(row)
    return schema.check(path, rows, schema.HISTORY_ROWS)
