"""An optimizer's use_ema: validation, best.keras, the epoch's callbacks and the final model see the
moving average; the resume state keeps the trained weights with the average in the optimizer."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers.formats import digits
from helpers.runs import TINY_SPEC

from cnntrain.backend import keras
from cnntrain.data import splits
from cnntrain.runs import model_file
from cnntrain.spec import load_spec
from cnntrain.train import fit
from cnntrain.views.reporter import Reporter

EMA = "{Adam: {learning_rate: 0.01, use_ema: true, ema_momentum: 0.5}}"


class Probe(keras.callbacks.Callback):
    """Records what the model holds as the user's callbacks see it: after each training step, at
    each epoch's end (with the optimizer's average beside it), at each epoch's first step."""

    def __init__(self):
        super().__init__()
        self.trained, self.ends, self.averages, self.first_steps = [], [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = [v.numpy() for v in self.model.trainable_variables]

    def on_epoch_end(self, epoch, logs=None):
        self.trained.append(self.last_step)
        self.ends.append([v.numpy() for v in self.model.trainable_variables])
        averages = getattr(self.model.optimizer, "_model_variables_moving_average", [])
        self.averages.append([a.numpy() for a in averages])

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_steps.append([v.numpy() for v in self.model.trainable_variables])


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _weights(path) -> list:
    return [v.numpy() for v in model_file.load_model(path)[0].trainable_variables]


@pytest.fixture
def ema_spec(tmp_path):
    x_train, y_train = digits(120, seed=1)
    x_test, y_test = digits(40, seed=2)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    def make(epochs=2):
        path = tmp_path / f"ema-{epochs}.yaml"
        path.write_text(TINY_SPEC.format(epochs=epochs, runs="runs").replace("{Adam: {learning_rate: 0.01}}", EMA))
        return load_spec(path)
    return make


def _fit(spec, tmp_path, out, **options):
    probe = Probe()
    run = fit.fit(spec, fit.FitOptions(data_dir=str(tmp_path / "data"), out=str(tmp_path / out),
                                       deterministic=True, callbacks=(probe,), **options), Reporter("quiet"))
    return run, probe


def test_every_epoch_ends_with_the_average_and_training_goes_on_from_the_trained_weights(ema_spec, tmp_path):
    run, probe = _fit(ema_spec(), tmp_path, "run")
    assert len(probe.ends) == 2
    for end, average, trained in zip(probe.ends, probe.averages, probe.trained):
        assert _same(end, average) and not _same(end, trained)   # momentum 0.5: they differ
    assert _same(probe.first_steps[1], probe.trained[0])
    assert _same(_weights(run / "model.keras"), probe.averages[-1])
    best = json.loads((run / "metrics.json").read_text())["best"]["epoch"]
    assert _same(_weights(run / "best.keras"), probe.averages[best - 1])


def test_validation_figures_are_the_averages(ema_spec, tmp_path):
    run, probe = _fit(ema_spec(), tmp_path, "run")
    rows = list(csv.DictReader((run / "history.csv").read_text().splitlines()))
    model, _ = model_file.load_model(run / "model.keras")
    data = splits.prepare(ema_spec(), data_dir=str(tmp_path / "data"))
    loss = model.evaluate(data.x_val.astype("float32"), data.y_val, verbose=0, return_dict=True)["loss"]
    assert float(rows[-1]["val_loss"]) == pytest.approx(loss, rel=1e-5)


def test_the_resume_state_keeps_the_trained_weights_and_the_average(ema_spec, tmp_path, monkeypatch):
    whole, uninterrupted = _fit(ema_spec(2), tmp_path, "whole")
    with monkeypatch.context() as patch:
        patch.setattr(fit, "finish", lambda *a, **k: None)   # stopped after its last epoch's commit
        _fit(ema_spec(1), tmp_path, "run")
    state = json.loads((tmp_path / "run" / "backup" / "state.json").read_text())
    assert state["epochs_done"] == 1
    run, resumed = _fit(ema_spec(2), tmp_path, "run", resume=str(tmp_path / "run"))
    assert _same(resumed.first_steps[0], uninterrupted.trained[0])
    assert _same(resumed.averages[0], uninterrupted.averages[1])
    assert _same(_weights(run / "model.keras"), _weights(whole / "model.keras"))


def test_without_ema_the_final_model_is_the_trained_weights(tiny_spec, mnist_dir, tmp_path):
    spec = load_spec(tiny_spec(epochs=1))
    probe = Probe()
    run = fit.fit(spec, fit.FitOptions(data_dir=str(mnist_dir), out=str(tmp_path / "run"), callbacks=(probe,)),
                  Reporter("quiet"))
    assert probe.averages == [[]]
    assert _same(probe.ends[0], probe.trained[0]) and _same(_weights(run / "model.keras"), probe.trained[0])
