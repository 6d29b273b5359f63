"""Spec loading, defaults, validation and overrides: no TensorFlow involved."""

import pytest

from cnntrain.errors import SpecError
from helpers.cli import modules_after

from cnntrain.spec import DEFAULTS, load_spec, spec_from_text
from helpers.specs import TINY_MODEL, spec_of

GOOD = TINY_MODEL


load = spec_of


def error_of(text, overrides=()):
    with pytest.raises(SpecError) as info:
        load(text, overrides)
    return str(info.value)


def test_defaults_fill_every_section():
    spec = load(GOOD)
    assert list(spec.values) == list(DEFAULTS)
    assert spec["fit"]["batch_size"] == 128
    assert spec["data"]["validation_split"] == 0.1
    assert spec["preprocess"]["normalize"] == "scale"
    assert spec["model"]["layers"][1] == "Flatten"


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my-model.yaml"
    path.write_text(GOOD.replace("name: tiny\n", ""))
    assert load_spec(path)["name"] == "my-model"


def test_marks_point_at_values_and_keys():
    spec = load(GOOD)
    assert spec.where(("model", "layers", 1)) == {"file": "spec.yaml", "line": 6, "column": 7}
    assert spec.where(("model", "input_shape"), key=True) == {"file": "spec.yaml", "line": 3, "column": 3}
    assert spec.where(("fit", "epochs")) == {"file": "spec.yaml"}


def test_overrides_set_values_parsed_as_yaml():
    spec = load(GOOD, ["fit.epochs=3", "compile.optimizer={Adam: {learning_rate: 0.01}}",
                       "model.layers.0.Conv2D.filters=4"])
    assert spec["fit"]["epochs"] == 3
    assert spec["compile"]["optimizer"] == {"Adam": {"learning_rate": 0.01}}
    assert spec["model"]["layers"][0] == {"Conv2D": {"filters": 4, "kernel_size": 3}}
    assert spec.where(("fit", "epochs")) == {"file": "--set fit.epochs=3"}


def test_override_creates_missing_mappings():
    spec = load(GOOD, ["compile.optimizer.SGD.momentum=0.9"])
    assert spec["compile"]["optimizer"] == {"SGD": {"momentum": 0.9}}


def test_resolved_spec_round_trips():
    spec = load(GOOD, ["fit.epochs=2"])
    again = spec_from_text(spec.to_yaml(), file="again.yaml")
    assert again.values == spec.values


def test_numbers_and_booleans_are_read_by_yaml_1_2():
    """PyYAML's YAML 1.1 read `2e-3` as a string (fit then died with 'internal error: TypeError'),
    `1:30` as 90 and `yes` as true; the YAML 1.2 core schema reads them as people mean them."""
    spec = load(GOOD + "compile: {optimizer: {Adam: {learning_rate: {CosineDecay: "
                       "{initial_learning_rate: 2e-3, decay_steps: 5e4}}, epsilon: 1E-4}}}\n"
                       "fit: {epochs: 010, callbacks: [{EarlyStopping: {patience: 0x3, min_delta: -1.5e+0}}]}\n")
    adam = spec["compile"]["optimizer"]["Adam"]
    assert adam == {"learning_rate": {"CosineDecay": {"initial_learning_rate": 0.002, "decay_steps": 50000.0}},
                    "epsilon": 0.0001}
    assert spec["fit"]["epochs"] == 10          # decimal, not YAML 1.1's octal 8
    assert spec["fit"]["callbacks"] == [{"EarlyStopping": {"patience": 3, "min_delta": -1.5}}]
    assert load(GOOD, ["compile.optimizer.Adam.learning_rate=1e-3"])["compile"]["optimizer"] == \
        {"Adam": {"learning_rate": 0.001}}
    assert error_of(GOOD + "fit: {batch_size: 1:30}\n") == \
        "spec.yaml:8:19: 'fit.batch_size' must be an integer >= 1, received: '1:30' (str)"
    assert error_of(GOOD + "fit: {tensorboard: yes}\n") == \
        "spec.yaml:8:20: 'fit.tensorboard' must be true or false, received: 'yes' (str)"
    assert error_of(GOOD + "fit: {tensorboard: on}\n") == \
        "spec.yaml:8:20: 'fit.tensorboard' must be true or false, received: 'on' (str)"


def test_text_that_yaml_1_1_reads_otherwise_stays_text_in_spec_yaml():
    import yaml

    spec = load(GOOD.replace("name: tiny", "name: '1e3'") + "fit: {monitor: 'yes'}\n")
    text = spec.to_yaml()
    assert "name: '1e3'" in text and "monitor: 'yes'" in text
    assert spec_from_text(text).values == spec.values
    assert yaml.safe_load(text)["fit"]["monitor"] == "yes"     # and any YAML 1.1 tool reads it the same


def test_import_does_not_load_tensorflow():
    assert modules_after("import cnntrain.spec, cnntrain.cli") == []


BROKEN = [
    # (name, spec text, overrides, exact message)
    ("syntax error", "model:\n  layers: [Conv2D\n", (),
     "spec.yaml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>'\n"
     "  hint: check the indentation and the ':' after each key on this line or the one above"),
    ("tab indentation", "model:\n\tlayers: []\n", (),
     "spec.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token\n"
     "  hint: check the indentation and the ':' after each key on this line or the one above"),
    ("unknown top key", GOOD + "fitt: {epochs: 2}\n", (),
     "spec.yaml:8:1: unknown key 'fitt' at the top level\n  hint: did you mean 'fit'?"),
    ("unknown nested key", GOOD + "fit:\n  epoch: 2\n", (),
     "spec.yaml:9:3: unknown key 'epoch' in 'fit'\n  hint: did you mean 'epochs'?"),
    ("wrong type", GOOD + "fit:\n  epochs: ten\n", (),
     "spec.yaml:9:11: 'fit.epochs' must be an integer >= 1, received: 'ten' (str)"),
    ("bad choice", GOOD + "preprocess:\n  normalize: standardise\n", (),
     "spec.yaml:9:14: 'preprocess.normalize' must be one of none, scale, standardize, received: "
     "'standardise' (str)\n  hint: did you mean 'standardize'?"),
    ("bad fraction", GOOD + "data:\n  validation_split: 1.5\n", (),
     "spec.yaml:9:21: 'data.validation_split' must be a number in [0.0, 1.0), received: 1.5 (float)"),
    ("section not a mapping", GOOD + "fit: 3\n", (),
     "spec.yaml:8:6: 'fit' must be a mapping, received: 3 (int)\n  hint: write its keys indented below 'fit:'"),
    ("layer entry with two keys", "model:\n  layers:\n    - Conv2D: {filters: 2}\n      Flatten: null\n", (),
     "spec.yaml:3:7: item 1 of 'model.layers' must be a class name or {ClassName: arguments}, received: "
     "{'Conv2D': {'filters': 2}, 'Flatten': None} (dict)\n  hint: e.g. '- Flatten' or "
     "'- Dense: {units: 10, activation: softmax}'; check the indentation of the arguments"),
    ("no layers", "model:\n  input_shape: [8, 8, 1]\n", (),
     "spec.yaml:2:3: the spec has no model.layers\n  hint: list the model's layers under model.layers, "
     "e.g. '- Conv2D: {filters: 32, kernel_size: 3}'"),
    ("bad input shape", GOOD.replace("[8, 8, 1]", "[8, 8]"), (),
     "spec.yaml:3:16: 'model.input_shape' must be a list of 3 positive integers, received: [8, 8] (list)\n"
     "  hint: e.g. [28, 28, 1]"),
    ("python tag", GOOD + "seed: !!python/object/apply:os.system ['echo hacked']\n", (),
     "spec.yaml:8:7: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed\n"
     "  hint: specs are plain YAML: no tags that build Python objects"),
    ("duplicate key", GOOD + "seed: 1\nseed: 2\n", (),
     "spec.yaml:9:1: duplicate key 'seed'\n  hint: 'seed' is already set above at line 8"),
    ("empty file", "", (), "spec.yaml: the spec is empty\n  hint: a spec needs at least model.layers; "
     "see configs/mnist.yaml"),
    ("not a mapping", "- a\n- b\n", (),
     "spec.yaml:1:1: a spec must be a mapping of sections, received: list\n"
     "  hint: start with keys such as 'model:' and 'fit:'"),
    ("override bad value", GOOD, ("fit.batch_size=-4",),
     "--set fit.batch_size=-4: 'fit.batch_size' must be an integer >= 1, received: -4 (int)"),
    ("override unknown key", GOOD, ("fit.epoch=4",),
     "--set fit.epoch=4: unknown key 'epoch' in 'fit'\n  hint: did you mean 'epochs'?"),
    ("override without =", GOOD, ("fit.epochs",),
     "--set expects KEY=VALUE, received: 'fit.epochs'\n  hint: e.g. --set fit.epochs=3"),
    ("override into a string", GOOD + "compile: {optimizer: adam}\n", ("compile.optimizer.Adam.learning_rate=0.1",),
     "--set compile.optimizer.Adam.learning_rate=0.1: 'compile.optimizer' is 'adam' (str), not a mapping\n"
     "  hint: set the whole value instead: --set compile.optimizer='{...}'"),
    ("image_folder without path", GOOD + "data:\n  dataset: image_folder\n", (),
     "spec.yaml:9:12: data.dataset 'image_folder' needs data.path\n"
     "  hint: set data.path to a folder with one subfolder of images per class"),
]


@pytest.mark.parametrize("name,text,overrides,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_specs_give_exact_messages(name, text, overrides, message):
    assert error_of(text, overrides) == message


def test_billion_laughs_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    message = error_of("\n".join(lines) + "\n")
    assert "nested too deeply or too large" in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert str(info.value) == (f"{tmp_path / 'nope.yaml'}: no such spec file\n"
                               "  hint: give the path of a .yaml spec, e.g. configs/mnist.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a folder, not a spec file"


@pytest.mark.parametrize("override, expected", [
    ("fit.epochs=[1", "--set fit.epochs=[1: the value is not valid YAML (YAML syntax error: expected ',' or ']', "
     "but got '<stream end>')\n  hint: quote strings with special characters"),
    # Not a syntax error: the rule's own hint, told apart by the error's type, not its text.
    ("name=!!python/object:os.system x", "--set name=!!python/object:os.system x: the value is not valid YAML (YAML "
     "tag 'tag:yaml.org,2002:python/object:os.system' is not allowed)\n  hint: specs are plain YAML: no tags that "
     "build Python objects"),
])
def test_a_set_value_that_is_not_yaml_gets_the_hint_of_its_kind(override, expected):
    assert error_of(GOOD, [override]) == expected
