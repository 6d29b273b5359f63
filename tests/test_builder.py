"""Spec entries to Keras objects, looked up in Keras itself."""
from pathlib import Path

import pytest

from cnntrain.model import backbones, build
from cnntrain.backend import keras
from cnntrain.errors import SpecError
from cnntrain.spec import keras_names, load_spec
from helpers.specs import TINY_MODEL, spec_of

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

BASE = TINY_MODEL


def build_error(text, what="model"):
    spec = spec_of(text)
    with pytest.raises(SpecError) as info:
        if what == "model":
            build.build_model(spec)
        elif what == "optimizer":
            build.build_optimizer(spec, 10)
        elif what == "loss":
            build.build_loss(spec)
        elif what == "callbacks":
            build.build_callbacks(spec)
        elif what == "augment":
            build.build_layers(spec, ("augment",))
    return str(info.value)


def test_chapter_mnist_has_exactly_305194_parameters():
    model = build.build_model(load_spec(CONFIGS / "seed" / "mnist.yaml"))
    counts = [layer.count_params() for layer in model.layers if layer.count_params()]
    assert counts == [320, 9248, 294976, 650]
    assert model.count_params() == 305_194


def test_chapter_cifar10_architecture():
    model = build.build_model(load_spec(CONFIGS / "seed" / "cifar10.yaml"))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert [c.padding for c in convs] == ["same"] * 4 + ["valid"] * 2
    assert [d.rate for d in model.layers if isinstance(d, keras.layers.Dropout)] == [0.2, 0.2, 0.5]
    assert model.output_shape == (None, 10)
    assert model.count_params() == 293_930


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_builds(path):
    model = build.build_all(load_spec(path))
    assert model.output_shape == (None, 5 if path.name == "transfer.yaml" else 10)   # transfer: five classes of yours


def test_layer_forms_scalar_list_mapping_and_bare_name():
    spec = spec_of(BASE.replace("    - Flatten\n", "    - Activation: relu\n    - Reshape: [[72]]\n    - Flatten\n"))
    model = build.build_model(spec)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "Activation", "Reshape", "Flatten", "Dense"]


def test_nested_keras_objects_become_keras_serialized_configs():
    spec = spec_of(BASE.replace("{filters: 2, kernel_size: 3}",
                                "{filters: 2, kernel_size: 3, kernel_regularizer: {L2: {l2: 0.0005}}, "
                                "kernel_initializer: HeNormal}"))
    conv = build.build_model(spec).layers[0]
    assert isinstance(conv.kernel_regularizer, keras.regularizers.L2)
    assert conv.kernel_regularizer.l2 == pytest.approx(0.0005)
    assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)


def test_schedule_in_epochs_becomes_steps():
    spec = spec_of(BASE + "compile:\n  optimizer:\n    SGD:\n      momentum: 0.9\n      learning_rate:\n"
                          "        CosineDecay: {initial_learning_rate: 0.1, decay_steps: '3 epochs'}\n")
    optimizer = build.build_optimizer(spec, steps_per_epoch=50)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer._learning_rate.decay_steps == 150


def test_weight_decay_and_label_smoothing():
    spec = spec_of(BASE + "compile:\n  optimizer: {AdamW: {weight_decay: 0.0005}}\n  label_smoothing: 0.1\n")
    assert build.build_optimizer(spec).weight_decay == pytest.approx(0.0005)
    loss = build.build_loss(spec)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.label_smoothing == pytest.approx(0.1)
    assert build.uses_one_hot(spec)
    assert not build.uses_one_hot(spec_of(BASE))


def test_callbacks_inherit_the_monitor():
    spec = spec_of(BASE + "fit:\n  monitor: val_accuracy\n  callbacks:\n    - EarlyStopping: {patience: 3}\n"
                          "    - ReduceLROnPlateau\n")
    early, plateau = build.build_callbacks(spec)
    assert (early.monitor, early.patience, early.mode) == ("val_accuracy", 3, "max")
    assert plateau.monitor == "val_accuracy"


BROKEN = [
    ("unknown argument", BASE.replace("filters: 2", "filter: 2"), "model",
     "spec.yaml:5:16: Conv2D has no argument 'filter'\n  hint: did you mean 'filters'? See the arguments "
     "of keras.layers.Conv2D."),
    ("bad argument value", BASE.replace("filters: 2", "filters: -2"), "model",
     "spec.yaml:5:7: Conv2D: Invalid value for argument `filters`. Expected a strictly positive value. "
     "Received filters=-2.\n  hint: see the documentation of keras.layers.Conv2D"),
    ("missing argument", BASE.replace("- Dense: {units: 10, activation: softmax}", "- Dense"), "model",
     "spec.yaml:7:7: Dense: Dense missing 1 required positional argument: 'units'\n"
     "  hint: Dense needs: units, e.g. '- Dense: {units: ...}'"),
    ("output shrinks to nothing", BASE.replace("kernel_size: 3", "kernel_size: 9"), "model",
     "spec.yaml:5:7: Conv2D cannot take its input of shape (batch, 8, 8, 1): Computed output size would be "
     "zero or negative. Received `inputs shape=(None, 8, 8, 1)`, `kernel shape=(9, 9, 1, 2)`, "
     "`dilation_rate=[1 1]`, `strides=(1, 1)`, `padding=valid`.\n  hint: the output shrank too far or has "
     "the wrong rank: check strides, kernel sizes, padding and pooling above (cnntrain summary shows every shape)"),
    ("unknown optimizer name", BASE + "compile: {optimizer: adamm}\n", "optimizer",
     "spec.yaml:8:22: unknown optimizer 'adamm'\n  hint: did you mean 'adam'? Use a name known to "
     "keras.optimizers.get() or {ClassName: {arguments}}"),
    ("unknown optimizer class", BASE + "compile:\n  optimizer: {Adamm: {learning_rate: 0.1}}\n", "optimizer",
     "spec.yaml:9:15: unknown optimizer 'Adamm'\n  hint: did you mean 'Adam'? Optimizer names are "
     "keras.optimizers class names (case matters)."),
    ("unknown schedule", BASE + "compile:\n  optimizer: {SGD: {learning_rate: {Cosine: {}}}}\n", "optimizer",
     "spec.yaml:9:37: unknown learning-rate schedule 'Cosine'\n  hint: did you mean 'CosineDecay'? "
     "Learning-rate schedule names are keras.optimizers.schedules class names (case matters)."),
    ("unknown loss", BASE + "compile: {loss: crossentropy}\n", "loss",
     "spec.yaml:8:17: unknown loss 'crossentropy'\n  hint: did you mean 'binary_crossentropy'? Use a name known to keras.losses.get() "
     "or {ClassName: {arguments}}"),
    ("smoothing with a wrong loss", BASE + "compile: {loss: mse, label_smoothing: 0.1}\n", "loss",
     "spec.yaml:8:39: label_smoothing needs a categorical crossentropy loss, received loss: mse\n"
     "  hint: set compile.loss: categorical_crossentropy, or label_smoothing: 0"),
    ("unknown callback", BASE + "fit:\n  callbacks: [EarlyStop]\n", "callbacks",
     "spec.yaml:9:15: unknown callback 'EarlyStop'\n  hint: did you mean 'EarlyStopping'? Callback names are "
     "keras.callbacks class names (case matters)."),
]


@pytest.mark.parametrize("name,text,what,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_entries_give_exact_messages(name, text, what, message):
    assert build_error(text, what) == message


LAYER_TYPOS = [
    ("layer typo", BASE.replace("Conv2D", "Conv2d"), "model",
     "spec.yaml:5:7: unknown layer 'Conv2d'\n  hint: did you mean 'Conv2D'? Layer names are keras.layers "
     "class names or keras.applications model names (case matters)."),
    ("unknown layer", BASE.replace("Flatten", "Flattenizer"), "model",
     "spec.yaml:6:7: unknown layer 'Flattenizer'\n  hint: did you mean 'Flatten'? Layer names are "
     "keras.layers class names or keras.applications model names (case matters)."),
    ("augment layer typo", BASE + "augment:\n  - RandomFlipp: {mode: horizontal}\n", "augment",
     "spec.yaml:9:5: unknown layer 'RandomFlipp'\n  hint: did you mean 'RandomFlip'? Layer names are "
     "keras.layers class names (case matters)."),
    ("a name of keras.layers that is no layer", BASE.replace("Flatten", "InputSpec"), "model",
     "spec.yaml:6:7: unknown layer 'InputSpec'\n  hint: did you mean 'InputLayer'? Layer names are "
     "keras.layers class names or keras.applications model names (case matters)."),
]


@pytest.mark.parametrize("name,text,what,message", LAYER_TYPOS, ids=[t[0] for t in LAYER_TYPOS])
def test_a_layer_name_is_checked_when_the_spec_is_read_and_again_by_the_builder(name, text, what, message,
                                                                                monkeypatch):
    """Read from Keras' files, the names are known before Keras is imported (spec.keras_names); where
    those files cannot be read, the builder looks the names up in keras.layers: the same message."""
    with pytest.raises(SpecError) as info:
        spec_of(text)
    assert str(info.value) == message
    monkeypatch.setattr(keras_names, "layer_names", lambda: None)
    assert build_error(text, what) == message


def test_the_layer_names_read_from_keras_files_are_those_keras_has():
    """What spec.keras_names reads without importing Keras equals what the builder finds in it."""
    assert keras_names.layer_names() == sorted(build._public_classes(keras.layers, keras.layers.Layer))
    assert keras_names.application_names() == backbones.names()


def test_output_must_match_the_classes():
    spec = spec_of(BASE.replace("units: 10", "units: 3"))
    model = build.build_model(spec)
    with pytest.raises(SpecError) as info:
        build.check_output(spec, model, 10)
    assert str(info.value) == ("spec.yaml:7:7: the model's output has 3 units but the data has 10 classes\n"
                               "  hint: set units: 10 on the last Dense layer")


@pytest.mark.parametrize("config,epochs,warmup,decay", [("mnist.yaml", 1, 0, 422), ("mnist.yaml", 8, 0, 8 * 422),
                                                       ("cifar10.yaml", 2, 352, 352), ("cifar10.yaml", 15, 352, 14 * 352)])
def test_shipped_schedules_follow_the_run_length(config, epochs, warmup, decay):
    # 54,000 MNIST / 45,000 CIFAR-10 training images in batches of 128: 422 / 352 steps an epoch
    spec = load_spec(CONFIGS / config, [f"fit.epochs={epochs}"])
    schedule = build.build_optimizer(spec, steps_per_epoch=422 if config == "mnist.yaml" else 352)._learning_rate
    assert (schedule.warmup_steps, schedule.decay_steps) == (warmup, decay)


def test_schedule_steps_in_a_form_not_understood():
    spec = spec_of(BASE + "compile:\n  optimizer:\n    SGD:\n      learning_rate:\n"
                          "        CosineDecay: {initial_learning_rate: 0.1, decay_steps: 'all but 1 epoch'}\n")
    with pytest.raises(SpecError) as info:
        build.build_optimizer(spec, steps_per_epoch=50)
    assert str(info.value) == (
        "spec.yaml:12:64: decay_steps must be a number of steps, 'N epochs', 'all' or 'all - N epochs', received: "
        "'all but 1 epoch'\n  hint: e.g. decay_steps: all (the whole run, which follows --epochs), "
        "or warmup_steps: '1 epochs'")
