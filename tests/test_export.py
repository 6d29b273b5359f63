"""cnntrain export and the exported files in predict and evaluate, on two tiny trained models:

- "scale": 8x8 grayscale, Rescaling(1/255) at the front, data set an image folder of PNGs;
- "standardize": 8x8 RGB, a Normalization layer adapted to the training images (what
  `normalize: standardize` builds), data set image_folder (PNG files).

Every format and quantization is exported once per model (module-scoped) and shared by the tests.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from cnntrain.backend import keras
from cnntrain.commands.export import report_lines
from cnntrain.data import load_dataset
from cnntrain.export import check, formats
from cnntrain.loading import runners
from cnntrain.loading.resolve import resolve
from cnntrain.model.normalization import normalization_layer
from cnntrain.runs.model_file import load_model, save_model
from helpers.cli import run_cli as run
from helpers.models import CLASSES, metadata, part_trained, synthetic

EXPORTS = [("savedmodel", "none"), ("onnx", "none"), ("tflite", "none"), ("tflite", "dynamic"),
           ("tflite", "float16"), ("tflite", "int8")]
RGB_NAMES = [f"c{i}" for i in range(CLASSES)]
HINT = "  hint: give a model written by 'cnntrain export', or a run's model.keras\n"


def rgb(x):
    """Three different channels from the grayscale task: the bright block stays learnable in each."""
    return np.concatenate([x, 255 - x, x // 2], axis=-1).astype(np.uint8)


def save_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(array)
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, "L" if a.shape[-1] == 1 else "RGB").save(path)
    return path


@pytest.fixture(scope="module")
def scale(tmp_path_factory):
    """(model file, Keras model, test images, test labels): the grayscale model on a folder of PNGs
    (8x8 images are not MNIST, which cnntrain checks)."""
    root = tmp_path_factory.mktemp("scale")
    (x_train, y_train), (x_test, y_test) = synthetic(400, 1), synthetic(200, 2)
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (a, label) in enumerate(zip(xs, ys)):
            save_png(a, root / "images" / split / str(label) / f"{i:04d}.png")
    data = load_dataset("image_folder", path=str(root / "images"), color_mode="grayscale")
    model = part_trained(2)
    path = root / "model.keras"
    save_model(model, path, metadata(dataset="image_folder", data_path=str(root / "images"), color_mode="grayscale"))
    return path, model, data.x_test, data.y_test


@pytest.fixture(scope="module")
def standardize(tmp_path_factory):
    """The same for the RGB model whose front layer is an adapted Normalization."""
    root = tmp_path_factory.mktemp("standardize")
    (x_train, y_train), (x_test, y_test) = synthetic(300, 3), synthetic(100, 4)
    x_train, x_test = rgb(x_train), rgb(x_test)
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (a, label) in enumerate(zip(xs, ys)):
            save_png(a, root / "images" / split / RGB_NAMES[label] / f"{i:04d}.png")
    data = load_dataset("image_folder", path=str(root / "images"))   # the test images in the order read
    assert data.class_names == RGB_NAMES
    x_test, y_test = data.x_test, data.y_test
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 3)), normalization_layer("standardize", x_train),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x_train.astype("float32"), y_train, epochs=1, batch_size=32, verbose=0)
    path = root / "model.keras"
    save_model(model, path, metadata(RGB_NAMES, input_shape=[8, 8, 3], normalize="standardize",
                                          dataset="image_folder", data_path=str(root / "images"), color_mode="rgb"))
    return path, model, x_test, y_test


@pytest.fixture(scope="module")
def exported(scale, standardize):
    """{(model kind, format, quantize): (CliRunner result, export folder, export.json)} for every export."""
    done = {}
    for kind, (path, *_rest) in (("scale", scale), ("standardize", standardize)):
        for fmt, quantize in EXPORTS:
            folder = path.parent / "export" / (fmt if quantize == "none" else f"{fmt}-{quantize}")
            result = run("export", path, "--format", fmt, "--quantize", quantize)
            done[kind, fmt, quantize] = result, folder, json.loads((folder / "export.json").read_text())
    return done


def load_file(path):
    """The runner of an exported file these tests wrote (a SavedModel is loaded only when trusted)."""
    return runners.load(resolve(path), unsafe=True)


def exported_file(folder, fmt):
    return folder if fmt == "savedmodel" else folder / formats.FILE_NAMES[fmt]


@pytest.mark.parametrize("kind", ["scale", "standardize"])
@pytest.mark.parametrize("fmt,quantize", EXPORTS)
def test_every_export_checks_itself(kind, fmt, quantize, exported, scale, standardize):
    result, folder, record = exported[kind, fmt, quantize]
    path, model, x_test, y_test = scale if kind == "scale" else standardize
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout == "\n".join(report_lines(record)) + "\n"
    what = fmt if quantize == "none" else f"{fmt} {quantize}"
    file = exported_file(folder, fmt)
    assert result.stdout.splitlines()[0] == f"{what}: {file}"
    source = f"test split of image_folder ({path.parent / 'images'})"
    assert result.stdout.splitlines()[2] == f"  checked on {len(x_test)} images, the {source}"

    # The figures are what the two models give on the test images, recomputed here.
    keras_p = model.predict(x_test.astype(np.float32), verbose=0)
    runner = load_file(file)
    got = runner.predict(x_test)
    assert record["check"] == {"source": source, **check.compare(runners.KerasRunner(path).predict(x_test), got, y_test)}
    assert record["check"]["keras_accuracy"] == float(np.mean(keras_p.argmax(1) == y_test))
    assert record["passed"] is True and record["failures"] == []
    assert record["tolerance"] == check.TOLERANCES[fmt, quantize]
    assert record["size_bytes"] == formats.size_of(file, skip=("cnntrain.json", "export.json", ".cnntrain-export",
                                                               ".lock")) > 0
    assert record["keras_size_bytes"] == path.stat().st_size
    assert record["latency_ms"]["exported"] > 0 and record["latency_ms"]["runs"] == check.LATENCY_RUNS
    assert runner.class_names == (RGB_NAMES if kind == "standardize" else [str(i) for i in range(CLASSES)])
    assert runner.input_shape == (None, 8, 8, 3 if kind == "standardize" else 1)
    if quantize == "none":   # the same arithmetic: float rounding only
        assert record["check"]["agreement"] == 1.0
        assert np.abs(got - keras_p).max() < 1e-5
    if quantize == "int8":
        split = "train split of " + source.split("split of ", 1)[1]
        assert record["representative"] == {"images": 300, "from": split}
        assert f"  calibrated on 300 images of the {split}" in result.stdout.splitlines()
    else:
        assert record["representative"] is None


def test_exported_metadata_and_file_sizes(exported, standardize):
    _result, folder, _record = exported["standardize", "onnx", "none"]
    meta = json.loads((folder / "cnntrain.json").read_text())
    assert meta["class_names"] == RGB_NAMES and meta["input_shape"] == [8, 8, 3]
    assert meta["format"] == "onnx" and meta["quantize"] == "none" and meta["normalize"] == "standardize"
    assert meta["source_model"] == str(standardize[0])
    assert meta["input"] == {"name": "image", "dtype": "float32", "range": [0, 255], "shape": [None, 8, 8, 3]}
    # ONNX keeps the same metadata inside the file, and the image is its only input:
    # the Normalization was folded into a Rescaling.
    runner = runners.OnnxRunner(folder / "model.onnx")
    assert json.loads(runner.session.get_modelmeta().custom_metadata_map["cnntrain"]) == meta
    assert [i.name for i in runner.session.get_inputs()] == ["image"]
    sizes = {q: exported["scale", "tflite", q][2]["size_bytes"] for q in ("none", "dynamic", "float16", "int8")}
    assert sizes["dynamic"] < sizes["float16"] < sizes["none"] and sizes["int8"] < sizes["none"]


def test_folded_normalization_equals_the_layer():
    x = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3)).astype(np.float32)
    layer = normalization_layer("standardize", rgb(synthetic(50, 0)[0]))
    folded = formats.folded_rescaling(layer)
    assert np.abs(np.asarray(folded(x)) - np.asarray(layer(x))).max() < 1e-5


def test_a_reloaded_model_exports_to_onnx(standardize, tmp_path):
    """load_model gives a model that was never called; plain model.export(format="onnx") refuses it."""
    path, _model, x_test, _ = standardize
    model, _ = load_model(path)
    onnx_file = formats.write(formats.prepare(model), "onnx", "none", tmp_path, (8, 8, 3))
    got = runners.OnnxRunner(onnx_file).predict(x_test)
    assert np.abs(got - model.predict(x_test.astype(np.float32), verbose=0)).max() < 1e-5


def test_a_mixed_precision_model_exports_in_float32(scale, tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = part_trained(5)
    finally:
        keras.config.set_dtype_policy("float32")
    path = tmp_path / "mixed.keras"
    save_model(model, path, metadata(dataset="image_folder", data_path=str(scale[0].parent / "images"),
                                     color_mode="grayscale"))
    result = run("export", path, "--format", "onnx")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "export" / "mixed-onnx" / "export.json").read_text())
    assert record["keras_compute_dtype"] == "bfloat16"
    assert record["tolerance"] == check.TOLERANCES["tflite", "float16"]
    assert ("  note       the .keras model computes in bfloat16 (mixed precision), the export in float32: held to "
            "the float16 bounds") in result.stdout.splitlines()
    float32 = formats.prepare(load_model(path)[0]).predict(scale[2].astype(np.float32), verbose=0)
    got = load_file(record["file"]).predict(scale[2])
    assert np.abs(got - float32).max() < 1e-5


def test_predict_and_evaluate_take_exported_files(exported, scale, tmp_path):
    path, model, x_test, y_test = scale
    files = [save_png(x_test[i], tmp_path / f"{i}.png") for i in range(4)]
    for fmt, quantize in (("savedmodel", "none"), ("onnx", "none"), ("tflite", "int8")):
        _result, folder, record = exported["scale", fmt, quantize]
        expected = load_file(exported_file(folder, fmt)).predict(x_test[:4])
        for target in {folder, exported_file(folder, fmt)}:
            trust = ["--unsafe"] if fmt == "savedmodel" else []   # a SavedModel is a program
            result = run("predict", *files, "--model", target, "--top-k", CLASSES, "--json", *trust)
            assert result.exit_code == 0, result.output
            rows = json.loads(result.stdout)["predictions"]
            assert [r["file"] for r in rows] == [str(f) for f in files]
            got = np.array([[{t["class"]: t["probability"] for t in r["top"]}[str(c)] for c in range(CLASSES)]
                            for r in rows])
            assert np.abs(got - expected).max() < 1e-6
        result = run("evaluate", exported_file(folder, fmt), "--json", *trust)
        assert result.exit_code == 0, result.output
        figures = json.loads(result.stdout)
        assert figures["accuracy"] == record["check"]["accuracy"] and figures["samples"] == len(y_test)


def test_check_images_folder_with_and_without_labels(standardize, tmp_path):
    path, model, x_test, y_test = standardize
    labelled, flat = tmp_path / "labelled", tmp_path / "flat"
    for i in range(40):
        save_png(x_test[i], labelled / RGB_NAMES[y_test[i]] / f"{i}.png")
        save_png(x_test[i], flat / f"{i}.png")
    keras_p = model.predict(x_test[:40].astype(np.float32), verbose=0)
    out = tmp_path / "out"
    result = run("export", path, "--format", "tflite", "--check-images", labelled, "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "export.json").read_text())
    assert record["check"]["source"] == f"image files under {labelled}" and record["check"]["images"] == 40
    assert record["check"]["keras_accuracy"] == float(np.mean(keras_p.argmax(1) == y_test[:40]))
    result = run("export", path, "--format", "tflite", "--check-images", flat, "--out", out)   # replaces it
    assert result.exit_code == 0, result.output
    record = json.loads((out / "export.json").read_text())
    assert record["check"]["accuracy"] is None and record["check"]["agreement"] == 1.0
    assert not any(line.startswith("  accuracy") for line in result.stdout.splitlines())
    assert sorted(p.name for p in out.iterdir()) == [".cnntrain-export", ".lock", "cnntrain.json", "export.json",
                                                     "model.tflite"]


def test_check_images_are_read_as_predict_reads_them(tmp_path):
    """A model trained with data.resize: pad meets wide photos padded, as predict gives them to it,
    not stretched. The model here tells a plain white image ('bright', mean pixel 255) from one
    whose upper and lower quarters are black bands ('padded', mean 127.5): what a 16x8 white
    photo becomes, padded to 8x8."""
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.layers[-1].set_weights([np.array([[-0.1, 0.1]], np.float32), np.array([19.1, -19.1], np.float32)])
    path = tmp_path / "model.keras"
    save_model(model, path, metadata(["padded", "bright"], resize="pad", background=None, dataset="image_folder",
                                     color_mode="grayscale"))
    photos = tmp_path / "photos"
    for i in range(3):
        save_png(np.full((8, 16, 1), 255, np.uint8), photos / "padded" / f"{i}.png")
    predicted = run("predict", photos, "--model", path, "--json", "--top-k", 1)
    assert predicted.exit_code == 0, predicted.output
    assert [row["top"][0]["class"] for row in json.loads(predicted.stdout)["predictions"]] == ["padded"] * 3
    result = run("export", path, "--format", "onnx", "--check-images", photos, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "out" / "export.json").read_text())["check"]
    assert (figures["images"], figures["keras_accuracy"], figures["accuracy"]) == (3, 1.0, 1.0)


def test_past_the_tolerance_exits_1(scale, monkeypatch, tmp_path):
    path = scale[0]
    monkeypatch.setitem(check.TOLERANCES, ("onnx", "none"), {"min_agreement": 1.0, "max_diff": 0.0,
                                                           "max_accuracy_drop": 0.0})
    out = tmp_path / "onnx"
    result = run("export", path, "--format", "onnx", "--out", out)
    record = json.loads((out / "export.json").read_text())
    diff = record["check"]["max_abs_diff"]
    assert diff > 0 and record["passed"] is False
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].endswith(": OUTSIDE")
    assert result.stderr == (f"{out / 'model.onnx'}: the exported model is outside its tolerance: max probability "
                             f"difference {diff:.3g} is above 0\n  hint: the files are kept for a look and export.json "
                             "holds the figures; check the model with 'cnntrain predict --model' or export without "
                             "quantization\n")


def test_broken_and_foreign_files_given_to_predict(scale, standardize, tmp_path):
    image = save_png(scale[2][0], tmp_path / "digit.png")
    (tmp_path / "notes.tflite").write_text("not a model\n")
    (tmp_path / "model.onnx").write_bytes(scale[0].read_bytes())          # a .keras zip renamed
    # Foreign files: real models cnntrain cannot feed an image alone.
    raw = tmp_path / "raw"
    raw.mkdir()
    standardize[1].export(str(raw / "three-inputs.onnx"), format="onnx", verbose=False)   # Normalization not folded
    names = [i.name for i in onnx.load(str(raw / "three-inputs.onnx")).graph.input]
    assert len(names) == 3 and names[0].startswith("keras_tensor") and all("/standardize" in n for n in names[1:])
    inputs = ", ".join(names)   # the image, and the Normalization's mean and variance
    vector = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    vector.export(str(raw / "vector.tflite"), format="litert", verbose=False)
    cases = {
        tmp_path / "notes.tflite": "not a readable TFLite model file (The model is not a valid Flatbuffer buffer)\n" + HINT,
        tmp_path / "model.onnx": "not a readable ONNX model file (Protobuf parsing failed.)\n" + HINT,
        raw / "three-inputs.onnx": f"the ONNX model takes 3 inputs ({inputs}); cnntrain runs models that take the "
                                   "image alone\n  hint: export the .keras model with 'cnntrain export --format "
                                   "onnx', which folds the normalization into the graph\n",
        raw / "vector.tflite": "the model takes inputs shaped (5,); cnntrain runs image classifiers that take (height, "
                               "width, 1 or 3 channels)\n  hint: export the model with 'cnntrain export', or give a "
                               ".keras model\n",
        tmp_path / "missing.onnx": "model file not found\n",
    }
    for model_file, message in cases.items():
        result = run("predict", image, "--model", model_file)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"{model_file}: {message}"), model_file


def test_missing_runtime_names_the_extra(exported, scale, monkeypatch, tmp_path):
    image = save_png(scale[2][0], tmp_path / "digit.png")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    onnx_file = exported["scale", "onnx", "none"][1] / "model.onnx"
    result = run("predict", image, "--model", onnx_file)
    assert (result.exit_code, result.stderr) == (1, "error: running an .onnx model needs the optional package "
                                                    "onnxruntime\n  hint: pip install 'cnntrain[export]'\n")
    result = run("export", scale[0], "--format", "onnx", "--out", tmp_path / "out")
    assert (result.exit_code, result.stderr) == (1, "error: ONNX export needs the optional package tf2onnx\n"
                                                    "  hint: pip install 'cnntrain[export]'\n")
    assert not (tmp_path / "out").exists()


def test_tflite_runs_on_tf_lite_without_ai_edge_litert(exported, scale, monkeypatch):
    file = exported["scale", "tflite", "int8"][1] / "model.tflite"
    expected = runners.TFLiteRunner(file).predict(scale[2])
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = runners.TFLiteRunner(file)
    assert "tensorflow" in type(fallback.interpreter).__module__
    assert np.abs(fallback.predict(scale[2]) - expected).max() < 1e-6


def test_option_and_target_errors(scale, exported, tmp_path):
    path = scale[0]
    result = run("export", path, "--format", "onnx", "--quantize", "int8")
    assert (result.exit_code, result.stderr) == (1, "error: --quantize int8 applies to --format tflite only\n"
                                                    "  hint: onnx is exported in float32; leave --quantize out, or "
                                                    "export tflite\n")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = run("export", path, "--format", "tflite", "--out", busy)
    assert (result.exit_code, result.stderr) == (1, f"{busy}: --out is a folder that holds other files and no "
                                                    "earlier export (it holds keep.txt); an export writes only into a "
                                                    "new or empty folder or over an earlier export, so that it never "
                                                    f"deletes your files\n  hint: choose a new folder, e.g. --out "
                                                    f"{busy / 'export'} (created for you)\n")
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    onnx_file = exported["scale", "onnx", "none"][1] / "model.onnx"
    result = run("export", onnx_file, "--format", "tflite")
    assert (result.exit_code, result.stderr) == (1, f"{onnx_file}: is an ONNX model; export needs a Keras model, given "
                                                    "as a run folder or a .keras file\n  hint: give the .keras model "
                                                    f"it was exported from: {path}\n")
    plain = tmp_path / "plain.keras"
    scale[1].save(plain)
    result = run("export", plain, "--format", "tflite")
    assert (result.exit_code, result.stderr) == (1, f"{plain}: cannot check the export: the model file does not say "
                                                    "which data set it was trained on\n  hint: give images to check "
                                                    "it on with --check-images DIR\n")


def test_export_help_answers_without_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from cnntrain.cli import cli;"
            "r = CliRunner().invoke(cli, ['export', '--help']); print(r.exit_code, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0 False"


def test_int8_tflite_gives_real_probabilities(exported, scale):
    # The int8 softmax holds steps of 1/256 (a confident class read 0.9961, the next ones 0 in an
    # arbitrary order): the runner takes the softmax of its dequantized logits instead.
    _path, model, x_test, _y = scale
    got = load_file(exported["scale", "tflite", "int8"][1] / "model.tflite").predict(x_test)
    keras_p = model.predict(x_test.astype(np.float32), verbose=0)
    assert not np.allclose(got * 256, np.round(got * 256), atol=1e-4)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)
    assert np.abs(got - keras_p).max() < 0.05


PTY_80 = """
import fcntl, struct, sys, termios
from cnntrain.cli import cli
fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 60, 80, 0, 0))
cli.main(sys.argv[1:], standalone_mode=False)
"""


def test_the_report_fits_an_80_column_terminal(scale, tmp_path):
    """TFLite's tolerance line is 81 characters: the terminal broke it at 'accuracy drop <' / '= 0.1'."""
    from helpers import terminal

    text = terminal.run_in_pty(PTY_80, ["export", scale[0], "--format", "tflite", "--out", tmp_path / "t"])
    lines = text.splitlines()
    assert max(len(line) for line in lines if len(line.split()) > 1) <= 80, text
    at = next(i for i, line in enumerate(lines) if line.startswith("  tolerance  "))
    assert lines[at:at + 2] == ["  tolerance  top-1 agreement >= 99.9%, max difference <= 0.0001, accuracy drop",
                                "    <= 0.1 points: OK"]
