"""One row of key figures per run folder, for `cnntrain runs`."""
from __future__ import annotations

import json
from pathlib import Path

from cnntrain.errors import plural
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
            status = f"unfinished ({plural(state.get('epochs_done', 0), 'epoch')})"
        else:
            status = "incomplete"
        test = _test_figure(metrics, evaluation)
        rows.append({
            "run": str(run), "name": run.parent.name if run.parent != Path(root) else run.name,
            "status": status, "epochs": metrics.get("epochs", state.get("epochs_done")),
            "val_accuracy": (metrics.get("validation") or {}).get("accuracy"),
            **test,
            "wall_time_s": metrics.get("wall_time_s"),
            "images_per_s": metrics.get("train_images_per_s"),
        })
    return rows


def _test_figure(metrics: dict, evaluation: dict) -> dict:
    """The test accuracy, on how many images, and from where: `cnntrain evaluate` of the test split
    (eval.json) if there is one, else the fit's own figure (metrics.json), which a data.limit_test
    run takes on part of the test set. An evaluation of an earlier epoch (the run was trained longer
    since) is not the model's any more."""
    current = evaluation.get("epoch") in (None, metrics.get("epochs"))
    if evaluation.get("split", "test") == "test" and evaluation.get("accuracy") is not None and current:
        return {"test_accuracy": evaluation["accuracy"], "test_images": evaluation.get("samples"),
                "test_from": "evaluate"}
    accuracy = (metrics.get("test") or {}).get("accuracy")
    return {"test_accuracy": accuracy, "test_images": (metrics.get("images") or {}).get("test"),
            "test_from": "fit" if accuracy is not None else None}
