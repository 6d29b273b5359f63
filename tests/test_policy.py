"""What a spec may do without --trust-spec, beyond its callbacks (tests/test_hostile.py): its tracking
store stays inside output.dir, its layers load no file and run no code, ModelCheckpoint's path is
filled in with plain fields only, and a callback's folder inside the run is made for it."""
from __future__ import annotations

import pytest

from helpers.cli import run_cli

from test_hostile import TRUST, at, listener, refused_everywhere, tree, with_callbacks  # noqa: F401 (a fixture)


def with_fit_line(spec, line: str):
    """The tiny spec with `line` under fit: (line 20)."""
    spec.write_text(spec.read_text().replace("  epochs: ", f"  {line}\n  epochs: ", 1))
    assert spec.read_text().splitlines()[19] == f"  {line}"
    return spec


def with_layer(spec, entry: str):
    """The tiny spec with `entry` as its second layer (line 12)."""
    spec.write_text(spec.read_text().replace("    - Activation: relu\n", f"    - {entry}\n", 1))
    assert spec.read_text().splitlines()[11] == f"    - {entry}"
    return spec


# ---------------------------------------------------------------- fit.tracking_uri


def test_a_tracking_server_is_never_reached(tiny_spec, mnist_dir, tmp_path, listener):  # noqa: F811 - the fixture imported above
    url, requests = listener
    spec = with_fit_line(tiny_spec(epochs=1, extra=""), f"tracking_uri: '{url}'")
    spec.write_text(spec.read_text().replace("  batch_size: 32\n", "  batch_size: 32\n  tracking: mlflow\n"))
    where = at(spec, 21, "'" + url)
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{where}: 'fit.tracking_uri' '{url}' is not an SQLite store inside output.dir ('runs'): a "
        "spec writes only there and makes no network request\n  hint: leave it out (the store is then "
        f"sqlite:///runs/mlflow.db), or give sqlite:///runs/NAME.db; {TRUST}\n"))
    assert requests == []


@pytest.mark.parametrize("where", ["absolute", "above", "beside"])
def test_a_tracking_store_outside_the_output_folder_is_refused(tiny_spec, mnist_dir, tmp_path, where):
    uri = {"absolute": f"sqlite:///{tmp_path.parent / 'elsewhere' / 'mlflow.db'}",
           "above": "sqlite:///runs/../../mlflow.db", "beside": "sqlite:///mlflow.db"}[where]
    spec = with_fit_line(tiny_spec(epochs=1), f"tracking_uri: '{uri}'")
    where = at(spec, 20, "'sqlite")
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{where}: 'fit.tracking_uri' '{uri}' is not an SQLite store inside output.dir ('runs'): a "
        "spec writes only there and makes no network request\n  hint: leave it out (the store is then "
        f"sqlite:///runs/mlflow.db), or give sqlite:///runs/NAME.db; {TRUST}\n"))
    assert not (tmp_path.parent / "elsewhere").exists()


def test_a_tracking_store_inside_the_output_folder_is_allowed(tiny_spec):
    checked = run_cli("check", with_fit_line(tiny_spec(epochs=1), "tracking_uri: 'sqlite:///runs/store/mlflow.db'"))
    assert (checked.exit_code, checked.stderr) == (0, "")


# ---------------------------------------------------------------- layers that load files or run code


SAVED_MODEL = "it loads the model stored at its filepath and runs that model's graph"


def layer_refused(spec, mnist_dir, tmp_path, name: str, reason: str, hint: str = "remove it"):
    """check, summary and fit refuse the layer `name` on line 12 with `reason`."""
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{at(spec, 12, name)}: layer '{name}' is not allowed in a spec: {reason}; a spec is data, and layers that "
        f"load files or run code are refused\n  hint: {hint}; {TRUST}\n"))


def test_a_layer_that_loads_a_saved_model_is_refused_before_it_loads(tiny_spec, mnist_dir, tmp_path):
    # A real SavedModel: without the policy, check would load it and run its graph.
    from cnntrain.backend import keras

    saved = tmp_path / "saved"
    keras.Sequential([keras.Input((13, 13, 4)), keras.layers.Identity()]).export(str(saved), verbose=False)
    spec = with_layer(tiny_spec(epochs=1), f"TFSMLayer: {{filepath: '{saved}'}}")
    layer_refused(spec, mnist_dir, tmp_path, "TFSMLayer", SAVED_MODEL)


def test_a_nested_layer_that_loads_a_file_is_refused(tiny_spec, mnist_dir, tmp_path):
    spec = with_layer(tiny_spec(epochs=1), "TimeDistributed: {layer: {TFSMLayer: {filepath: /tmp}}}")
    layer_refused(spec, mnist_dir, tmp_path, "TFSMLayer", SAVED_MODEL)


def test_a_vocabulary_file_is_named_as_such(tiny_spec, mnist_dir, tmp_path):
    spec = with_layer(tiny_spec(epochs=1), "StringLookup: {vocabulary: /etc/hostname}")
    layer_refused(spec, mnist_dir, tmp_path, "StringLookup", "its vocabulary '/etc/hostname' is the path of a file "
                  "that it reads", "give the vocabulary as a list in the spec")


def test_an_augment_layer_that_runs_code_is_refused_by_every_command(tiny_spec, tmp_path):
    spec = tiny_spec(epochs=1, extra="augment:\n  - Lambda: {function: print}\n")
    expected = (f"{at(spec, 24, 'Lambda')}: layer 'Lambda' is not allowed in a spec: it runs Python code (its "
                "'function'); a spec is data, and layers that load files or run code are refused\n"
                f"  hint: remove it; {TRUST}\n")
    for command in ("check", "augment"):
        result = run_cli(command, spec)
        assert (result.exit_code, result.stderr) == (1, expected), command


def test_every_keras_layer_that_takes_a_file_or_code_is_found():
    """The rule finds them by their arguments; these are the ones Keras has today."""
    import inspect

    from cnntrain.backend import keras
    from cnntrain.model.policy import CODE_OR_FILE_ARGUMENTS, FILE_WHEN_TEXT

    found = {name for name in dir(keras.layers) if isinstance(getattr(keras.layers, name), type)
             and set(inspect.signature(getattr(keras.layers, name).__init__).parameters)
             & (set(CODE_OR_FILE_ARGUMENTS) | set(FILE_WHEN_TEXT))}
    assert {"TFSMLayer", "Lambda", "StringLookup", "IntegerLookup", "TextVectorization"} <= found


# ---------------------------------------------------------------- ModelCheckpoint's fields


@pytest.mark.parametrize("filepath, field", [
    ("'{epoch.__doc__[127]}{epoch.__doc__[127]}/{epoch.__doc__[127]}{epoch.__doc__[127]}/escaped-{epoch}.keras'",
     "{epoch.__doc__[127]}"),
    ("'e-{epoch!r}.keras'", "{epoch!r}"),
    ("'e-{0}.keras'", "{0}"),
    ("'e-{epoch:/>9}.keras'", "{epoch:/>9}"),
])
def test_checkpoint_fields_reach_no_attribute_index_or_fill(tiny_spec, mnist_dir, tmp_path, filepath, field):
    spec = with_callbacks(tiny_spec(epochs=1), f"ModelCheckpoint: {{filepath: {filepath}}}")
    path = filepath.strip("'")
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{at(spec, 21, filepath[:4])}: ModelCheckpoint: filepath '{path}' has the field '{field}': only plain "
        "{epoch}, {batch} and metric names are filled in, with at most a number format such as {epoch:02d}\n"
        "  hint: e.g. 'ckpt/epoch-{epoch:02d}-{val_loss:.3f}.keras'\n"))


@pytest.mark.parametrize("filepath, problem, hint", [
    ("e{epoch}/m.keras", "has a field in a folder name: only the file's name may have one", ""),
    ("m-{val_loss:02d}.keras", "cannot be filled in: Unknown format code 'd' for object of type 'float'",
     "{epoch} and {batch} are integers, metrics decimals: use d for the first, f, e or g for the others; "),
])
def test_a_field_in_a_folder_or_of_the_wrong_format_is_refused_before_training(tiny_spec, mnist_dir, tmp_path,
                                                                                 filepath, problem, hint):
    spec = with_callbacks(tiny_spec(epochs=1), f"ModelCheckpoint: {{filepath: '{filepath}'}}")
    where = at(spec, 21, "'" + filepath[:2])
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{where}: ModelCheckpoint: filepath '{filepath}' {problem}\n"
        f"  hint: {hint}e.g. 'ckpt/epoch-{{epoch:02d}}-{{val_loss:.3f}}.keras'\n"))


def test_plain_fields_and_a_log_in_a_folder_write_inside_the_run(tiny_spec, mnist_dir, tmp_path):
    spec = with_callbacks(tiny_spec(epochs=2), "ModelCheckpoint: {filepath: 'ckpt/e{epoch:02d}-{val_loss:.2f}.keras'}",
                          "CSVLogger: {filename: logs/log.csv}")
    before = tree(tmp_path)
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert sorted(p.name[:4] for p in (run / "ckpt").iterdir()) == ["e01-", "e02-"]
    assert (run / "logs" / "log.csv").read_text().splitlines()[0].startswith("epoch,")
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("run")} == before


# ---------------------------------------------------------------- model files


def test_a_model_file_reading_a_vocabulary_elsewhere_is_named_as_such(tmp_path):
    """A .keras whose StringLookup names /etc/hostname was said to hold 'a Lambda layer'."""
    import json
    import zipfile

    from cnntrain.backend import keras

    words = keras.Input((1,), dtype="string")
    keras.Model(words, keras.layers.StringLookup(vocabulary=["a", "b"])(words)).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    (lookup,) = [layer for layer in config["config"]["layers"] if layer["class_name"] == "StringLookup"]
    lookup["config"]["vocabulary"] = "/etc/hostname"
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "lookup.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    result = run_cli("filters", tmp_path / "lookup.keras")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"{tmp_path / 'lookup.keras'}: cannot load the model: a layer in it reads a vocabulary file outside the model "
        "file, which is not read unless you trust it\n  hint: the file names a file elsewhere on this machine; load "
        "it only if you trust it, with --unsafe\n")
