"""`cnntrain runs`: one row per run folder with its key figures."""
from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from cnntrain import runs


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_rows(root="runs") -> list[dict]:
    rows = []
    for run in runs.list_runs(root):
        metrics = _read(run / "metrics.json")
        state = _read(run / runs.BACKUP / "state.json")
        evaluation = _read(run / "eval.json")
        if runs.is_finished(run):
            status = metrics.get("stopped", "completed")
        elif state:
            status = f"unfinished ({state.get('epochs_done', 0)} epochs)"
        else:
            status = "incomplete"
        test = metrics.get("test") or {}
        rows.append({
            "run": str(run), "name": run.parent.name if run.parent != Path(root) else run.name,
            "status": status, "epochs": metrics.get("epochs", state.get("epochs_done")),
            "val_accuracy": (metrics.get("validation") or {}).get("accuracy"),
            "test_accuracy": evaluation.get("accuracy", test.get("accuracy")),
            "wall_time_s": metrics.get("wall_time_s"),
            "images_per_s": metrics.get("train_images_per_s"),
        })
    return rows


def runs_table(rows) -> Table:
    table = Table(title="runs, newest first")
    for column, justify in (("run", "left"), ("status", "left"), ("epochs", "right"), ("val acc", "right"),
                            ("test acc", "right"), ("time", "right"), ("images/s", "right")):
        table.add_column(column, justify=justify)
    for r in rows:
        table.add_row(escape("/".join(Path(r["run"]).parts[-2:])), escape(r["status"]), _s(r["epochs"]), _pct(r["val_accuracy"]),
                      _pct(r["test_accuracy"]), f"{r['wall_time_s']:.0f} s" if r["wall_time_s"] else "-",
                      f"{r['images_per_s']:,.0f}" if r["images_per_s"] else "-")
    return table


def _s(value):
    return "-" if value is None else str(value)


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"
