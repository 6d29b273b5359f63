"""fit.fine_tune: train the head on a frozen backbone, then unfreeze it at an epoch and go on.

The Keras transfer-learning guide's recipe. Phase one trains only the layers around the
backbones (keras.applications models in model.layers); at `at_epoch` the backbones (all their
layers, or the last K) become trainable, except their BatchNormalization layers, which stay in
inference mode (a trainable=False BatchNormalization uses its moving statistics in Keras 3):
updating them on small batches would undo what the pretrained statistics know. The model is
recompiled with a new optimizer at `learning_rate`.

The phase follows from the epochs done, so a fit resumed in phase two is put in it before its
weights and optimizer state are loaded (phase two's optimizer has the backbone's slots too); one
resumed at the phase change loads phase one's state, then enters phase two as the uninterrupted
fit does. Each phase's data stream starts at its first epoch, as a resumed one does.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from cnntrain.backend import keras
from cnntrain.model import backbones, build, gradient_scale
from cnntrain.errors import CnntrainError
from cnntrain.runs import folder
from cnntrain.runs.history import read_history
from cnntrain.train.callbacks import STATE


def at_epoch(spec) -> int | None:
    """The epoch (counted from 0) phase two starts at, or None without fit.fine_tune."""
    fine_tune = spec["fit"]["fine_tune"]
    return None if fine_tune is None else fine_tune["at_epoch"]


def phase(spec, epoch: int) -> int:
    """The phase epoch `epoch` (counted from 0) trains in."""
    start = at_epoch(spec)
    return 2 if start is not None and epoch >= start else 1


def saved_in_phase_two(spec, epochs_done: int) -> bool:
    """Whether a state saved after `epochs_done` epochs holds phase two's optimizer: not at the phase
    change itself, whose state is phase one's last epoch (the fit enters phase two after loading it)."""
    return epochs_done > 0 and phase(spec, epochs_done - 1) == 2


def freeze(spec, model):
    """Phase one: every backbone frozen; an error at fit.fine_tune when the model has none."""
    if at_epoch(spec) is None:
        return
    found = backbones.in_model(model)
    if not found:
        raise spec.error(("fit", "fine_tune"), "fit.fine_tune unfreezes the model's backbones, and it has none",
                         "list a keras.applications model in model.layers (e.g. '- MobileNetV2: {include_top: "
                         "false, weights: imagenet, pooling: avg}'), or leave fit.fine_tune out")
    for backbone in found:
        backbone.trainable = False


def unfreeze(spec, model):
    """Phase two's trainable layers: all of each backbone or its last K, BatchNormalization never."""
    count = spec["fit"]["fine_tune"]["layers"]
    for backbone in backbones.in_model(model):
        backbone.trainable = True
        inner = [layer for layer in backbone.layers if type(layer).__name__ != "InputLayer"]
        thawed = inner if count == "all" else inner[-count:]
        for layer in inner:
            layer.trainable = any(layer is t for t in thawed) and not isinstance(
                layer, keras.layers.BatchNormalization)


def recompile(spec, model, steps: int, jit: bool):
    """Phase two's compile: the spec's optimizer at fit.fine_tune.learning_rate, built for the
    variables now trainable."""
    tuned = copy.deepcopy(spec)
    name, args = build.ref_name(spec["compile"]["optimizer"])
    tuned.values["compile"]["optimizer"] = {name: {**(args or {}),
                                                   "learning_rate": spec["fit"]["fine_tune"]["learning_rate"]}}
    optimizer = build.build_optimizer(tuned, steps)
    gradient_scale.attach(spec, optimizer, model.trainable_variables)
    model.compile(optimizer=optimizer, loss=build.build_loss(spec), metrics=build.build_metrics(spec),
                  jit_compile=jit)
    model.optimizer.build(model.trainable_variables)


def enter_phase_two(spec, model, steps: int, jit: bool):
    unfreeze(spec, model)
    recompile(spec, model, steps, jit)


def resumed_epochs(run_dir) -> int:
    """The epochs a resumed run has done: its committed state's, or, for a finished run trained
    longer (its backup/ removed at the end), its history's; 0 when it has neither."""
    saved = Path(run_dir) / folder.BACKUP / STATE if run_dir else None
    if saved is None:
        return 0
    if not saved.exists():
        try:
            rows = read_history(Path(run_dir) / "history.csv")
        except (CnntrainError, OSError):
            return 0   # begin_state reports what is wrong with the run folder
        return int(rows[-1]["epoch"]) if rows else 0
    try:
        state = json.loads(saved.read_text(encoding="utf-8"))
        return int(state.get("epochs_done", 0)) if isinstance(state, dict) else 0
    except (OSError, ValueError, TypeError):
        return 0   # begin_state reports the broken state file itself


class PhaseLog(keras.callbacks.Callback):
    """history.csv's `phase` column: 1 while the backbones are frozen, 2 after."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = phase(self.spec, epoch)


def callbacks(spec) -> list:
    """What fit adds before its RunState: the phase column, with fit.fine_tune only."""
    return [] if at_epoch(spec) is None else [PhaseLog(spec)]


def phases(spec, first: int) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, enter phase two before it) of each model.fit still to run."""
    end, start = spec["fit"]["epochs"], at_epoch(spec)
    if start is None or start >= end or first > start:
        return [(first, end, False)]
    if first == start:   # resumed at the phase change: its state was phase one's
        return [(start, end, True)]
    return [(first, start, False), (start, end, True)]
