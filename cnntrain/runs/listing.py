"""One row of key figures per run folder, for `cnntrain runs`. A damaged file makes its run's row
say so, and the other runs are listed as usual."""
from __future__ import annotations

from pathlib import Path

from cnntrain.errors import CnntrainError, plural
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
    """One row of figures per run folder under `root`, newest first; a damaged run says what is wrong."""
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
            status = f"unfinished ({plural(state['epochs_done'], 'epoch')})"
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
            "problems": problems,
        })
    return rows


def leaderboards(root="runs") -> tuple[list[tuple[Path, dict]], list[str]]:
    """(sweep folder, its leaderboard.json checked) for `root` and each folder in it, and what is
    wrong with those that are damaged (their boards are left out)."""
    root, boards, problems = Path(root), [], []
    for board_file in sorted([root / "leaderboard.json", *root.glob("*/leaderboard.json")]):
        board = _read(board_file, schema.LEADERBOARD, problems)
        if board:
            boards.append((board_file.parent, board))
    return boards, problems


def _test_figure(metrics: dict, evaluation: dict) -> dict:
    """The test accuracy, on how many images, and from where: `cnntrain evaluate` of the test split
    (eval.json) if there is one, else the fit's own figure (metrics.json), which a data.limit_test
    run takes on part of the test set."""
    if evaluation.get("split", "test") == "test" and evaluation.get("accuracy") is not None \
            and measures_the_model(evaluation, metrics):
        return {"test_accuracy": evaluation["accuracy"], "test_images": evaluation.get("samples"),
                "test_from": "evaluate"}
    accuracy = (metrics.get("test") or {}).get("accuracy")
    return {"test_accuracy": accuracy, "test_images": (metrics.get("images") or {}).get("test"),
            "test_from": "fit" if accuracy is not None else None}


def measures_the_model(evaluation: dict, metrics: dict) -> bool:
    """Whether eval.json's figures are the run's model's: evaluate records the epoch of the model it
    measured, and a fit --resume since (more epochs) made another model. The one rule for runs,
    runs --compare and the card."""
    return evaluation.get("epoch") in (None, metrics.get("epochs"))
