"""`cnntrain runs --compare`: how runs' specs differ, their key figures side by side, one overlay PNG."""
from __future__ import annotations

from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.figures.overlay import overlay_png
from cnntrain.runs.contents import RunContents, flatten, read_run
from cnntrain.runs.folder import BACKUP, resolve_run
from cnntrain.runs.listing import measures_the_model

MISSING = "(absent)"   # a path one spec has and another lacks


def labels_of(paths: list[Path]) -> list[str]:
    """The runs' folder names, or their last two parts where names repeat (runs/a/<time>, runs/b/<time>)."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return ["/".join(p.parts[-2:]) for p in paths]


def spec_differences(runs: list[RunContents]) -> dict:
    """{dotted path: [value per run]} for every path whose values are not all the same."""
    flat = [flatten(r.spec) for r in runs]
    paths = []
    for f in flat:
        paths += [p for p in f if p not in paths]
    return {p: [f.get(p, MISSING) for f in flat] for p in paths
            if any(f.get(p, MISSING) != flat[0].get(p, MISSING) for f in flat)}


def key_figures(run: RunContents) -> dict:
    m, ev = run.metrics, run.evaluation
    best = m.get("best") or {}
    finished = bool(m) and not (run.path / BACKUP).exists()
    return {
        "status": m.get("stopped", "completed") if finished else "unfinished",
        "epochs": m.get("epochs", len(run.history) or None),
        "best": best.get("value"), "best_epoch": best.get("epoch"), "monitor": best.get("monitor"),
        "val_accuracy": (m.get("validation") or {}).get("accuracy"),
        "val_loss": (m.get("validation") or {}).get("loss"),
        "test_accuracy": (m.get("test") or {}).get("accuracy"),
        "test_loss": (m.get("test") or {}).get("loss"),
        "test_tta": (m.get("test") or {}).get("tta", "none") if m.get("test") else None,
        "eval_accuracy": ev.get("accuracy"), "eval_tta": ev.get("tta", "none") if ev else None,
        # An evaluation of an earlier epoch's model (trained longer since) is shown with its epoch.
        "eval_epoch": None if measures_the_model(ev, m) else ev.get("epoch"),
        "macro_f1": ev.get("macro_f1"),
        "parameters": m.get("parameters"), "wall_time_s": m.get("wall_time_s"),
        "images_per_s": m.get("train_images_per_s"),
    }


def compare_runs(args: list[str], *, runs_root="runs", out=None) -> dict:
    """Reads each run (a folder, or a name as `cnntrain runs` shows it); writes the overlay PNG to `out`."""
    if len(args) < 2:
        raise CnntrainError(f"--compare needs at least two runs, received {len(args)}",
                            hint="e.g. cnntrain runs --compare runs/mnist/20261125-103000 runs/mnist/20261126-090000")
    paths = [resolve_run(a, runs_root) for a in args]
    runs = [read_run(p) for p in paths]
    labels = labels_of(paths)
    if len(set(labels)) != len(labels):
        raise CnntrainError("a run is given twice", hint="give each run folder once")
    result = {"runs": [str(p) for p in paths], "labels": labels, "differences": spec_differences(runs),
              "figures": [key_figures(r) for r in runs], "overlay": None}
    if out is not None:
        series = [(label, r.history) for label, r in zip(labels, runs) if r.history]
        if series:
            result["overlay"] = str(overlay_png(series, out, title="runs compared: " + ", ".join(labels)))
    return result
