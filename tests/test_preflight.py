"""What Keras rejects only inside model.fit is rejected by `check` and by `fit` before any run folder:
one real training step on random images, the entry at fault named at its line with Keras' message."""
import pytest

from cnntrain.spec.yamlmarks import shorten
from helpers.cli import run_cli

LABELS_HINT = ("metrics get what the loss gets: integer class labels (0..9) and 10 scores per image; e.g. accuracy, "
               "or SparseTopKCategoricalAccuracy for integer labels")
SHAPE_HINT = ("give it the input size (height: 28, width: 28), or remove it; to change the input size, set "
              "model.input_shape (and data.image_size)")
LOGS = "it logs: loss, accuracy, val_loss, val_accuracy"
MONITOR_HINT = "The names are those of compile.metrics, with val_ for the validation figures."

REJECTED = [
    ("binary loss on 10 softmax outputs", "compile.loss=binary_crossentropy",
     "loss binary_crossentropy cannot train this model: Arguments `target` and `output` must have the same rank "
     "(ndim). Received: target.shape=(2,), output.shape=(2, 10)\n"
     "  hint: the model gives 10 class scores and the data integer class labels (0..9): use "
     "sparse_categorical_crossentropy (integer labels) or categorical_crossentropy (one-hot labels)\n"),
    ("AUC on integer labels", "compile.metrics=[accuracy, AUC]",
     "metric AUC cannot follow this model: Argument `segment_ids` and `data` should have same leading dimension. "
     f"Got (20,) v.s. (2,).\n  hint: {LABELS_HINT}\n"),
    ("top-k on integer labels", "compile.metrics=[{TopKCategoricalAccuracy: {k: 3}}]",
     "metric TopKCategoricalAccuracy cannot follow this model: Shape must be rank 1 but is rank 0 with input "
     f"shapes: [2,10], [], [].\n  hint: {LABELS_HINT}\n"),
    ("mse on integer labels", "compile.metrics=[accuracy, mse]",
     "metric mse cannot follow this model: Dimensions must be equal, but are 2 and 10 with input shapes: [2], "
     f"[2,10].\n  hint: {LABELS_HINT}\n"),
    ("RandomCrop larger than the image", "augment=[RandomFlip, {RandomCrop: {height: 40, width: 40}}]",
     "RandomCrop turns (28, 28, 1) images into (40, 40, 1); augmentation must keep the model's input shape\n"
     f"  hint: {SHAPE_HINT}\n"),
    ("Resizing to another size", "augment=[{Resizing: {height: 20, width: 20}}]",
     "Resizing turns (28, 28, 1) images into (20, 20, 1); augmentation must keep the model's input shape\n"
     f"  hint: {SHAPE_HINT}\n"),
    ("a schedule of a huge number of epochs",
     "compile.optimizer={Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.01, decay_steps: "
     "100000000000000000000 epochs}}}}",
     # The schedule is called for its first steps when it is built, before any training step.
     "CosineDecay: Can't convert Python sequence with out-of-range integer to Tensor.\n"
     "  hint: see the arguments of keras.optimizers.schedules.CosineDecay\n"),
    ("a layer that fails only in training", "model.layers=[Flatten, {AlphaDropout: {rate: 1.0}}, {Dense: {units: 10, "
     "activation: softmax}}]",
     "AlphaDropout fails on a training batch: 0.0 cannot be raised to a negative power\n"
     "  hint: see the documentation of keras.layers.AlphaDropout\n"),
    ("a misspelt fit.monitor", "fit.monitor=val_acuracy",
     f"fit.monitor 'val_acuracy' is not a figure this model logs; {LOGS}\n"
     f"  hint: did you mean 'val_accuracy'? {MONITOR_HINT}\n"),
    ("a misspelt callback monitor", "fit.callbacks=[{EarlyStopping: {monitor: val_los}}]",
     f"EarlyStopping's monitor 'val_los' is not a figure this model logs; {LOGS}\n"
     f"  hint: did you mean 'val_loss'? {MONITOR_HINT}\n"),
]


@pytest.mark.parametrize("what,override,message", REJECTED, ids=[r[0] for r in REJECTED])
def test_check_rejects_what_fit_would(what, override, message, tiny_spec):
    result = run_cli("check", tiny_spec(), "--set", override)
    assert result.exit_code == 1
    assert result.stdout == ""
    # A --set value is its own location (the spec's file:line:column otherwise: next test).
    assert result.stderr == f"--set {shorten(override, 120)}: {message}"   # as load.py quotes it


def test_the_error_is_at_the_line_of_the_entry(tiny_spec):
    spec = tiny_spec(extra="augment:\n  - RandomFlip: {mode: horizontal}\n  - RandomCrop: {height: 24, width: 24}\n")
    line = spec.read_text().splitlines().index("  - RandomCrop: {height: 24, width: 24}") + 1
    result = run_cli("check", spec)
    assert result.exit_code == 1
    assert result.stderr == (f"{spec}:{line}:5: RandomCrop turns (28, 28, 1) images into (24, 24, 1); augmentation "
                             f"must keep the model's input shape\n  hint: {SHAPE_HINT}\n")


def test_fit_rejects_before_the_run_folder(tiny_spec, mnist_dir, tmp_path):
    result = run_cli("fit", tiny_spec(), "--data-dir", mnist_dir, "--set", "compile.loss=binary_crossentropy")
    assert result.exit_code == 1
    notes, error = result.stderr.split("--set ", 1)
    assert notes.startswith("device: ") and "\ndata: " in notes   # the data was read, nothing written
    assert "--set " + error == f"--set compile.loss=binary_crossentropy: {REJECTED[0][2]}"
    assert not (tmp_path / "runs").exists()


def test_without_validation_a_val_monitor_follows_the_training_figure(tiny_spec, mnist_dir, tmp_path):
    """fit has followed 'accuracy' for 'val_accuracy' without validation data: check agrees with it."""
    result = run_cli("check", tiny_spec(), "--set", "data.validation=none")
    assert result.exit_code == 0, result.output
    result = run_cli("check", tiny_spec(), "--set", "data.validation=none", "--set", "fit.monitor=val_los")
    assert result.stderr == (f"--set fit.monitor=val_los: fit.monitor 'val_los' is not a figure this model logs; it "
                             f"logs: loss, accuracy\n  hint: {MONITOR_HINT}\n")


def test_one_rule_for_whether_a_monitor_is_maximized(tiny_spec):
    """best.keras (RunState) and every callback get their mode from build.monitor_mode: a loss goes down,
    a metric goes the way Keras says it does, and a callback that gives its own mode keeps it."""
    from cnntrain.model import build
    from cnntrain.spec import load_spec
    from cnntrain.train import preflight

    assert [build.monitor_mode(m) for m in ("loss", "val_loss", "val_accuracy", "acc")] == ["min", "min", "max", "max"]
    assert build.monitor_mode("val_auc", {"auc": "up"}) == "max"
    assert build.monitor_mode("val_mse", {"mse": "down"}) == "min"
    spec = load_spec(tiny_spec(), ["compile.loss=categorical_crossentropy",
                                   "compile.metrics=[accuracy, {MeanSquaredError: {name: closeness}}]",
                                   "fit.monitor=val_closeness",
                                   "fit.callbacks=[EarlyStopping, {ReduceLROnPlateau: {monitor: loss}}, "
                                   "{EarlyStopping: {mode: max}}]"])
    logged = preflight.preflight(spec)
    assert logged == {"loss": None, "accuracy": "up", "closeness": "down"}
    preflight.check_monitors(spec, logged, validation=True)
    callbacks = build.build_callbacks(spec, directions=logged)
    assert [(cb.monitor, cb.mode) for cb in callbacks] == [("val_closeness", "min"), ("loss", "min"),
                                                          ("val_closeness", "max")]
