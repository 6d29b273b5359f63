"""The callbacks every fit runs: NaN guard, throughput meter, and the per-epoch run state.

RunState is the commit point of an epoch: history.csv, best.keras and the resume state
(weights with optimizer state, the callbacks' counters) are written atomically after each.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from cnntrain.backend import keras
from cnntrain.runs import atomic
from cnntrain.runs.folder import BACKUP, backup_file
from cnntrain.runs.history import write_history
from cnntrain.runs.model_file import save_model, save_weights
from cnntrain.runs.schema import CALLBACK_FIELDS
from cnntrain.train.fitrun import FitRun

STATE = "state.json"


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


class EpochSeeds(keras.callbacks.Callback):
    """Sets every random state of the model (Dropout, GaussianNoise, ...) from (seed, epoch) as each
    epoch begins. Keras keeps those states out of the saved weights, so a resumed fit would
    otherwise replay the first epoch's masks."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        for i, state in enumerate(states):
            value = np.random.SeedSequence([self.seed, int(epoch), i]).generate_state(1, np.uint32)[0]
            state.assign(np.array([value, 0], dtype=state.dtype))


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

    def __init__(self, run: FitRun, state: dict, *, guard: NanGuard, others: list, ema=None):
        super().__init__()
        self.ema = ema   # an EmaWeights: the resume state holds the trained weights, not the average
        self.run_dir, self.state, self.monitor, self.mode = run.run_dir, state, run.monitor, run.mode
        self.metadata, self.guard, self.others = run.metadata, guard, others
        self.backup = run.run_dir / BACKUP
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
            save_model(self.model, self.run_dir / "best.keras", {**self.metadata, "epoch": epoch + 1})
        write_history(self.run_dir / "history.csv", self.state["history"])
        self.save(epoch + 1)

    def save(self, epochs_done: int):
        self.backup.mkdir(exist_ok=True)
        weights = f"epoch-{epochs_done:04d}.weights.h5"
        with self.ema.trained() if self.ema is not None else contextlib.nullcontext():
            save_weights(self.model, self.backup / weights)
        old = self.state.get("weights")
        self.state.update(epochs_done=epochs_done, weights=weights, callbacks=_callback_state(self.others))
        atomic.write_json(self.backup / STATE, self.state)
        if old and old != weights:
            backup_file(self.run_dir, old).unlink(missing_ok=True)


def _callback_state(callbacks) -> list:
    """The counters that EarlyStopping and ReduceLROnPlateau keep, so a resume continues them."""
    saved = []
    for cb in callbacks:
        fields = {}
        for name in CALLBACK_FIELDS:
            value = getattr(cb, name, None)
            if isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(float(value)):
                fields[name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
        saved.append(fields)
    return saved


class _RestoreCounters(keras.callbacks.Callback):
    """Puts a resumed run's counters back into EarlyStopping and ReduceLROnPlateau after they reset
    them in on_train_begin: placed after them in fit's list, Keras calls it after theirs."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def on_train_begin(self, logs=None):
        for callback, fields in self.pairs:
            for name, value in fields.items():
                setattr(callback, name, value)


def restore_counters(callbacks, saved) -> list:
    """The callback (in a list: none when nothing was saved) that restores `saved` (the resume
    state's counters, one mapping per callback) into `callbacks` when training begins."""
    pairs = [(cb, fields) for cb, fields in zip(callbacks, saved or []) if fields]
    return [_RestoreCounters(pairs)] if pairs else []


def _current_lr(model) -> float:
    opt = model.optimizer
    lr = opt.learning_rate
    try:
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)
    except (TypeError, ValueError):
        return float(opt._get_current_learning_rate())  # a schedule
