"""The end of a fit: the final model, its test figures, metrics.json and curves.png, committed last."""
from __future__ import annotations

import time
from pathlib import Path

from cnntrain.assess import tta
from cnntrain.errors import CnntrainError
from cnntrain.feed import pipeline
from cnntrain.figures import curves
from cnntrain.model import build
from cnntrain.runs import atomic, folder, model_file, schema
from cnntrain.train.callbacks import RunState, Throughput
from cnntrain.train.distribute import shard_of, sharded
from cnntrain.train.ema import put_average
from cnntrain.train.fitrun import FitRun
from cnntrain.runs.numbers import is_validation, metric_of


def finish(run: FitRun, saver: RunState, meter: Throughput) -> Path:
    """After the last epoch (or a stop): the final model, metrics.json with the test figures, curves.png;
    the resume state goes. A NaN before any epoch was committed removes what this run wrote."""
    spec, run_dir, model, data = run.spec, run.run_dir, run.model, run.data
    classes = len(data.class_names) if build.uses_one_hot(spec) else None
    state, guard = saver.state, saver.guard
    stopped = "completed"
    if guard.where is not None:
        epoch, step = guard.where
        if not state["weights"]:
            folder.remove_run(run_dir, created=run.created)   # only what this run wrote: the folder may be the user's
            raise CnntrainError(f"the loss became NaN at epoch {epoch}, step {step}, before any epoch finished; "
                                "nothing was saved", hint="lower the learning rate, or normalize the input "
                                "(preprocess.normalize: scale)")
        model.load_weights(folder.backup_file(run_dir, state["weights"]))
        put_average(model)
        stopped = "nan"
        run.reporter.warn(f"the loss became NaN at epoch {epoch}, step {step}: training stopped; model.keras "
                          f"holds the last good weights, from epoch {state['epochs_done']}")
    elif state["epochs_done"] < spec["fit"]["epochs"]:
        stopped = "early_stopping"
    last = state["history"][-1] if state["history"] else {}
    test = None
    if data.x_test is not None:
        test = tta.test_figures(model, sharded(pipeline.eval_dataset(data.x_test, data.y_test,
                                                                     batch_size=spec["fit"]["batch_size"],
                                                                     num_classes=classes, shard=shard_of(run.plan)),
                                               run.plan),
                                spec["fit"]["tta"], metrics=build.build_metrics(spec), strategy=run.plan.strategy)
    totals = _whole_run(run_dir, state, meter, run.started, len(data.x_train))
    metrics = {
        "name": spec["name"], "epochs": state["epochs_done"], "stopped": stopped,
        "train": {k: v for k, v in last.items() if not is_validation(k) and k not in ("epoch", "seconds")},
        "validation": {metric_of(k): v for k, v in last.items() if is_validation(k)},
        "test": test,
        # How many images each split's figures are over: a limit_test run's test figure is not the test set's.
        "images": {"train": len(data.x_train), "validation": 0 if data.x_val is None else len(data.x_val),
                   "test": 0 if data.x_test is None else len(data.x_test)},
        "best": {"monitor": state["monitor"], "value": state["best"], "epoch": state["best_epoch"]},
        "parameters": int(model.count_params()),
        **totals,
    }
    model_file.save_model(model, run_dir / "model.keras", {**run.metadata, "epoch": state["epochs_done"]})
    if not (run_dir / "best.keras").exists():
        atomic.copy_file(run_dir / "model.keras", run_dir / "best.keras")
    atomic.write_json(run_dir / "metrics.json", metrics)
    curves.curves_png(state["history"], run_dir / "curves.png", title=spec["name"])
    folder.remove_backup(run_dir)
    run.reporter.summary(metrics, run_dir)
    return run_dir


def _whole_run(run_dir: Path, state: dict, meter, started: float, images: int) -> dict:
    """The whole run's wall time and training speed, across every fit and fit --resume process: what
    the run's last metrics.json counted (a finished run trained longer), the epochs committed since by
    processes that were stopped (history.csv's seconds), and this process. Images/s is over the epochs
    whose training time (validation excluded) is known, each process's first (tracing) epoch left out."""
    earlier = {}
    if (run_dir / "metrics.json").is_file():
        try:
            earlier = schema.read(run_dir / "metrics.json", schema.METRICS)
        except CnntrainError:
            earlier = {}   # damaged: this process's figures are all that can be counted
    counted = earlier.get("epochs", 0)
    before = state["history"][:len(state["history"]) - len(meter.seconds)]   # committed by earlier processes
    wall = (earlier.get("wall_time_s", 0.0) + sum(r.get("seconds", 0.0) for r in before if r["epoch"] > counted)
            + time.perf_counter() - started)
    steady = meter.seconds[1:] if len(meter.seconds) > 1 else meter.seconds
    seconds = round(sum(steady) + earlier.get("train_seconds", 0.0), 6)
    epochs = len(steady) + earlier.get("train_epochs_timed", 0)
    return {"wall_time_s": round(wall, 2),
            "train_images_per_s": round(images * epochs / seconds, 1) if seconds > 0 else None,
            "train_seconds": seconds, "train_epochs_timed": epochs}
