"""One row of key figures per run folder, for `cnntrain runs`. A damaged file makes its run's row
say so, and the other runs are listed as usual."""
from __future__ import annotations

from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs import schema
from cnntrain.runs.folder import BACKUP, is_finished, list_runs


def _read(path: Path, kind, problems: list) -> dict:
    if not path.is_file():
        return {}
    try:
        return schema.read(path, kind)
    except CnntrainError as exc:
        problems.append(str(exc).splitlines()[0])
        return {}


def run_rows(root="runs") -> list[dict]:
    rows = []
    for run in list_runs(root):
        problems = []
        metrics = _read(run / "metrics.json", schema.METRICS, problems)
        state = _read(run / BACKUP / "state.json", schema.STATE, problems)
        evaluation = _read(run / "eval.json", schema.EVALUATION, problems)
        if problems:
            status = "damaged"
        elif is_finished(run):
            status = metrics.get("stopped", "completed")
        elif state:
            status = f"unfinished ({state['epochs_done']} epochs)"
        else:
            status = "incomplete"
        test = metrics.get("test") or {}
        rows.append({
            "run": str(run), "name": run.parent.name if run.parent != Path(root) else run.name,
            "status": status, "epochs": metrics.get("epochs", state.get("epochs_done")),
            "val_accuracy": metrics.get("validation", {}).get("accuracy"),
            "test_accuracy": evaluation.get("accuracy", test.get("accuracy")),
            "wall_time_s": metrics.get("wall_time_s"),
            "images_per_s": metrics.get("train_images_per_s"),
            "problems": problems,
        })
    return rows
