"""`cnntrain fit`: compile, train with our callbacks, keep the run folder resumable at every epoch."""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnntrain import __version__, builder, devices, distribute, inputs, pipeline, runs
from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError
from cnntrain.spec import Spec

STATE = "state.json"


@dataclass
class FitOptions:
    data_dir: str | None = None
    offline: bool = False
    out: str | None = None          # the run folder itself (default: output.dir/name/timestamp)
    resume: str | None = None       # a run folder to continue
    device: str = "auto"
    mixed_precision: bool = False
    jit: bool = False
    deterministic: bool = False
    strategy: str | None = None     # default: the spec's fit.strategy
    devices: tuple = ()             # for mirrored: e.g. ("gpu:0", "gpu:1")
    workers: str | None = None      # for multi-worker: "host:port,host:port" (else TF_CONFIG)
    task_index: int | None = None
    connect_timeout: float = 120.0  # seconds the workers have to find each other


def monitor_mode(monitor: str) -> str:
    return "min" if ("loss" in monitor or "error" in monitor) else "max"


# ---------------------------------------------------------------- callbacks


class NanGuard(keras.callbacks.Callback):
    """Stops at the first batch whose loss is not finite, remembering where."""

    def __init__(self):
        super().__init__()
        self.where = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class Throughput(keras.callbacks.Callback):
    """Training seconds per epoch, validation excluded, for images/s."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.val = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self.val_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.val += time.perf_counter() - self.val_start

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start - self.val)


class RunState(keras.callbacks.Callback):
    """After every epoch: history.csv, best.keras and the resume state, each written atomically.

    The resume state is a weights file named by its epoch (optimizer state included) and
    state.json pointing at it; state.json is the commit point, so a kill between the two
    writes leaves the previous epoch's complete state.
    """

    def __init__(self, run_dir: Path, state: dict, monitor: str, metadata: dict, guard: NanGuard, others: list):
        super().__init__()
        self.run_dir, self.state, self.monitor = run_dir, state, monitor
        self.mode = monitor_mode(monitor)
        self.metadata, self.guard, self.others = metadata, guard, others
        self.backup = run_dir / runs.BACKUP
        self.epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.where is not None:
            return  # the weights are not finite: keep the last good state
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row["learning_rate"] = _current_lr(self.model)
        row["seconds"] = round(time.perf_counter() - self.epoch_start, 3)
        self.state["history"] = [r for r in self.state["history"] if r["epoch"] < epoch + 1] + [row]
        value = row.get(self.monitor)
        best = self.state["best"]
        if value is not None and math.isfinite(value) and (
                best is None or (value > best if self.mode == "max" else value < best)):
            self.state.update(best=value, best_epoch=epoch + 1)
            runs.save_model(self.model, self.run_dir / "best.keras", {**self.metadata, "epoch": epoch + 1})
        write_history(self.run_dir / "history.csv", self.state["history"])
        self.save(epoch + 1)

    def save(self, epochs_done: int):
        self.backup.mkdir(exist_ok=True)
        weights = f"epoch-{epochs_done:04d}.weights.h5"
        try:
            with runs.atomic_path(self.backup / weights, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
        except OSError as exc:
            raise runs.write_error(self.backup / weights, exc) from None
        old = self.state.get("weights")
        self.state.update(epochs_done=epochs_done, weights=weights, callbacks=_callback_state(self.others))
        runs.write_json(self.backup / STATE, self.state)
        if old and old != weights:
            (self.backup / old).unlink(missing_ok=True)


_CALLBACK_FIELDS = ("wait", "best", "cooldown_counter", "best_epoch", "stopped_epoch")


def _callback_state(callbacks) -> list:
    """The counters that EarlyStopping and ReduceLROnPlateau keep, so a resume continues them."""
    saved = []
    for cb in callbacks:
        fields = {}
        for name in _CALLBACK_FIELDS:
            value = getattr(cb, name, None)
            if isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value)):
                fields[name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
        saved.append(fields)
    return saved


def _restore_callbacks(callbacks, saved):
    for cb, fields in zip(callbacks, saved or []):
        for name, value in fields.items():
            setattr(cb, name, value)
        if fields and hasattr(cb, "on_train_begin"):
            # EarlyStopping/ReduceLROnPlateau reset their counters in on_train_begin.
            original = cb.on_train_begin

            def on_train_begin(logs=None, _cb=cb, _fields=fields, _orig=original):
                _orig(logs)
                for k, v in _fields.items():
                    setattr(_cb, k, v)
            cb.on_train_begin = on_train_begin


def _current_lr(model) -> float:
    opt = model.optimizer
    lr = opt.learning_rate
    try:
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)
    except (TypeError, ValueError):
        return float(opt._get_current_learning_rate())  # a schedule


def write_history(path, rows):
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join(_csv_number(row.get(k)) for k in keys))
    runs.write_text(path, "\n".join(lines) + "\n")


def _csv_number(value):
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


# ---------------------------------------------------------------- fit


def environment(spec: Spec, device_info: dict, options: FitOptions) -> dict:
    return {
        "cnntrain": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "numpy": np.__version__, "platform": platform.platform(),
        **device_info, "seed": spec["seed"], "deterministic": options.deterministic, "jit": options.jit,
        "command": " ".join(sys.argv),
    }


def fit(spec: Spec, options: FitOptions, reporter) -> Path:
    """Train `spec`; return the run folder. `reporter` is a ui.Reporter."""
    if _locks_early(spec, options):
        # Lock before the slow steps: a second fit on this folder is refused at once.
        with runs.RunLock(options.resume):
            return _fit(spec, options, reporter)
    return _fit(spec, options, reporter)


def _locks_early(spec, options) -> bool:
    # Workers of one multi-worker fit share the folder; each locks its own part later.
    return bool(options.resume) and (options.strategy or spec["fit"]["strategy"]) != "multi-worker"


def _fit(spec: Spec, options: FitOptions, reporter) -> Path:
    if options.out and not options.resume and runs.is_run(options.out):
        raise CnntrainError("this folder already holds a run", file=str(options.out),
                            hint=f"resume it with 'cnntrain fit --resume {options.out}', or choose a new --out")
    kind = options.strategy or spec["fit"]["strategy"]
    if options.workers:
        os.environ["TF_CONFIG"] = json.dumps(distribute.tf_config_from_workers(options.workers, options.task_index))
    if kind == "multi-worker" and not (options.out or options.resume):
        raise CnntrainError("multi-worker training needs --out: the same run folder path on every worker",
                            hint="e.g. --out runs/cifar10/multi")
    cpu_devices = sum(1 for d in options.devices if "cpu" in d.lower())
    device_info = devices.setup(options.device, mixed_precision=options.mixed_precision, cpu_devices=cpu_devices)
    plan = distribute.make(kind, device_info, devices=list(options.devices) or None,
                           connect_timeout=options.connect_timeout)
    if not plan.is_chief:
        reporter = type(reporter)("quiet" if reporter.mode != "json" else "json")
        reporter.summary = lambda *a, **k: None
    reporter.note(devices.describe(device_info))
    keras.utils.set_random_seed(spec["seed"])
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()

    started = time.perf_counter()
    data = inputs.prepare(spec, data_dir=options.data_dir, offline=options.offline)
    reporter.note(f"data: {data.source}: {len(data.x_train)} train, "
                  f"{0 if data.x_val is None else len(data.x_val)} validation, "
                  f"{0 if data.x_test is None else len(data.x_test)} test images of {list(data.shape)}, "
                  f"{len(data.class_names)} classes")
    batch = spec["fit"]["batch_size"]
    if batch % plan.replicas:
        raise spec.error(("fit", "batch_size"), f"fit.batch_size {batch} does not divide among {plan.replicas} "
                         "replicas", f"use a multiple of {plan.replicas}, e.g. {plan.replicas * max(1, batch // plan.replicas)}")
    if plan.replicas > 1 or plan.num_workers > 1:
        reporter.note(plan.describe(batch))
    steps = math.ceil(len(data.x_train) / batch)
    one_hot = builder.uses_one_hot(spec)
    with plan.strategy.scope():
        norm = pipeline.normalization_layer(spec["preprocess"]["normalize"], data.x_train)
        model = builder.build_model(spec, shape=data.shape, front=[norm] if norm is not None else [])
        builder.check_output(spec, model, len(data.class_names))
        model.compile(optimizer=builder.build_optimizer(spec, steps), loss=builder.build_loss(spec),
                      metrics=builder.build_metrics(spec), jit_compile=options.jit)
        model.optimizer.build(model.trainable_variables)
    plan.joined()
    user_callbacks = builder.build_callbacks(spec)
    augment = builder.build_layers(spec, ("augment",))
    classes = len(data.class_names) if one_hot else None
    train_ds = _sharded(pipeline.train_dataset(data.x_train, data.y_train, batch_size=batch, augment=augment,
                                               seed=spec["seed"], num_classes=classes), plan)
    val_ds = None if data.x_val is None else _sharded(
        pipeline.eval_dataset(data.x_val, data.y_val, batch_size=batch, num_classes=classes), plan)
    monitor = spec["fit"]["monitor"]
    if val_ds is None and monitor.startswith("val_"):
        monitor = monitor[4:]
        reporter.note(f"no validation data: best.keras follows '{monitor}'")

    from cnntrain.images import background_of
    metadata = {
        "class_names": data.class_names, "input_shape": list(data.shape),
        "normalize": spec["preprocess"]["normalize"], "background": background_of(data.x_train),
        "dataset": spec["data"]["dataset"], "data_path": spec["data"]["path"],
        "image_size": spec["data"]["image_size"], "color_mode": spec["data"]["color_mode"],
        "one_hot": one_hot, "name": spec["name"], "cnntrain_version": __version__,
    }

    if not plan.is_chief:
        # Only the chief writes the run folder; the others keep their own resume state
        # beside it and remove it when the fit is done (TensorFlow's multi-worker guide).
        run_dir = Path(options.resume or options.out) / f".worker-{plan.worker_index}"
        run_dir.mkdir(parents=True, exist_ok=True)
    elif options.resume:
        run_dir = Path(options.resume)
    elif options.out:
        run_dir = Path(options.out)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnntrainError(f"cannot create the run folder: {exc.strerror}", file=str(run_dir)) from None
    else:
        run_dir = runs.new_run_dir(spec["output"]["dir"], spec["name"])

    with contextlib.nullcontext() if _locks_early(spec, options) else runs.RunLock(run_dir):
        if options.out and not options.resume and plan.is_chief and runs.is_run(run_dir):
            # Checked again under the lock: a fit with the same --out may have finished meanwhile.
            raise CnntrainError("this folder already holds a run", file=str(run_dir),
                                hint=f"resume it with 'cnntrain fit --resume {run_dir}', or choose a new --out")
        state = {"epochs_done": 0, "best": None, "best_epoch": None, "history": [], "weights": None,
                 "monitor": monitor, "callbacks": []}
        if options.resume and (run_dir / runs.BACKUP / STATE).exists():
            state = runs.read_json(run_dir / runs.BACKUP / STATE)
            try:
                model.load_weights(run_dir / runs.BACKUP / state["weights"]) if state["weights"] else None
            except Exception as exc:
                raise CnntrainError(f"cannot load the resume state: {exc}", file=str(run_dir / runs.BACKUP),
                                    hint="the backup does not match this spec's model; start a new fit") from None
            _restore_callbacks(user_callbacks, state.get("callbacks"))
            reporter.note(f"resuming {run_dir} after epoch {state['epochs_done']} of {spec['fit']['epochs']}")
        elif not options.resume:
            runs.write_text(run_dir / "spec.yaml", spec.to_yaml())
            runs.write_json(run_dir / "env.json", environment(spec, device_info, options))
            (run_dir / runs.BACKUP).mkdir(exist_ok=True)
            runs.write_json(run_dir / runs.BACKUP / STATE, state)
        reporter.note(f"run folder: {run_dir}")
        guard, meter = NanGuard(), Throughput()
        saver = RunState(run_dir, state, monitor, metadata, guard, user_callbacks)
        callbacks = [guard, meter, saver, *user_callbacks, reporter.callback(steps, spec["fit"]["epochs"])]
        if spec["fit"]["tensorboard"]:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), profile_batch=0))
        initial = state["epochs_done"]
        _prebuild(model, train_ds, plan)
        if initial < spec["fit"]["epochs"]:
            try:
                model.fit(train_ds, validation_data=val_ds, epochs=spec["fit"]["epochs"], initial_epoch=initial,
                          callbacks=callbacks, verbose=0, shuffle=False)
            except KeyboardInterrupt:
                for callback in callbacks:
                    getattr(callback, "close", lambda: None)()  # leave the terminal clean
                done = saver.state["epochs_done"]
                raise CnntrainError(f"interrupted; {done} epoch(s) are saved in {run_dir}",
                                    hint=f"resume with: cnntrain fit --resume {run_dir}", exit_code=130) from None
        result = _finish(spec, run_dir, model, data, saver, guard, meter, metadata, started, classes, reporter, plan)
    if not plan.is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        return Path(options.resume or options.out)
    return result


def _prebuild(model, dataset, plan):
    if plan.num_workers > 1:
        from cnntrain.keras_fixes import apply_multi_worker_fixes, prebuild

        apply_multi_worker_fixes()
        prebuild(model, dataset, plan.strategy)


def _sharded(dataset, plan):
    """Every worker sees different examples: shard the batches by data, not by file."""
    if plan.num_workers > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def _finish(spec, run_dir, model, data, saver, guard, meter, metadata, started, classes, reporter, plan) -> Path:
    state = saver.state
    stopped = "completed"
    if guard.where is not None:
        epoch, step = guard.where
        if not state["weights"]:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise CnntrainError(f"the loss became NaN at epoch {epoch}, step {step}, before any epoch finished; "
                                "nothing was saved", hint="lower the learning rate, or normalize the input "
                                "(preprocess.normalize: scale)")
        model.load_weights(run_dir / runs.BACKUP / state["weights"])
        stopped = "nan"
        reporter.warn(f"the loss became NaN at epoch {epoch}, step {step}: training stopped; model.keras holds "
                      f"the last good weights, from epoch {state['epochs_done']}")
    elif state["epochs_done"] < spec["fit"]["epochs"]:
        stopped = "early_stopping"
    last = state["history"][-1] if state["history"] else {}
    test = None
    if data.x_test is not None:
        figures = model.evaluate(_sharded(pipeline.eval_dataset(data.x_test, data.y_test,
                                                                batch_size=spec["fit"]["batch_size"],
                                                                num_classes=classes), plan),
                                 verbose=0, return_dict=True)
        test = {k: float(v) for k, v in figures.items()}
    seconds = meter.seconds
    steady = seconds[1:] if len(seconds) > 1 else seconds
    metrics = {
        "name": spec["name"], "epochs": state["epochs_done"], "stopped": stopped,
        "train": {k: v for k, v in last.items() if not k.startswith("val_") and k not in ("epoch", "seconds")},
        "validation": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        "test": test,
        "best": {"monitor": state["monitor"], "value": state["best"], "epoch": state["best_epoch"]},
        "parameters": int(model.count_params()),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "train_images_per_s": round(len(data.x_train) / (sum(steady) / len(steady)), 1) if steady else None,
    }
    runs.save_model(model, run_dir / "model.keras", {**metadata, "epoch": state["epochs_done"]})
    if not (run_dir / "best.keras").exists():
        runs.copy_file(run_dir / "model.keras", run_dir / "best.keras")
    runs.write_json(run_dir / "metrics.json", metrics)
    from cnntrain.curves import curves_png
    curves_png(state["history"], run_dir / "curves.png", title=spec["name"])
    runs.remove_backup(run_dir)
    reporter.summary(metrics, run_dir)
    return run_dir
