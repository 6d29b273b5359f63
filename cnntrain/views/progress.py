"""Live training progress as a Keras callback (imports Keras, so kept apart from console.py)."""
from __future__ import annotations

import numbers
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cnntrain.backend import keras
from cnntrain.runs.numbers import figure, is_validation
from cnntrain.views.console import err, fields_line


def _figures(logs: dict, validation: bool = False) -> list[str]:
    keys = [k for k in logs if is_validation(k) == validation]
    return [f"{k} {figure(k, _number(logs[k]))}" for k in keys if k != "learning_rate"]


def _number(value):
    # A count Keras passes on as logged (fine-tuning's phase, 1 or 2) reads as a count, `phase 2`;
    # only the figures (Keras' NumPy and tensor scalars among them) are made floats, to 4 decimals.
    return int(value) if isinstance(value, numbers.Integral) else float(value)


class EpochLines(keras.callbacks.Callback):
    """One line per epoch: for logs that are not a terminal."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        fields = [f"epoch {epoch + 1}/{self.epochs}", *_figures(logs or {}), *_figures(logs or {}, validation=True),
                  f"{time.perf_counter() - self.start:.1f}s"]
        err.print(fields_line(fields, err.size.width))


class LiveBar(EpochLines):
    """A rich progress bar per epoch with the running loss, then the epoch's line."""

    def __init__(self, epochs: int, steps: int):
        super().__init__(epochs)
        self.steps = steps
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[figures]}"),
                                 console=err, transient=True)

    def on_train_begin(self, logs=None):
        self.progress.start()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, figures="")

    def on_train_batch_end(self, batch, logs=None):
        self.progress.update(self.task, completed=batch + 1, figures="  ".join(_figures(logs or {})))

    def on_epoch_end(self, epoch, logs=None):
        self.progress.remove_task(self.task)
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.progress.stop()

    close = on_train_end

    def __del__(self):
        try:
            self.progress.stop()
        except Exception:
            pass


def progress_callback(mode: str, steps: int, epochs: int) -> keras.callbacks.Callback:
    if mode == "rich":
        return LiveBar(epochs, steps)
    if mode == "plain":
        return EpochLines(epochs)
    return keras.callbacks.Callback()
