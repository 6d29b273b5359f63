"""`cnntrain fit`: compile, train with our callbacks, keep the run folder resumable at every epoch."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnntrain import __version__
from cnntrain.assess import tta
from cnntrain.data import image_files, lookup, splits
from cnntrain.feed import pipeline
from cnntrain.figures import curves
from cnntrain.model import build, normalization, policy
from cnntrain.runs import atomic, folder, model_file, schema
from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError, plural
from cnntrain.spec import Spec
from cnntrain.train import devices, distribute, preflight, start
from cnntrain.train.callbacks import STATE, EpochSeeds, NanGuard, RunState, Throughput, restore_callbacks



@dataclass
class FitOptions:
    """How to train, beside the spec: the command-line options of `cnntrain fit`."""
    data_dir: str | None = None
    offline: bool = False
    out: str | None = None          # the run folder itself (default: output.dir/name/timestamp)
    resume: str | None = None       # a run folder to continue
    extend: bool = False            # the resumed run is finished: train it longer, to fit.epochs
    init_from: str | None = None    # a run or .keras file whose weights a new run starts from
    device: str = "auto"
    mixed_precision: bool = False
    jit: bool = False
    deterministic: bool = False
    strategy: str | None = None     # default: the spec's fit.strategy
    devices: tuple = ()             # for mirrored: e.g. ("gpu:0", "gpu:1")
    workers: str | None = None      # for multi-worker: "host:port,host:port" (else TF_CONFIG)
    task_index: int | None = None
    connect_timeout: float = 120.0  # seconds the workers have to find each other
    callbacks: tuple = ()           # more Keras callbacks, after the epoch's commit (a sweep's pruning)


# ---------------------------------------------------------------- fit


def environment(spec: Spec, device_info: dict, options: FitOptions, init_from: str | None = None) -> dict:
    """env.json: versions, device, seed and options of this fit."""
    return {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
        "cnntrain": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "numpy": np.__version__, "platform": platform.platform(),
        **device_info, "seed": spec["seed"], "deterministic": options.deterministic, "jit": options.jit,
        "command": " ".join(sys.argv), "init_from": init_from,
    }


def fit(spec: Spec, options: FitOptions, reporter) -> Path:
    """Train `spec`; return the run folder. `reporter` is a ui.Reporter."""
    if spec["fit"]["tracking"] == "mlflow":
        from cnntrain.train.tracking import with_mlflow

        return with_mlflow(_fit_locked, spec, options, reporter)
    return _fit_locked(spec, options, reporter)


def _fit_locked(spec: Spec, options: FitOptions, reporter) -> Path:
    if _locks_early(spec, options):
        folder.check_ours(options.resume)
        # Lock before the slow steps: a second fit on this folder is refused at once.
        with folder.RunLock(options.resume):
            return _fit(spec, options, reporter)
    return _fit(spec, options, reporter)


def _locks_early(spec, options) -> bool:
    # Workers of one multi-worker fit share the folder; each locks its own part later.
    return bool(options.resume) and (options.strategy or spec["fit"]["strategy"]) != "multi-worker"


def _fit(spec: Spec, options: FitOptions, reporter) -> Path:
    if options.out and not options.resume:
        folder.check_out(options.out)
    if spec["fit"]["tensorboard"]:
        _check_tensorboard(spec)
    kind = options.strategy or spec["fit"]["strategy"]
    if options.workers:
        os.environ["TF_CONFIG"] = json.dumps(distribute.tf_config_from_workers(options.workers, options.task_index))
    if kind == "multi-worker" and not (options.out or options.resume):
        raise CnntrainError("multi-worker training needs --out: the same run folder path on every worker",
                            hint="e.g. --out runs/cifar10/multi")
    if kind == "multi-worker" and options.extend:
        # The workers' own resume state is gone with the finished run; only the chief's model.keras is left.
        raise CnntrainError("a finished run cannot be trained longer with multi-worker training", file=options.resume,
                            hint="train it longer on one machine, or start a new run from it with --init-from")
    cpu_devices = sum(1 for d in options.devices if "cpu" in d.lower())
    device_info = devices.setup(options.device, mixed_precision=options.mixed_precision, cpu_devices=cpu_devices)
    # What the spec may do is settled before any slow step and before any folder is made; after the
    # device setup, which must come before anything that could start TensorFlow's runtime.
    policy.check_output_dir(spec)
    build.build_callbacks(spec)
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
    data = splits.prepare(spec, data_dir=options.data_dir, offline=options.offline, path=_recorded_data(options))
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
    # What Keras would reject inside model.fit is rejected here, before the run folder exists.
    logged = preflight.preflight(spec, shape=data.shape, num_classes=len(data.class_names), steps_per_epoch=steps)
    preflight.check_monitors(spec, logged, validation=data.x_val is not None)
    keras.utils.set_random_seed(spec["seed"])   # the preflight drew from the random streams
    one_hot = build.uses_one_hot(spec)
    with plan.strategy.scope():
        norm = normalization.normalization_layer(spec["preprocess"]["normalize"], data.x_train)
        model = build.build_model(spec, shape=data.shape, front=[norm] if norm is not None else [])
        build.check_output(spec, model, len(data.class_names))
        model.compile(optimizer=build.build_optimizer(spec, steps), loss=build.build_loss(spec),
                      metrics=build.build_metrics(spec), jit_compile=options.jit)
        model.optimizer.build(model.trainable_variables)
    plan.joined()
    initial_weights = None
    if options.init_from:
        initial_weights = start.init_from(model, options.init_from, spec["output"]["dir"], [norm] if norm else [])
        reporter.note(f"initial weights: {initial_weights}")
    augment = build.build_layers(spec, ("augment",))
    classes = len(data.class_names) if one_hot else None
    val_ds = None if data.x_val is None else _sharded(
        pipeline.eval_dataset(data.x_val, data.y_val, batch_size=batch, num_classes=classes), plan)
    monitor = spec["fit"]["monitor"]
    if val_ds is None and monitor.startswith("val_"):
        monitor = monitor[4:]
        reporter.note(f"no validation data: best.keras follows '{monitor}'")

    metadata = {
        "class_names": data.class_names, "input_shape": list(data.shape),
        "normalize": spec["preprocess"]["normalize"], "background": image_files.background_of(data.x_train),
        "dataset": spec["data"]["dataset"], "data_path": spec["data"]["path"],
        "image_size": spec["data"]["image_size"], "color_mode": spec["data"]["color_mode"],
        "one_hot": one_hot, "name": spec["name"], "cnntrain_version": __version__,
        "data_source": os.path.abspath(data.source),   # where it was found: evaluate and resume look there
        "tta": spec["fit"]["tta"],   # evaluate and predict default to it, so evaluate reproduces the test figure
    }

    if not plan.is_chief:
        # Only the chief writes the run folder; the others keep their own resume state
        # beside it and remove it when the fit is done (TensorFlow's multi-worker guide).
        run_dir = Path(options.resume or options.out) / f".worker-{plan.worker_index}"
        created = folder.claim(run_dir, policy.written_names(spec))
    elif options.resume:
        run_dir, created = Path(options.resume), False
        folder.check_ours(run_dir)
    elif options.out:
        run_dir = Path(options.out)
        created = folder.claim(run_dir, policy.written_names(spec))
    else:
        run_dir, created = folder.new_run_dir(spec["output"]["dir"], spec["name"]), True
        folder.mark(run_dir, policy.written_names(spec))

    with contextlib.nullcontext() if _locks_early(spec, options) else folder.RunLock(run_dir):
        if options.out and not options.resume and plan.is_chief and folder.is_run(run_dir):
            # Checked again under the lock: a fit with the same --out may have finished meanwhile.
            raise CnntrainError("this folder already holds a run", file=str(run_dir),
                                hint=f"resume it with 'cnntrain fit --resume {run_dir}', or choose a new --out")
        user_callbacks = build.build_callbacks(spec, run_dir, logged)
        state = {"epochs_done": 0, "best": None, "best_epoch": None, "history": [], "weights": None,
                 "monitor": monitor, "callbacks": []}
        extending = False  # a finished run trained longer; under the lock, its backup/ is still absent
        if options.resume and (run_dir / folder.BACKUP / STATE).exists():
            path = run_dir / folder.BACKUP / STATE
            state = schema.check_resume(path, schema.read(path, schema.STATE, schema.RESUME_HINT),
                                        epochs=spec["fit"]["epochs"], monitor=monitor, callbacks=len(user_callbacks))
            weights = folder.backup_file(run_dir, state["weights"]) if state["weights"] else None
            try:
                model.load_weights(weights) if weights else None
            except Exception as exc:
                raise CnntrainError(f"cannot load the resume state: {exc}", file=str(run_dir / folder.BACKUP),
                                    hint="the backup does not match this spec's model; start a new fit") from None
            restore_callbacks(user_callbacks, state.get("callbacks"))
            if (run_dir / "spec.yaml").read_text(encoding="utf-8") != spec.to_yaml():
                atomic.write_text(run_dir / "spec.yaml", spec.to_yaml())  # a new --epochs: the only change allowed
            reporter.note(f"resuming {run_dir} after epoch {state['epochs_done']} of {spec['fit']['epochs']}")
        elif options.extend:
            state, extending = start.finished_state(run_dir, monitor), True
        elif not options.resume:
            atomic.write_text(run_dir / "spec.yaml", spec.to_yaml())
            atomic.write_json(run_dir / "env.json", {**environment(spec, device_info, options, initial_weights),
                                                     "data_source": metadata["data_source"]})
            (run_dir / folder.BACKUP).mkdir(exist_ok=True)
            atomic.write_json(run_dir / folder.BACKUP / STATE, state)
        reporter.note(f"run folder: {run_dir}")
        guard, meter = NanGuard(), Throughput()
        saver = RunState(run_dir, state, monitor, build.monitor_mode(monitor, logged), metadata, guard, user_callbacks)
        if extending:
            done = start.continue_finished(model, run_dir, saver, spec)
            last = spec["fit"]["epochs"]
            more = f"epoch {last}" if last == done + 1 else f"epochs {done + 1} to {last}"
            reporter.note(f"training {run_dir} longer: {more}")
        callbacks = [EpochSeeds(spec["seed"]), guard, meter, saver, *options.callbacks, *user_callbacks,
                     reporter.callback(steps, spec["fit"]["epochs"])]
        if spec["fit"]["tensorboard"]:
            from cnntrain.train.tracking import HParams

            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), profile_batch=0))
            callbacks.append(HParams(spec, run_dir / "tensorboard"))
        initial = state["epochs_done"]
        # One stream of batches from the first epoch still to train, `steps` of them an epoch.
        train_ds = _sharded(pipeline.train_dataset(data.x_train, data.y_train, batch_size=batch, augment=augment,
                                                   seed=spec["seed"], num_classes=classes, first_epoch=initial,
                                                   epochs=None), plan)
        with _multi_worker_fixes(model, train_ds, plan):
            if initial < spec["fit"]["epochs"]:
                try:
                    model.fit(train_ds, validation_data=val_ds, epochs=spec["fit"]["epochs"], initial_epoch=initial,
                              steps_per_epoch=steps,
                              callbacks=callbacks, verbose=0, shuffle=False)
                except KeyboardInterrupt:
                    for callback in callbacks:
                        getattr(callback, "close", lambda: None)()  # leave the terminal clean
                    done = saver.state["epochs_done"]
                    raise CnntrainError(f"interrupted; {plural(done, 'epoch')} saved in {run_dir}",
                                        hint=f"resume with: cnntrain fit --resume {run_dir}", exit_code=130) from None
            result = _finish(spec, run_dir, created, model, data, saver, guard, meter, metadata, started, classes,
                             reporter, plan)
    if not plan.is_chief:
        folder.remove_run(run_dir, created=True)
        return Path(options.resume or options.out)
    return result


def _recorded_data(options) -> str | None:
    env = Path(options.resume or "") / "env.json"
    return lookup.recorded_source(atomic.read_json(env), options.data_dir) if options.resume and env.exists() else None


def _check_tensorboard(spec):
    # Keras' TensorBoard callback only finds out at the first summary, mid-fit (TBNotInstalledError).
    try:
        from tensorboard.summary.v2 import scalar  # noqa: F401
    except ImportError as exc:
        raise spec.error(("fit", "tensorboard"), f"fit.tensorboard needs the tensorboard package, which "
                         f"cannot be imported ({exc})", "it is one of cnntrain's dependencies: pip install "
                         "tensorboard (or reinstall cnntrain), or set fit.tensorboard: false") from None


def _multi_worker_fixes(model, dataset, plan):
    if plan.num_workers <= 1:
        return contextlib.nullcontext()
    from cnntrain.train.keras_fixes import multi_worker_fixes

    return multi_worker_fixes(model, dataset, plan.strategy)


def _sharded(dataset, plan):
    """Every worker sees different examples: shard the batches by data, not by file."""
    if plan.num_workers > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


def _finish(spec, run_dir, created, model, data, saver, guard, meter, metadata, started, classes, reporter, plan) -> Path:
    state = saver.state
    stopped = "completed"
    if guard.where is not None:
        epoch, step = guard.where
        if not state["weights"]:
            folder.remove_run(run_dir, created=created)   # only what this run wrote: the folder may be the user's
            raise CnntrainError(f"the loss became NaN at epoch {epoch}, step {step}, before any epoch finished; "
                                "nothing was saved", hint="lower the learning rate, or normalize the input "
                                "(preprocess.normalize: scale)")
        model.load_weights(folder.backup_file(run_dir, state["weights"]))
        stopped = "nan"
        reporter.warn(f"the loss became NaN at epoch {epoch}, step {step}: training stopped; model.keras holds "
                      f"the last good weights, from epoch {state['epochs_done']}")
    elif state["epochs_done"] < spec["fit"]["epochs"]:
        stopped = "early_stopping"
    last = state["history"][-1] if state["history"] else {}
    test = None
    if data.x_test is not None:
        test = tta.test_figures(model, _sharded(pipeline.eval_dataset(data.x_test, data.y_test,
                                                                      batch_size=spec["fit"]["batch_size"],
                                                                      num_classes=classes), plan),
                                spec["fit"]["tta"], metrics=build.build_metrics(spec), strategy=plan.strategy)
    seconds = meter.seconds
    steady = seconds[1:] if len(seconds) > 1 else seconds
    metrics = {
        "name": spec["name"], "epochs": state["epochs_done"], "stopped": stopped,
        "train": {k: v for k, v in last.items() if not k.startswith("val_") and k not in ("epoch", "seconds")},
        "validation": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        "test": test,
        # How many images each split's figures are over: a limit_test run's test figure is not the test set's.
        "images": {"train": len(data.x_train), "validation": 0 if data.x_val is None else len(data.x_val),
                   "test": 0 if data.x_test is None else len(data.x_test)},
        "best": {"monitor": state["monitor"], "value": state["best"], "epoch": state["best_epoch"]},
        "parameters": int(model.count_params()),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "train_images_per_s": round(len(data.x_train) / (sum(steady) / len(steady)), 1) if steady else None,
    }
    model_file.save_model(model, run_dir / "model.keras", {**metadata, "epoch": state["epochs_done"]})
    if not (run_dir / "best.keras").exists():
        atomic.copy_file(run_dir / "model.keras", run_dir / "best.keras")
    atomic.write_json(run_dir / "metrics.json", metrics)
    curves.curves_png(state["history"], run_dir / "curves.png", title=spec["name"])
    folder.remove_backup(run_dir)
    reporter.summary(metrics, run_dir)
    return run_dir
