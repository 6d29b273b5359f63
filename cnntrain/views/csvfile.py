"""predictions.csv: file, rank, class, probability, one line per file and rank."""
from __future__ import annotations

import csv
from pathlib import Path

from cnntrain.runs import atomic

CSV_HEADER = ("file", "rank", "class", "probability")


def predictions_csv(rows: list[dict], path) -> Path:
    """file,rank,class,probability: one line per file and rank (1 = most probable)."""
    path = Path(path)
    try:
        with atomic.atomic_path(path, suffix=".csv") as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(CSV_HEADER)
                for row in rows:
                    for rank, entry in enumerate(row["top"], start=1):
                        writer.writerow([str(row["file"]), rank, entry["class"],
                                         f"{float(entry['probability']):.6f}"])
    except OSError as exc:
        raise atomic.write_error(path, exc) from None
    return path
