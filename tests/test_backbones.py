"""Backbones: keras.applications models as entries of model.layers, through the CLI on tiny MNIST."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnntrain.backend import keras
from helpers.cli import run_cli

# MobileNetV2 at alpha 0.35 on 32x32 images is the cheapest backbone Keras has.
BACKBONE = "MobileNetV2: {include_top: false, weights: null, alpha: 0.35, pooling: avg}"


def spec_file(tmp_path, backbone=BACKBONE, *, normalize="none", before="", after="    - Dense: {units: 10, activation: softmax}\n",
              extra=""):
    path = tmp_path / "backbone.yaml"
    path.write_text(f"""\
name: backbone
seed: 3
data: {{dataset: mnist, validation_split: 0.2}}
preprocess: {{normalize: {normalize}}}
model:
  input_shape: [28, 28, 1]
  layers:
{before}    - {backbone}
{after}compile:
  optimizer: {{Adam: {{learning_rate: 0.001}}}}
fit: {{batch_size: 50, epochs: 1}}
{extra}""")
    return path


def test_summary_has_a_backbone_row_with_its_trainable_and_frozen_parameters_and_macs(tmp_path):
    result = run_cli("summary", spec_file(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["layers"]
    assert [(r["name"], r["type"], r["output_shape"]) for r in rows[:3]] == [
        ("mobilenetv2_resize", "Resizing", [32, 32, 1]),
        ("mobilenetv2_input", "Conv2D", [32, 32, 3]),
        ("mobilenetv2_0.35_32", "Functional", [1280])]
    assert [(r["type"], r["output_shape"]) for r in rows[3:]] == [("Dense", [10])]
    adapter, backbone = rows[1], rows[2]
    assert adapter["params"] == 6 and adapter["trainable"] == 0
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None,
                                           pooling="avg")
    frozen = model.count_params() - backbone["trainable"]
    assert backbone["params"] == model.count_params() == 410208
    assert backbone["formula"] == f"{len(model.layers)} layers: {backbone['trainable']:,} trainable, {frozen:,} frozen"
    moving = sum(w.numpy().size for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
                 for w in (layer.moving_mean, layer.moving_variance))
    assert frozen == moving == 14080


def test_a_backbone_row_counts_the_macs_of_every_layer_inside():
    from cnntrain.insight.layers import describe

    # The MobileNetV2 paper's Table 3: 300M multiply-adds at 224x224 (the 1000-class top included).
    inner = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    row, = describe(keras.Sequential([keras.Input((224, 224, 3)), inner]))
    assert row.macs == 300_774_272


def test_the_input_adapter_is_the_family_preprocess_input_on_gray_copied_to_rgb(tmp_path):
    from cnntrain.spec import load_spec
    from cnntrain.model import build

    model = build.build_model(load_spec(spec_file(tmp_path)), pretrained=False)
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype("float32")
    resized = model.get_layer("mobilenetv2_resize")(images)
    adapted = np.asarray(model.get_layer("mobilenetv2_input")(resized))
    expected = keras.applications.mobilenet_v2.preprocess_input(np.repeat(np.asarray(resized), 3, axis=-1))
    np.testing.assert_allclose(adapted, expected, atol=1e-5)


def test_the_model_file_loads_in_plain_keras(tmp_path):
    from cnntrain.model import build
    from cnntrain.spec import load_spec

    model = build.build_model(load_spec(spec_file(tmp_path)), pretrained=False)
    model.save(tmp_path / "model.keras")
    plain = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert [type(layer).__name__ for layer in plain.layers] == ["Resizing", "Conv2D", "Functional", "Dense"]
    assert not plain.get_layer("mobilenetv2_input").trainable
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_filters_of_a_backbone_model_are_the_first_learned_convolution_inside_the_backbone(tmp_path):
    from cnntrain.model import build
    from cnntrain.spec import load_spec

    model = build.build_model(load_spec(spec_file(tmp_path)), pretrained=False)
    model.save(tmp_path / "model.keras")
    result = run_cli("filters", tmp_path / "model.keras", "--out", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    # Not mobilenetv2_input, the frozen 1x1 adapter (the family's preprocess_input) in front of it.
    assert result.stdout == f"wrote {tmp_path / 'f.png'}: 16 filters of mobilenetv2_0.35_32/Conv1\n"


@pytest.mark.slow   # three minutes here: tracing MobileNetV2 for fit, evaluate and predict
def test_fit_evaluate_predict_and_the_model_loads_in_plain_keras(tmp_path, mnist_dir):
    run = tmp_path / "run"
    result = run_cli("fit", spec_file(tmp_path), "--data-dir", mnist_dir, "--out", run)
    assert result.exit_code == 0, result.output
    evaluated = run_cli("evaluate", run, "--data-dir", mnist_dir)
    assert evaluated.exit_code == 0, evaluated.output
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    predicted = run_cli("predict", image, "--run", run)
    assert predicted.exit_code == 0, predicted.output
    plain = keras.models.load_model(run / "model.keras")
    assert [type(layer).__name__ for layer in plain.layers] == ["Resizing", "Conv2D", "Functional", "Dense"]
    assert not plain.get_layer("mobilenetv2_input").trainable
    exported = run_cli("export", run, "--format", "tflite", "--data-dir", mnist_dir, "--out", tmp_path / "tflite")
    assert exported.exit_code == 0, exported.output
    for command in ("filters", "activations"):
        drawn = run_cli(command, run, *([image] if command == "activations" else []), "--out", tmp_path / f"{command}.png")
        assert drawn.exit_code == 0, drawn.output


@pytest.mark.parametrize("backbone, before, after, normalize, at, message", [
    ("MobileNetv2: {weights: null}", "", "", "none", "8:7",
     "unknown layer 'MobileNetv2'\n  hint: did you mean 'MobileNetV2'? Layer names are keras.layers class names "
     "or keras.applications model names (case matters)."),
    ("MobileNetV2: {weights: null, alpha: 0.35}", "", "", "none", "8:20",
     "MobileNetV2: include_top: true gives its own classifier of 1000 classes, but the data has 10\n  hint: set "
     "include_top: false, pooling: avg and end with Dense: {units: 10, activation: softmax}; or classes: 10 "
     "with weights: null"),
    (BACKBONE, "    - Flatten\n", None, "none", "9:7",
     "MobileNetV2 takes images (height, width, channels) but receives (batch, 784) from the layers above\n  hint: "
     "move MobileNetV2 above Flatten; end it with pooling: avg (or a GlobalAveragePooling2D after it) before the "
     "Dense layers"),
    (BACKBONE, "    - MaxPooling2D: {pool_size: 2}\n", None, "none", "9:7",
     "MobileNetV2 needs an input of at least 32x32, receives 14x14 from the layers above\n  hint: list it first "
     "in model.layers (the images are then resized up to 32x32), or put '- Resizing: {height: 32, width: 32}' "
     "right above it"),
    (BACKBONE, "", None, "standardize", "4:25",
     "preprocess.normalize: standardize and MobileNetV2 (model.layers item 1) would both normalize the images: "
     "MobileNetV2 takes 0-255 pixels and applies keras.applications.mobilenet_v2.preprocess_input\n  hint: set "
     "preprocess.normalize: none"),
    ("MobileNetV2: {weights: null, alpha: 0.35, include_top: false, input_shape: [32, 32, 3]}", "", None, "none",
     "8:69", "MobileNetV2: cnntrain sets 'input_shape' from the layers above it\n  hint: leave it out: the images "
     "are resized up to the backbone's minimum size where they are smaller"),
])
def test_bad_backbone_entries_are_spec_errors_at_their_line(tmp_path, backbone, before, after, normalize, at,
                                                           message):
    kwargs = {} if after is None else {"after": after}
    path = spec_file(tmp_path, backbone, normalize=normalize, before=before, **kwargs)
    result = run_cli("check", path)
    assert result.exit_code == 1
    assert result.stderr == f"{path}:{at}: {message}\n"


def _weights_file(tmp_path, include_top: bool) -> str:
    path = tmp_path / ("top.weights.h5" if include_top else "notop.weights.h5")
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=include_top,
                                           weights=None, pooling="avg", classes=10)
    model.save_weights(path)
    return str(path)


def test_a_local_weights_file_is_loaded(tmp_path):
    weights = _weights_file(tmp_path, include_top=False)
    from cnntrain.model import build
    from cnntrain.spec import load_spec

    spec = load_spec(spec_file(tmp_path, BACKBONE.replace("weights: null", f"weights: {weights}")))
    model = build.build_model(spec)
    saved = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None,
                                           pooling="avg")
    saved.load_weights(weights)
    for got, want in zip(model.get_layer(saved.name).get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_a_weights_file_of_the_other_variant_is_an_error_naming_both(tmp_path):
    weights = _weights_file(tmp_path, include_top=True)
    path = spec_file(tmp_path, BACKBONE.replace("weights: null", f"weights: {weights}"))
    result = run_cli("check", path)
    assert result.exit_code == 1
    assert result.stderr == (f"{path}:8:50: MobileNetV2: the weights in {weights} do not fit this MobileNetV2 "
                             "(include_top: false, input 32x32x3); the file holds the weights of a model with its "
                             "top (include_top: true, classes: 10)\n  hint: use the file saved from the same "
                             "constructor arguments and input size\n")


def test_imagenet_offline_names_the_file_keras_wants_and_where(tmp_path, mnist_dir):
    path = spec_file(tmp_path, BACKBONE.replace("weights: null", "weights: imagenet"))
    result = run_cli("fit", path, "--data-dir", mnist_dir, "--offline", "--out", tmp_path / "run")
    assert result.exit_code == 1
    wanted = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    assert result.stderr.endswith(
        f"{path}:8:50: MobileNetV2: the imagenet weights are not in Keras' cache and offline mode is on, so nothing "
        f"was downloaded\n  hint: download https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
        f"{wanted} and put it at {tmp_path / 'keras' / 'models' / wanted} (or set weights: null, or the path of a "
        "weights file)\n")
    assert not (tmp_path / "run").exists()


FINE_TUNE = "  fine_tune: {at_epoch: 2, learning_rate: 0.0001, layers: 5}\n"


def test_fine_tune_freezes_then_thaws_the_last_layers_but_not_batchnorm(tmp_path):
    from cnntrain.model import build
    from cnntrain.spec import load_spec
    from cnntrain.train import finetune

    path = spec_file(tmp_path)
    path.write_text(path.read_text().replace("fit: {batch_size: 50, epochs: 1}\n", "fit:\n  epochs: 4\n" + FINE_TUNE))
    spec = load_spec(path)
    model = build.build_model(spec, pretrained=False)
    finetune.freeze(spec, model)
    backbone = model.get_layer("mobilenetv2_0.35_32")
    assert backbone.trainable_weights == []
    assert len(model.trainable_variables) == 2   # the Dense head's kernel and bias
    finetune.enter_phase_two(spec, model, steps=4, jit=False)
    thawed = [layer.name for layer in backbone.layers if layer.trainable_weights]
    # Of the last five layers only Conv_1 has weights and is no BatchNormalization.
    assert [type(layer).__name__ for layer in backbone.layers[-5:]].count("BatchNormalization") == 2
    assert thawed == ["Conv_1"]
    assert len(model.trainable_variables) == 3 and len(model.optimizer.variables) > 2


def test_fine_tune_without_a_backbone_is_an_error_at_its_line(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=2)
    spec.write_text(spec.read_text().replace("fit:\n", "fit:\n" + FINE_TUNE))
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run")
    assert result.exit_code == 1
    line = spec.read_text().splitlines().index(FINE_TUNE.rstrip()) + 1
    assert result.stderr.endswith(
        f"{spec}:{line}:14: fit.fine_tune unfreezes the model's backbones, and it has none\n  hint: list a "
        "keras.applications model in model.layers (e.g. '- MobileNetV2: {include_top: false, weights: imagenet, "
        "pooling: avg}'), or leave fit.fine_tune out\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("callback, at, message", [
    ("EarlyStopping: {patience: 2, restore_best_weights: true}", "16:7",
     "EarlyStopping does not work with fit.fine_tune: Keras starts it afresh (its patience and best value) when "
     "phase two begins, and a stop in phase one only skips to phase two; restore_best_weights puts phase one's "
     "best weights back before phase two\n  hint: leave it out: best.keras keeps the best epoch of either phase "
     "(fit.monitor), and fit.epochs sets the length"),
    ("ReduceLROnPlateau", "16:7",
     "ReduceLROnPlateau does not work with fit.fine_tune: Keras starts it afresh (its patience and best value) when "
     "phase two begins, and phase two's new optimizer starts at fit.fine_tune.learning_rate whatever it lowered\n"
     "  hint: leave it out: phase two lowers the rate itself, to fit.fine_tune.learning_rate"),
])
def test_a_callback_that_keras_restarts_at_the_phase_change_is_refused_with_fine_tune(tmp_path, callback, at,
                                                                                       message):
    path = spec_file(tmp_path)
    path.write_text(path.read_text().replace("fit: {batch_size: 50, epochs: 1}\n", "fit:\n  epochs: 4\n" + FINE_TUNE
                                             + f"  callbacks:\n    - {callback}\n"))
    result = run_cli("check", path)
    assert result.exit_code == 1
    assert result.stderr == f"{path}:{at}: {message}\n"
    path.write_text(path.read_text().replace(FINE_TUNE, ""))
    assert run_cli("check", path).exit_code == 0   # either alone is a spec


@pytest.mark.slow   # two MobileNetV2 fits of four epochs
def test_a_fit_stopped_in_phase_two_resumes_in_phase_two_as_the_uninterrupted_run(tmp_path, mnist_dir,
                                                                                 monkeypatch):
    from cnntrain.errors import CnntrainError
    from cnntrain.train import fit
    from helpers.runs import history

    spec = spec_file(tmp_path)
    spec.write_text(spec.read_text().replace("fit: {batch_size: 50, epochs: 1}\n",
                                             "fit:\n  batch_size: 50\n  epochs: 4\n" + FINE_TUNE))
    whole = run_cli("fit", spec, "--data-dir", mnist_dir, "--deterministic", "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    run = tmp_path / "run"

    def stop(*args, **kwargs):   # after epoch 3's commit: a kill there leaves the same folder
        raise CnntrainError("stopped")

    with monkeypatch.context() as patch:
        patch.setattr(fit, "finish", stop)
        stopped = run_cli("fit", spec, "--data-dir", mnist_dir, "--deterministic", "--epochs", 3, "--out", run)
    assert stopped.exit_code == 1
    resumed = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--deterministic", "--epochs", 4)
    assert resumed.exit_code == 0, resumed.output
    drop = ("seconds",)
    rows = [{k: v for k, v in r.items() if k not in drop} for r in history(run)]
    assert [float(r["phase"]) for r in rows] == [1, 1, 2, 2]
    assert rows == [{k: v for k, v in r.items() if k not in drop} for r in history(tmp_path / "whole")]


@pytest.mark.slow   # two MobileNetV2 fits of three and one epochs
def test_a_finished_fine_tuned_run_trained_longer_goes_on_in_phase_two(tmp_path, mnist_dir):
    """Was trained on with the backbone frozen at phase one's rate (history: learning_rate 0.001)."""
    from helpers.runs import history

    spec = spec_file(tmp_path)
    spec.write_text(spec.read_text().replace("fit: {batch_size: 50, epochs: 1}\n",
                                             "fit:\n  batch_size: 50\n  epochs: 3\n" + FINE_TUNE))
    run = tmp_path / "run"
    first = run_cli("fit", spec, "--data-dir", mnist_dir, "--deterministic", "--out", run)
    assert first.exit_code == 0, first.output
    longer = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--deterministic", "--epochs", 4)
    assert longer.exit_code == 0, longer.output
    assert [(float(r["phase"]), float(r["learning_rate"])) for r in history(run)] == [
        (1, 0.001), (1, 0.001), (2, 0.0001), (2, 0.0001)]


class Phases(keras.callbacks.Callback):
    """Each trainable variable's value by path, as the user's callbacks see it: at each epoch's first
    step, after its last step, at its end (with the optimizer's average beside it)."""

    def __init__(self):
        super().__init__()
        self.first_steps, self.trained, self.ends, self.averages = [], [], [], []

    def _values(self) -> dict:
        return {v.path: v.numpy() for v in self.model.trainable_variables}

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_steps.append(self._values())

    def on_train_batch_end(self, batch, logs=None):
        self.last_step = self._values()

    def on_epoch_end(self, epoch, logs=None):
        self.trained.append(self.last_step)
        self.ends.append(self._values())
        optimizer = self.model.optimizer
        self.averages.append({v.path: a.numpy() for v, a in zip(optimizer._trainable_variables,
                                                                 optimizer._model_variables_moving_average)})


@pytest.mark.slow   # three MobileNetV2 fits of one or two epochs
def test_ema_with_fine_tune_goes_on_from_the_trained_weights_and_averages_the_unfrozen_backbone(tmp_path, mnist_dir,
                                                                                               monkeypatch):
    from cnntrain.runs import model_file
    from cnntrain.spec import load_spec
    from cnntrain.train import fit
    from cnntrain.views.reporter import Reporter

    def spec(epochs):
        path = spec_file(tmp_path).rename(tmp_path / f"ema-{epochs}.yaml")
        path.write_text(path.read_text().replace("{learning_rate: 0.001}", "{learning_rate: 0.001, use_ema: true, "
                                                 "ema_momentum: 0.5}").replace(
            "fit: {batch_size: 50, epochs: 1}\n", f"fit:\n  batch_size: 50\n  epochs: {epochs}\n"
            "  fine_tune: {at_epoch: 1, learning_rate: 0.0001}\n"))
        return load_spec(path)

    def run(epochs, out, **options):
        probe = Phases()
        fit.fit(spec(epochs), fit.FitOptions(data_dir=str(mnist_dir), out=str(tmp_path / out), deterministic=True,
                                             callbacks=(probe,), **options), Reporter("quiet"))
        return probe

    def final(out):   # in the fit's order: a loaded model's variable paths lack the model's name
        return [v.numpy() for v in model_file.load_model(tmp_path / out / "model.keras")[0].trainable_variables]

    def same(a, b, keys=None):
        return all(np.array_equal(a[k], b[k]) for k in (keys or a))

    whole = run(2, "whole")
    head = list(whole.trained[0])
    assert len(head) == 2 and set(head) < set(whole.ends[1])   # phase two trains the backbone too
    # Phase one ends with the head's average; phase two goes on from its trained weights.
    assert same(whole.first_steps[1], whole.trained[0], head) and not same(whole.ends[0], whole.trained[0])
    # Phase two's average covers every variable it trains, backbone included, and is the model at its end.
    assert set(whole.averages[1]) == set(whole.ends[1]) and same(whole.ends[1], whole.averages[1])
    backbone = [k for k in whole.ends[1] if k not in head]
    assert not same(whole.ends[1], whole.trained[1], backbone)   # momentum 0.5: the average is not the last step
    assert same(dict(enumerate(final("whole"))), dict(enumerate(whole.averages[1].values())))

    # Stopped at the phase change and resumed: the same phase two, the same model.
    with monkeypatch.context() as patch:
        patch.setattr(fit, "finish", lambda *a, **k: None)   # stopped after its last epoch's commit
        run(1, "run")
    resumed = run(2, "run", resume=str(tmp_path / "run"))
    assert same(resumed.first_steps[0], whole.first_steps[1]) and same(resumed.averages[0], whole.averages[1])
    assert same(dict(enumerate(final("run"))), dict(enumerate(final("whole"))))


UNSETTLED = ("warning: {where}: MobileNetV2 starts from random weights (weights: null), and its 52 "
             "BatchNormalization layers move their moving averages 0.1% of the way to each batch's statistics "
             "(momentum 0.999): in {steps} training steps they do not settle, and evaluate and predict, which "
             "normalize by them, may find the model at chance; start from pretrained weights (weights: imagenet or "
             "a weights file), or train for 1,000 steps or more\n")


def test_check_warns_that_a_short_fit_leaves_a_random_backbones_batch_statistics_unsettled(tmp_path):
    """MobileNetV2 from random weights, fitted for 5 epochs of 100 images, tested at chance."""
    path = spec_file(tmp_path)
    result = run_cli("check", path)   # MNIST: 48,000 training images, 960 steps of 50
    assert (result.exit_code, result.stderr) == (0, UNSETTLED.format(where=f"{path}:8:50", steps=960))


def test_the_unsettled_statistics_warning_is_read_from_the_built_layers(tmp_path):
    from cnntrain.model import backbones, build
    from cnntrain.spec import load_spec

    spec = load_spec(spec_file(tmp_path))
    model = build.build_model(spec, pretrained=False)
    assert backbones.unsettled_statistics(spec, model, 1000) == []
    assert [f"warning: {w}\n" for w in backbones.unsettled_statistics(spec, model, 999)] == [
        UNSETTLED.format(where=f"{tmp_path / 'backbone.yaml'}:8:50", steps=999)]
    # Nothing read by name: the momentum of the built layers decides.
    for layer in model.get_layer("mobilenetv2_0.35_32").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    assert backbones.unsettled_statistics(spec, model, 999) == []
    weights = _weights_file(tmp_path, include_top=False)
    pretrained = load_spec(spec_file(tmp_path, BACKBONE.replace("weights: null", f"weights: {weights}")))
    assert backbones.unsettled_statistics(pretrained, build.build_model(pretrained), 999) == []


@pytest.mark.slow   # two MobileNetV2 fits of two and one epochs
def test_a_fine_tuned_fit_shows_its_phase_as_a_count_and_warns_of_unsettled_statistics(tmp_path, mnist_dir):
    """Its epoch line read 'phase 2.0000'; history.csv's phase column is read back by a resumed fit."""
    import re

    from helpers.runs import history

    spec = spec_file(tmp_path)
    spec.write_text(spec.read_text().replace("fit: {batch_size: 50, epochs: 1}\n", "fit:\n  batch_size: 50\n  "
                                             "epochs: 2\n  fine_tune: {at_epoch: 1, learning_rate: 0.0001, layers: 5}\n"))
    run = tmp_path / "run"
    first = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", run)
    longer = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--epochs", 3)
    assert first.exit_code == longer.exit_code == 0, first.output + longer.output
    lines = [re.sub(r"\d+\.\d+", "N", line) for line in (first.stderr + longer.stderr).splitlines()
             if line.startswith("epoch ")]   # the figures as N: what they are is not the point
    assert lines == [f"epoch {e}  accuracy N%  loss N  phase {p}  val_accuracy N%  val_loss N  Ns"
                     for e, p in (("1/2", 1), ("2/2", 2), ("3/3", 2))]
    # 4 steps of 50 an epoch (160 training images).
    assert UNSETTLED.format(where=f"{spec}:8:50", steps=8) in first.stderr
    assert UNSETTLED.format(where=f"{run / 'spec.yaml'}:11:48", steps=12) in longer.stderr   # the run's copy
    assert [r["phase"] for r in history(run)] == ["1", "2", "2"]
