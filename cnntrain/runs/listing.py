"""One row of key figures per run folder, for `cnntrain runs`."""
from __future__ import annotations

import json
from pathlib import Path

from cnntrain.runs.folder import BACKUP, is_finished, list_runs


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_rows(root="runs") -> list[dict]:
    rows = []
    for run in list_runs(root):
        metrics = _read(run / "metrics.json")
        state = _read(run / BACKUP / "state.json")
        evaluation = _read(run / "eval.json")
        if is_finished(run):
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
