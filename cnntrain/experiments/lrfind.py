"""`cnntrain lr-find`: the learning-rate range test (Smith 2015; fastai's lr_find).

The spec's model and optimizer train on the training split (augmented as in fit) while the
learning rate rises exponentially from `start` to `end` over `steps` steps; the loss is smoothed
(an exponential average with bias correction) and the test stops once it explodes (4x the lowest,
or not finite). The suggestion is the steepest descent of the smoothed loss against log(lr),
before its minimum; the minimum's rate / 10 is reported beside it. Nothing is saved but the picture.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np

from cnntrain.backend import keras
from cnntrain.data import splits
from cnntrain.errors import CnntrainError
from cnntrain.feed import pipeline
from cnntrain.model import backbones, build, gradient_scale, normalization
from cnntrain.spec import Spec

SMOOTHING = 0.98     # of the loss's exponential average
EXPLODED = 4.0       # the smoothed loss this many times its lowest: the rate is far too high


class RangeTest(keras.callbacks.Callback):
    """Sets the rate before each step, records the smoothed loss after it, stops when it explodes."""

    def __init__(self, start: float, end: float, steps: int):
        super().__init__()
        self.start, self.end, self.steps = start, end, steps
        self.rates, self.losses, self.raw = [], [], []
        self.average, self.stopped_at = 0.0, None

    def rate(self, step: int) -> float:
        return self.start * (self.end / self.start) ** (step / max(1, self.steps - 1))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(len(self.raw)))

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", float("nan")))
        step = len(self.raw)
        self.raw.append(loss)
        if not math.isfinite(loss):
            self.stopped_at = step + 1
            self.model.stop_training = True
            return
        # Keras' logged loss is the mean over the epoch so far; the step's own loss is recovered from it.
        step_loss = loss * (step + 1) - (self.raw[-2] * step if step else 0.0)
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * step_loss
        smoothed = self.average / (1 - SMOOTHING ** (step + 1))
        self.rates.append(self.rate(step))
        self.losses.append(smoothed)
        if step > 0 and (not math.isfinite(smoothed) or smoothed > EXPLODED * min(self.losses)):
            self.stopped_at = step + 1
            self.model.stop_training = True


def suggest(rates: list[float], losses: list[float]) -> dict:
    """{"steepest": rate, "minimum": rate of the lowest loss, "min_over_10": that / 10}."""
    if len(losses) < 3:
        raise CnntrainError(f"the range test stopped after {len(losses)} steps: too few to suggest a rate",
                            hint="start lower (--start), or check the spec trains at all")
    lowest = int(np.argmin(losses))
    logs = np.log10(np.asarray(rates, dtype=np.float64))
    slopes = np.gradient(np.asarray(losses, dtype=np.float64), logs)
    before = slopes[:max(lowest, 1) + 1]
    steepest = int(np.argmin(before))
    return {"steepest": float(rates[steepest]), "minimum": float(rates[lowest]),
            "min_over_10": float(rates[lowest] / 10), "lowest_loss": float(losses[lowest])}


def _optimizer_path(spec: Spec):
    """(spec with a plain starting rate, the --set key of the rate, or None when the value must be whole)."""
    value = spec["compile"]["optimizer"]
    values = copy.deepcopy(spec.values)
    if isinstance(value, str):
        return dataclasses.replace(spec, values=values), None
    (name, args), = value.items()
    args = dict(args or {})
    key = f"compile.optimizer.{name}.learning_rate"
    current = args.get("learning_rate")
    if isinstance(current, dict):
        (schedule, schedule_args), = current.items()
        if "initial_learning_rate" in (schedule_args or {}):
            key += f".{schedule}.initial_learning_rate"
    args["learning_rate"] = 1e-3   # replaced step by step; a schedule would refuse the assignment
    values["compile"]["optimizer"] = {name: args}
    return dataclasses.replace(spec, values=values), key


def set_line(spec: Spec, optimizer, rate: float) -> str:
    _, key = _optimizer_path(spec)
    shown = f"{rate:.2g}"
    if "e" in shown and "." not in shown:
        shown = shown.replace("e", ".0e")   # YAML reads 1e-05 as a string, 1.0e-05 as a number
    if key is None:
        return f"--set 'compile.optimizer={{{type(optimizer).__name__}: {{learning_rate: {shown}}}}}'"
    return f"--set {key}={shown}"


def lr_find(spec: Spec, *, data_dir=None, offline=False, start=1e-7, end=10.0, steps=200) -> dict:
    """The learning-rate range test of `spec`: the rates, the losses and the suggested rate."""
    if not 0 < start < end:
        raise CnntrainError(f"the range must rise: received --start {start:g} and --end {end:g}",
                            hint="e.g. --start 1e-7 --end 10")
    keras.utils.set_random_seed(spec["seed"])
    data = splits.prepare(spec, data_dir=data_dir, offline=offline)
    batch = spec["fit"]["batch_size"]
    one_hot = build.uses_one_hot(spec)
    plain, _ = _optimizer_path(spec)
    norm = normalization.normalization_layer(spec["preprocess"]["normalize"], data.x_train)
    with backbones.offline(offline):
        model = build.build_model(spec, shape=data.shape, front=[norm] if norm is not None else [])
    build.check_output(spec, model, len(data.class_names))
    optimizer = build.build_optimizer(plain, math.ceil(len(data.x_train) / batch))
    gradient_scale.attach(spec, optimizer, model.trainable_variables)
    model.compile(optimizer=optimizer, loss=build.build_loss(spec), metrics=[])
    train = pipeline.train_dataset(data.x_train, data.y_train, batch_size=batch,
                                   augment=build.build_layers(spec, ("augment",)), seed=spec["seed"],
                                   num_classes=len(data.class_names) if one_hot else None).repeat()
    test = RangeTest(start, end, steps)
    model.fit(train, epochs=1, steps_per_epoch=steps, callbacks=[test], verbose=0, shuffle=False)
    found = suggest(test.rates, test.losses)
    return {"start": start, "end": end, "steps": steps, "steps_run": len(test.raw), "stopped_at": test.stopped_at,
            "rates": test.rates, "losses": test.losses, **found, "set": set_line(spec, optimizer, found["steepest"]),
            "train_images": len(data.x_train), "batch_size": batch}
