"""`cnntrain fit`: compile, train with our callbacks, keep the run folder resumable at every epoch."""
from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from cnntrain import __version__
from cnntrain.data import balance, image_files, lookup, splits
from cnntrain.feed import pipeline
from cnntrain.model import backbones, build, dirac, gradient_scale, normalization, policy, whitening
from cnntrain.runs import atomic, folder
from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError, plural
from cnntrain.spec import Spec
from cnntrain.train import devices, distribute, finetune, preflight, start
from cnntrain.train.finish import finish
from cnntrain.train.fitrun import FitOptions, FitRun
from cnntrain.train.ema import EmaWeights
from cnntrain.train.callbacks import EpochSeeds, NanGuard, RunState, Throughput, restore_counters
from cnntrain.runs.numbers import is_validation, metric_of



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
    """Train `spec`; return the run folder. `reporter` is a views Reporter."""
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
    # The recipe. Each step refuses what it can before the next, slower one; no run folder exists
    # until the data, the model and one real training step have all been checked.
    kind, cluster = _refuse_early(spec, options)
    device_info, plan, reporter = _setup(spec, options, kind, cluster, reporter)
    started = time.perf_counter()
    data = _load_data(spec, options, reporter)
    steps, logged = _check_training(spec, data, plan, reporter)
    model, front = _build_model(spec, data, steps, plan, options, reporter)
    for warning in backbones.unsettled_statistics(spec, model, steps * spec["fit"]["epochs"]):
        reporter.warn(warning)
    initial_weights = start.init_from(model, options.init_from, options.runs_root or spec["output"]["dir"], front) \
        if options.init_from else None
    if initial_weights:
        reporter.note(f"initial weights: {initial_weights}")
    monitor = _monitor(spec, data, reporter)
    metadata = _metadata(spec, data)
    run_dir, created = _claim_run_dir(spec, options, plan)
    run = FitRun(spec=spec, options=options, reporter=reporter, plan=plan, data=data, model=model, steps=steps,
                 monitor=monitor, mode=build.monitor_mode(monitor, logged), metadata=metadata, started=started,
                 run_dir=run_dir, created=created)
    with contextlib.nullcontext() if _locks_early(spec, options) else folder.RunLock(run_dir):
        if options.out and not options.resume and plan.is_chief and folder.is_run(run_dir):
            # Checked again under the lock: a fit with the same --out may have finished meanwhile.
            raise CnntrainError("this folder already holds a run", file=str(run_dir),
                                hint=f"resume it with 'cnntrain fit --resume {run_dir}', or choose a new --out")
        user_callbacks = build.build_callbacks(spec, run_dir, logged)
        state, extending = start.begin_state(run, user_callbacks,
                                             {**environment(spec, device_info, options, initial_weights),
                                              "data_source": metadata["data_source"]})
        counters = restore_counters(user_callbacks, state["callbacks"])   # before an extended run commits afresh
        reporter.note(f"run folder: {run_dir}")
        if data.skipped and plan.is_chief:
            atomic.write_text(run_dir / folder.SKIPPED, "".join(f"{name}\n" for name in data.skipped))
            reporter.warn(f"skipped {plural(len(data.skipped), 'unreadable image')} (data.on_broken: skip), "
                          f"listed in {run_dir / folder.SKIPPED}")
        guard, meter, ema = NanGuard(), Throughput(), EmaWeights()
        saver = RunState(run, state, guard=guard, others=user_callbacks, ema=ema)
        if extending:
            start.continue_finished(run, saver)
        callbacks = [ema, EpochSeeds(spec["seed"]), guard, meter, *finetune.callbacks(spec), saver, *options.callbacks,
                     *user_callbacks, *counters,
                     reporter.callback(steps, spec["fit"]["epochs"]), *_tensorboard(spec, run_dir)]
        train_ds, val_ds = _datasets(spec, data, plan, state["epochs_done"])
        with _multi_worker_fixes(model, train_ds, plan):
            _train(run, (train_ds, lambda first: _datasets(spec, data, plan, first)[0]), val_ds, callbacks, saver)
            result = finish(run, saver, meter)
    if not plan.is_chief:
        folder.remove_run(run_dir, created=True)
        return Path(options.resume or options.out)
    return result


def _refuse_early(spec, options) -> tuple[str, dict | None]:
    """What the options and spec settle alone, before TensorFlow starts: the strategy's kind, and the
    cluster that --workers/--task-index describe (None: TF_CONFIG's, read when the strategy starts)."""
    if options.out and not options.resume:
        folder.check_out(options.out)
    if spec["fit"]["tensorboard"]:
        _check_tensorboard(spec)
    kind = options.strategy or spec["fit"]["strategy"]
    cluster = distribute.tf_config_from_workers(options.workers, options.task_index) if options.workers else None
    if kind == "multi-worker" and not (options.out or options.resume):
        raise CnntrainError("multi-worker training needs --out: the same run folder path on every worker",
                            hint="e.g. --out runs/cifar10/multi")
    if kind == "multi-worker" and options.extend:
        # The workers' own resume state is gone with the finished run; only the chief's model.keras is left.
        raise CnntrainError("a finished run cannot be trained longer with multi-worker training", file=options.resume,
                            hint="train it longer on one machine, or start a new run from it with --init-from")
    return kind, cluster


def _setup(spec, options, kind, cluster, reporter):
    """Devices, precision, threads and the distribution plan; seeds. Returns (device info, plan, reporter):
    a worker other than the chief reports nothing but warnings."""
    cpu_devices = sum(1 for d in options.devices if "cpu" in d.lower())
    precision = "mixed" if options.mixed_precision else spec["fit"]["precision"]
    device_info = devices.setup(options.device, precision=precision, cpu_devices=cpu_devices,
                                threads=options.threads)
    # What the spec may do is settled before any slow step and before any folder is made; after the
    # device setup, which must come before anything that could start TensorFlow's runtime.
    policy.check_spec(spec)
    build.build_callbacks(spec)
    plan = distribute.make(kind, device_info, devices=list(options.devices) or None,
                           connect_timeout=options.connect_timeout, cluster=cluster)
    if not plan.is_chief:
        reporter = reporter.worker()
    reporter.note(devices.describe(device_info))
    keras.utils.set_random_seed(spec["seed"])
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    return device_info, plan, reporter


def _load_data(spec, options, reporter):
    data = splits.prepare(spec, data_dir=options.data_dir, offline=options.offline, path=_recorded_data(options),
                          progress=reporter.decoding())
    reporter.note(f"data: {data.source}: {len(data.x_train):,} train, "
                  f"{0 if data.x_val is None else len(data.x_val):,} validation, "
                  f"{0 if data.x_test is None else len(data.x_test):,} test images of {list(data.shape)}, "
                  f"{len(data.class_names)} classes")
    weights = balance.shown(balance.class_weights(spec, data.class_names, data.y_train), data.class_names)
    if weights:
        reporter.note(weights)
    return data


def _check_training(spec, data, plan, reporter):
    """The batch against the replicas, then one real training step on random data (the preflight):
    what Keras would reject inside model.fit is rejected here. Returns (steps per epoch, the logged
    metrics with their directions)."""
    batch = spec["fit"]["batch_size"]
    if batch % plan.replicas:
        raise spec.error(("fit", "batch_size"), f"fit.batch_size {batch} does not divide among {plan.replicas} "
                         "replicas", f"use a multiple of {plan.replicas}, e.g. {plan.replicas * max(1, batch // plan.replicas)}")
    if plan.replicas > 1 or plan.num_workers > 1:
        reporter.note(plan.describe(batch))
    steps = math.ceil(len(data.x_train) / batch)
    logged = preflight.preflight(spec, shape=data.shape, num_classes=len(data.class_names), steps_per_epoch=steps)
    preflight.check_monitors(spec, logged, validation=data.x_val is not None)
    keras.utils.set_random_seed(spec["seed"])   # the preflight drew from the random streams
    return steps, logged


def _build_model(spec, data, steps, plan, options, reporter):
    """The compiled model with its optimizer built, and its front (the normalization, if any)."""
    with plan.strategy.scope(), backbones.offline(options.offline):
        norm = normalization.normalization_layer(spec["preprocess"]["normalize"], data.x_train)
        front = [norm] if norm is not None else []
        model = build.build_model(spec, shape=data.shape, front=front)
        build.check_output(spec, model, len(data.class_names))
        finetune.freeze(spec, model)
        optimizer = build.build_optimizer(spec, steps)
        gradient_scale.attach(spec, optimizer, model.trainable_variables)
        model.compile(optimizer=optimizer, loss=build.build_loss(spec),
                      metrics=build.build_metrics(spec), jit_compile=options.jit)
        model.optimizer.build(model.trainable_variables)
        whitened = whitening.whiten(model, data.x_train)
        dirac.settle(model)
        if finetune.saved_in_phase_two(spec, finetune.resumed_epochs(options.resume)):
            finetune.enter_phase_two(spec, model, steps, options.jit)   # before its optimizer state is loaded
    for name, images in whitened:
        reporter.note(f"PatchWhitening: the kernel of {name} from the patches of {images:,} training images")
    plan.joined()
    return model, front


def _monitor(spec, data, reporter) -> str:
    monitor = spec["fit"]["monitor"]
    if data.x_val is None and is_validation(monitor):
        monitor = metric_of(monitor)
        reporter.note(f"no validation data: best.keras follows '{monitor}'")
    return monitor


def _metadata(spec, data) -> dict:
    """What a saved model carries beside its weights (model_file.Metadata reads it back)."""
    return {
        "class_names": data.class_names, "input_shape": list(data.shape),
        "normalize": spec["preprocess"]["normalize"], "background": image_files.background_of(data.x_train),
        "dataset": spec["data"]["dataset"], "data_path": spec["data"]["path"],
        "image_size": spec["data"]["image_size"], "color_mode": spec["data"]["color_mode"],
        "resize": spec["data"]["resize"],   # predict meets a photo of another aspect ratio the same way
        "on_broken": spec["data"]["on_broken"],   # evaluate skips what fit skipped
        "labels": spec["data"]["labels"] and os.path.abspath(spec["data"]["labels"]),   # a labels CSV
        "one_hot": build.uses_one_hot(spec), "name": spec["name"], "cnntrain_version": __version__,
        "data_source": os.path.abspath(data.source),   # where it was found: evaluate and resume look there
        "tta": spec["fit"]["tta"],   # evaluate and predict default to it, so evaluate reproduces the test figure
        "label_smoothing": spec["compile"]["label_smoothing"],   # and its loss, against the same smoothed labels
        "held_out": data.held_out,   # evaluate --split validation checks that it draws these images again
    }


def _claim_run_dir(spec, options, plan) -> tuple[Path, bool]:
    """The run folder and whether this fit created it (only then may a failed fit remove it whole)."""
    if not plan.is_chief:
        # Only the chief writes the run folder; the others keep their own resume state
        # beside it and remove it when the fit is done (TensorFlow's multi-worker guide).
        run_dir = Path(options.resume or options.out) / f".worker-{plan.worker_index}"
        return run_dir, folder.claim(run_dir, policy.written_names(spec))
    if options.resume:
        folder.check_ours(options.resume)
        return Path(options.resume), False
    if options.out:
        return Path(options.out), folder.claim(Path(options.out), policy.written_names(spec))
    run_dir = folder.new_run_dir(spec["output"]["dir"], spec["name"])
    folder.mark(run_dir, policy.written_names(spec))
    return run_dir, True


def _tensorboard(spec, run_dir) -> list:
    if not spec["fit"]["tensorboard"]:
        return []
    from cnntrain.train.tracking import HParams

    return [keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), profile_batch=0),
            HParams(spec, run_dir / "tensorboard")]


def _datasets(spec, data, plan, first_epoch: int):
    """One stream of training batches from the first epoch still to train, and the validation batches."""
    batch = spec["fit"]["batch_size"]
    classes = len(data.class_names) if build.uses_one_hot(spec) else None
    train_ds = distribute.sharded(pipeline.train_dataset(data.x_train, data.y_train, batch_size=batch,
                                               augment=build.build_layers(spec, ("augment",)), seed=spec["seed"],
                                               num_classes=classes, first_epoch=first_epoch, epochs=None,
                                               class_weight=balance.class_weights(spec, data.class_names,
                                                                                  data.y_train),
                                               shard=distribute.shard_of(plan)), plan)
    val_ds = None if data.x_val is None else distribute.sharded(
        pipeline.eval_dataset(data.x_val, data.y_val, batch_size=batch, num_classes=classes,
                              shard=distribute.shard_of(plan)), plan)
    return train_ds, val_ds


def _train(run: FitRun, train, val_ds, callbacks, saver):
    """`train`: the training stream from the first epoch to train, and the stream from any epoch
    (fine-tuning's second phase starts one of its own, as its resumed fit would)."""
    spec, model = run.spec, run.model
    initial = saver.state["epochs_done"]
    if initial >= spec["fit"]["epochs"]:
        return
    train_ds, stream_from = train
    try:
        for first, end, tune in finetune.phases(spec, initial):
            if tune:
                finetune.enter_phase_two(spec, model, run.steps, run.options.jit)
                train_ds = stream_from(first)
            model.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=first,
                      steps_per_epoch=run.steps, callbacks=callbacks, verbose=0, shuffle=False)
    except KeyboardInterrupt:
        for callback in callbacks:
            getattr(callback, "close", lambda: None)()  # leave the terminal clean
        done = saver.state["epochs_done"]
        raise CnntrainError(f"interrupted; {plural(done, 'epoch')} saved in {run.run_dir}",
                            hint=f"resume with: cnntrain fit --resume {run.run_dir}", exit_code=130) from None


def _recorded_data(options) -> str | None:
    env = Path(options.resume or "") / "env.json"
    return lookup.recorded_source(atomic.read_json(env), options.data_dir) if options.resume and env.exists() else None


def _check_tensorboard(spec):
    # Keras' TensorBoard callback only finds out at the first summary, mid-fit (TBNotInstalledError).
    try:
        from tensorboard.summary.v2 import scalar  # noqa: F401 - the import is the check
    except ImportError as exc:
        raise spec.error(("fit", "tensorboard"), f"fit.tensorboard needs the tensorboard package, which "
                         f"cannot be imported ({exc})", "it is one of cnntrain's dependencies: pip install "
                         "tensorboard (or reinstall cnntrain), or set fit.tensorboard: false") from None


def _multi_worker_fixes(model, dataset, plan):
    if plan.num_workers <= 1:
        return contextlib.nullcontext()
    from cnntrain.train.keras_fixes import multi_worker_fixes

    return multi_worker_fixes(model, dataset, plan.strategy)
