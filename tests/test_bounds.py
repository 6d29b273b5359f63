"""Issue 18, bounded and contained: memory bounded by what the user asked, not by what a file
claims; no hangs on FIFOs; nothing from a file drives the terminal; no silent wrong answers.

The memory cases run `cnntrain` in a fresh process whose address space is capped (RLIMIT_AS),
so a regression fails with a MemoryError instead of exhausting the machine; the FIFO cases run
under an alarm, so a regression fails instead of hanging. Every case asserts the exact message,
exit status 1, and that nothing outside a run folder changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import bombs
from helpers import formats as fx
from helpers.cli import run_cli
from helpers.models import SHAPE
from helpers.models import metadata as tiny_metadata

from cnntrain.data import catalog
from cnntrain.data.lookup import _get_file as real_get_file

REPO = Path(__file__).resolve().parents[1]
CAP = 1 << 30   # far below every bomb here (1.5 to 4.6 GB), far above what cnntrain needs for them
NOT_IT = "  hint: check data.dataset and data.path (your own images are dataset: image_folder)\n"


def capped(*args, timeout=120):
    """`cnntrain ARGS` in a fresh process with at most CAP bytes of address space."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "cnntrain", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limit, timeout=timeout, env=env, cwd=REPO)


def files_under(root) -> dict:
    """Every file under root with its size and modification time: what 'nothing changed' compares."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*")
            if p.is_file() and not p.is_fifo()}


@contextlib.contextmanager
def unchanged(root):
    before = files_under(root)
    yield
    assert files_under(root) == before


@contextlib.contextmanager
def deadline(seconds=30):
    """A TimeoutError if the block takes longer: a blocked open() of a FIFO is interrupted too."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: blocked on a FIFO?")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def write(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def png(seed=0, shape=(8, 8)) -> bytes:
    return fx.image_bytes(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), "PNG")


# ---------------------------------------------------------------- memory: what a file claims


@pytest.mark.parametrize("member, most", [("cnntrain.json", 16 << 20), ("config.json", 64 << 20)])
def test_keras_json_member_that_inflates_to_gigabytes(tmp_path, member, most):
    model = write(tmp_path / "bomb.keras", bombs.keras_file(member, 1536 * bombs.MIB))
    image = write(tmp_path / "digit.png", png())
    assert model.stat().st_size < 2_000_000
    with unchanged(tmp_path):
        done = capped("predict", image, "--model", model)
    assert done.stderr == (f"{model}: member '{member}' inflates to 1,610,612,736 bytes; a .keras file's "
                           f"{member} is at most {most:,}, so this file is corrupt or malicious\n"
                           "  hint: model files are the model.keras / best.keras of a run folder\n")
    assert done.returncode == 1 and done.stdout == ""


def test_archive_member_of_3_gib_named_png(tmp_path):
    archive = write(tmp_path / "data.tar.gz", bombs.tar_gz_with_zeros(
        {"train/a/0.png": png(1), "train/b/0.png": png(2)}, "train/a/1.png", 3 * bombs.GIB))
    assert archive.stat().st_size < 3_500_000
    with unchanged(tmp_path):
        done = capped("data", "verify", "image_folder", "--path", archive)
    assert done.stderr == (f"{archive}: member 'train/a/1.png' is 3,221,225,472 bytes; an image file in a data "
                           "archive is at most 67,108,864, so this is not an image\n"
                           "  hint: remove it from the archive, or shrink the image\n")
    assert done.returncode == 1 and done.stdout == ""


def test_archive_of_many_members_each_under_the_limit(tmp_path):
    archive = write(tmp_path / "data.tar.gz", bombs.tar_gz_with_zeros(
        {"train/a/0.png": png(1), "train/b/0.png": png(2)}, "train/a/1.png", 60 * bombs.MIB, count=6))
    with unchanged(tmp_path):
        done = capped("data", "verify", "image_folder", "--path", archive)
    assert done.stderr == (f"{archive}: member 'train/a/1-4.png': the wanted members come to more than "
                           "268,435,456 bytes, over 64 times the archive's size; refusing what looks like a "
                           "decompression bomb\n"
                           "  hint: if the archive is genuine, extract it and give the folder as data.path\n")
    assert done.returncode == 1


def test_cifar_batch_in_an_archive_over_the_size_of_a_batch(tmp_path):
    archive = write(tmp_path / "cifar-10-python.tar.gz", bombs.tar_gz_with_zeros(
        {}, "cifar-10-batches-py/data_batch_1", 3 * bombs.GIB))
    with unchanged(tmp_path):
        done = capped("data", "verify", "cifar10", "--path", archive)
    assert done.stderr == (f"{archive}: member 'cifar-10-batches-py/data_batch_1': data_batch_1 is "
                           "3,221,225,472 bytes; a CIFAR-10 batch holds at most 31,768,576, so this is not a "
                           "CIFAR-10 python batch\n"
                           "  hint: replace it with the original cifar-10-python.tar.gz from "
                           "https://www.cs.toronto.edu/~kriz/cifar.html\n")
    assert done.returncode == 1


def test_cifar_batch_whose_labels_are_nested_shared_lists(tmp_path):
    members = fx.cifar_members(*fx.cifar_arrays())
    members["data_batch_1"] = bombs.cifar_batch_with_shared_labels(images=5)
    folder = Path(fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", members))
    assert (folder / "data_batch_1").stat().st_size < 70_000
    with unchanged(tmp_path):
        done = capped("data", "verify", "cifar10", "--path", folder)
    assert done.stderr == (f"{folder}/data_batch_1: 'labels' holds a list at index 0; expected a flat list "
                           "of integer class labels, one per image\n")
    assert done.returncode == 1


def test_idx_header_that_claims_3_million_images(tmp_path):
    paths = fx.write_idx_set(tmp_path / "mnist", *fx.mnist_arrays())
    images = write(paths["train-images-idx3-ubyte"], bombs.idx_gz_claiming(3_000_000, zeros=2240 * bombs.MIB))
    with unchanged(tmp_path):
        done = capped("data", "verify", "mnist", "--path", tmp_path / "mnist")
    assert done.stderr == (f"{images}: its header claims 3,000,000 images; mnist has at most 60,000 training "
                           "images, so this is not mnist data\n" + NOT_IT)
    assert done.returncode == 1


def test_npz_header_that_claims_3_million_images(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (3_000_000, 28, 28)})
    labels = io.BytesIO()
    np.save(labels, np.zeros(3, np.uint8))
    npz = write(tmp_path / "mnist.npz", bombs.zip_of({"x_train.npy": header.getvalue(),
                                                      "y_train.npy": labels.getvalue()}))
    with unchanged(tmp_path):
        done = capped("data", "verify", "mnist", "--path", npz)
    assert done.stderr == (f"{npz}: 'x_train' holds 3,000,000 images; mnist has at most 60,000 training "
                           "images, so this is not mnist data\n" + NOT_IT)
    assert done.returncode == 1


# ---------------------------------------------------------------- FIFOs: regular files only


def test_spec_given_as_a_fifo(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with deadline(), unchanged(tmp_path):
        result = run_cli("check", fifo)
    assert result.stderr == (f"{fifo}: is a FIFO (named pipe), not a regular file; a spec is read from a YAML "
                             "file only\n  hint: write the spec to a file and give its path\n")
    assert result.exit_code == 1


def test_fifo_named_png_in_an_image_folder(tmp_path):
    root = tmp_path / "pets"
    write(root / "train" / "cat" / "0.png", png(1))
    write(root / "train" / "dog" / "0.png", png(2))
    os.mkfifo(root / "train" / "dog" / "1.png")
    with deadline(), unchanged(tmp_path):
        result = run_cli("data", "verify", "image_folder", "--path", root)
    assert result.stderr == (f"{root}/train/dog/1.png: is a FIFO (named pipe), not a regular file; an image "
                             "folder holds only regular image files\n"
                             "  hint: remove it from the folder, or replace it with the image file\n")
    assert result.exit_code == 1


def save_tiny(path, names, activation="softmax", last=None):
    """An untrained tiny model (8x8 gray in, one unit per name) saved with cnntrain's metadata."""
    from cnntrain.backend import keras
    from cnntrain.runs.model_file import save_model

    keras.utils.set_random_seed(3)
    layers = [keras.Input(SHAPE), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
              keras.layers.Dense(len(names), activation=activation, name="dense")] + ([last] if last is not None else [])
    model = keras.Sequential(layers)
    save_model(model, path, tiny_metadata(names))
    return model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_tiny(path, [str(i) for i in range(10)])
    return path


def test_fifo_given_to_predict_and_activations(tmp_path, tiny_model):
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    said = (f"{fifo}: is a FIFO (named pipe), not a regular file; images are read from regular files only\n"
            "  hint: copy the image to a file and give its path\n")
    with deadline(), unchanged(tmp_path):
        predicted = run_cli("predict", fifo, "--model", tiny_model)
        pictured = run_cli("activations", tiny_model, fifo, "--out", tmp_path / "maps.png")
    # No image to read: said before the model is loaded, so no model line.
    assert predicted.stderr == said and predicted.exit_code == 1 and predicted.stdout == ""
    assert pictured.stderr == f"model: {tiny_model}\n" + said and pictured.exit_code == 1
    assert not (tmp_path / "maps.png").exists()


@pytest.mark.parametrize("name", ["model.keras", "model.onnx", "model.tflite", "zero.tflite"])
def test_fifo_or_device_given_as_the_model(tmp_path, name):
    # LiteRT and onnxruntime, like zipfile, would wait forever on a FIFO, and read /dev/zero to the end.
    model = tmp_path / name
    if name.startswith("zero"):
        model.symlink_to("/dev/zero")
    else:
        os.mkfifo(model)
    what = "a character device" if name.startswith("zero") else "a FIFO (named pipe)"
    image = write(tmp_path / "digit.png", png())
    with deadline(), unchanged(tmp_path):
        result = run_cli("predict", image, "--model", model)
    assert result.stderr == (f"{model}: is {what}, not a regular file; a model is read from a run folder, a .keras "
                             "file, an export folder, a .tflite or .onnx file, or a SavedModel folder\n"
                             "  hint: give the model file itself, not a pipe or a device\n")
    assert result.exit_code == 1


# ---------------------------------------------------------------- the terminal: nothing raw from a file

TITLE, CLEAR = "\x1b]0;pwned\x07", "\x1b[2J"


def test_class_and_file_names_from_files_are_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_tiny(tmp_path / "m.keras", [TITLE, CLEAR, "ok"])
    # A black image: every score is the (zero) bias, so each class gets 1/3, in class order.
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"a{CLEAR}.png", format="PNG")
    write(tmp_path / f"b{TITLE}.png", b"not a png")
    with unchanged(tmp_path):
        result = run_cli("predict", f"a{CLEAR}.png", f"b{TITLE}.png", "--model", "m.keras", "--top-k", "3")
    assert result.stdout == (
        "┏━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━┓\n"
        "┃ file         ┃ class            ┃ probability ┃ next 2                    ┃\n"
        "┡━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━┩\n"
        "│ a\\x1b[2J.png │ \\x1b]0;pwned\\x07 │      0.3333 │ \\x1b[2J 0.3333, ok 0.3333 │\n"
        "└──────────────┴──────────────────┴─────────────┴───────────────────────────┘\n")
    assert result.stderr == ("model: m.keras\n"
                             "note: a\\x1b[2J.png: low confidence (\\x1b]0;pwned\\x07 0.3333, under 0.5); the image may "
                             "not show any of the 3 classes the model knows\n"
                             "b\\x1b]0;pwned\\x07.png: not an image (or a format Pillow cannot read)\n"
                             "  hint: use one of .png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp\n")
    assert result.exit_code == 1


def test_class_folder_names_are_escaped_in_messages(tmp_path):
    root = tmp_path / "pets"
    write(root / "train" / "cat" / "0.png", png(1))
    (root / "train" / TITLE).mkdir(parents=True)
    write(root / "train" / TITLE / "notes.txt", b"")
    with unchanged(tmp_path):
        result = run_cli("data", "verify", "image_folder", "--path", root)
    assert result.stderr == (f"{root}/train/\\x1b]0;pwned\\x07: class folder '{root}/train/\\x1b]0;pwned\\x07' "
                             "holds no images; expected files ending in .png, .jpg, .jpeg, .bmp, .gif, .tif, "
                             ".tiff, .webp\n  hint: add images to it, or remove the empty folder\n")
    assert result.exit_code == 1


def test_evaluation_tables_escape_class_names():
    from rich.console import Console

    from cnntrain.assess.metrics import metrics_from_probabilities
    from cnntrain.views import tables

    result = metrics_from_probabilities(np.eye(2)[[0, 1, 1]] * 0.8 + 0.1, np.array([0, 1, 0]), [TITLE, CLEAR],
                                        top_k=1)
    console = Console(record=True, width=140, color_system=None)
    tables.show_evaluation(console, result)
    text = console.export_text()
    assert "\x1b" not in text and "\x07" not in text
    assert text.count("\\x1b]0;pwned\\x07") == 4 and text.count("\\x1b[2J") == 4   # per class, matrix, pairs


# ---------------------------------------------------------------- data that is not what it claims to be


def test_mnist_pointed_at_the_cifar10_jpeg_archive(tmp_path, tiny_spec):
    archive = Path(fx.write_tar(tmp_path / "cifar10-jpeg.tar.gz", fx.cifar_jpeg_tree()))
    said = (f"{archive}: holds images of 32x32; mnist images are 28x28, so this is not mnist data\n" + NOT_IT)
    with unchanged(tmp_path):
        verified = run_cli("data", "verify", "mnist", "--path", archive)
    assert verified.stderr == said and verified.exit_code == 1 and verified.stdout == ""
    spec = tiny_spec()
    spec.write_text(spec.read_text().replace("  dataset: mnist\n", f"  dataset: mnist\n  path: {archive}\n"))
    with unchanged(tmp_path):
        fitted = run_cli("fit", spec, "--quiet")
    assert fitted.stderr == said and fitted.exit_code == 1
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- outputs that are not probabilities


def test_check_warns_at_a_model_without_a_softmax(tmp_path):
    from cnntrain.backend import keras

    keras.backend.clear_session()   # the layer's name ('dense', not 'dense_32') counts the models built in this process
    spec = write(tmp_path / "logits.yaml", b"name: logits\nmodel:\n  input_shape: [8, 8, 1]\n  layers:\n"
                 b"    - Flatten\n    - Dense: {units: 10}\n")
    result = run_cli("check", spec)
    assert result.stderr == (f"{spec}:6:7: warning: the model's last layer 'dense' has activation linear, so its "
                             "outputs are not probabilities over the 10 classes\n"
                             "  hint: end it with activation: softmax; if it is trained on logits (a loss with "
                             "from_logits: true), predict and evaluate apply the softmax and say so\n")
    # Two layers written: the front normalization layer is not counted as one of the spec's.
    assert result.stdout == f"OK {spec}: logits, 2 layers, 650 parameters\n" and result.exit_code == 0
    axis = write(tmp_path / "axis.yaml", spec.read_bytes() + b"    - Softmax: {axis: 0}\n")
    result = run_cli("check", axis)
    assert result.stderr == (f"{axis}:7:7: warning: the model's last layer 'softmax' has a softmax over axis 0, "
                             "so its outputs are not probabilities over the 10 classes\n"
                             "  hint: a softmax over the classes is Softmax: {axis: -1}\n")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("activation, last, taken", [
    ("linear", None, "activation linear, so its outputs are not probabilities over the 3 classes: its outputs"),
    ("linear", "Softmax", "a softmax over axis 0, so its outputs are not probabilities over the 3 classes: "
                          "the input of 'softmax'"),
])
def test_predict_applies_a_softmax_to_scores_and_says_so(tmp_path, activation, last, taken):
    from cnntrain.backend import keras

    model_path = tmp_path / "m.keras"
    model = save_tiny(model_path, ["a", "b", "c"], activation,
                      keras.layers.Softmax(axis=0, name="softmax") if last else None)
    pixels = np.random.default_rng(1).integers(0, 256, (8, 8), dtype=np.uint8)
    image = tmp_path / "x.png"
    Image.fromarray(pixels).save(image)
    with unchanged(tmp_path):
        result = run_cli("predict", image, "--model", model_path, "--json", "--top-k", "3")
    layer = model.layers[-1].name
    assert result.stderr == (f"note: the model's last layer '{layer}' has {taken} are taken as scores (logits) "
                             "and a softmax over the classes applied\n")
    top = json.loads(result.stdout)["predictions"][0]["top"]
    scores = keras.Model(model.inputs[0], model.layers[2].output)(pixels[None, ..., None].astype("float32"))
    expected = softmax(np.asarray(scores)[0])
    got = {t["class"]: t["probability"] for t in top}
    np.testing.assert_allclose([got["a"], got["b"], got["c"]], expected, rtol=1e-4)


def test_predict_and_evaluate_refuse_a_sigmoid_output(tmp_path):
    from cnntrain.assess.evaluate import evaluate_model
    from cnntrain.errors import CnntrainError

    model_path = tmp_path / "m.keras"
    model = save_tiny(model_path, ["a", "b"], "sigmoid")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    said = ("error: the model's last layer 'dense' has activation sigmoid, so its outputs are not probabilities "
            "over the 2 classes; a softmax of them would not be the probabilities the model was trained to give\n"
            "  hint: end the model with activation: softmax and train it again\n")
    with unchanged(tmp_path):
        result = run_cli("predict", image, "--model", model_path)
    assert result.stderr == said and result.exit_code == 1
    with pytest.raises(CnntrainError) as refused:
        evaluate_model(model, tiny_metadata(["a", "b"]), np.zeros((2, *SHAPE), np.uint8), np.array([0, 1]))
    assert f"error: {refused.value}\n" == said


def test_evaluate_applies_a_softmax_to_logits(tmp_path):
    from cnntrain.assess.evaluate import evaluate_model
    from cnntrain.backend import keras

    model = save_tiny(tmp_path / "m.keras", [str(i) for i in range(10)], "linear")
    x = np.random.default_rng(2).integers(0, 256, (20, *SHAPE), dtype=np.uint8)
    y = np.arange(20) % 10
    result = evaluate_model(model, tiny_metadata(), x, y, top_k=3)
    assert result["note"] == ("the model's last layer 'dense' has activation linear, so its outputs are not "
                              "probabilities over the 10 classes: its outputs are taken as scores (logits) and a "
                              "softmax over the classes applied")
    probs = softmax(np.asarray(model(x.astype("float32"))))
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, model(x.astype("float32")))
    assert result["loss"] == pytest.approx(float(expected), rel=1e-4)
    assert result["accuracy"] == float(np.mean(probs.argmax(axis=1) == y))


# ---------------------------------------------------------------- stdout carries the results only


@pytest.fixture
def download_from_file(monkeypatch, mnist_dir):
    """Keras' real get_file, downloading mnist.npz from a file:// URL: what a download prints, offline."""
    from cnntrain.data import lookup

    monkeypatch.setattr(lookup, "_get_file", real_get_file)
    origin = (mnist_dir / "mnist.npz").as_uri()
    known = catalog.KNOWN["mnist"]
    monkeypatch.setitem(catalog.KNOWN, "mnist", dataclasses.replace(
        known, downloads=(dataclasses.replace(known.downloads[0], origin=origin, file_hash=None),)))
    return origin


def test_data_verify_prints_only_json_while_downloading(download_from_file):
    result = run_cli("data", "verify", "mnist", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["train"] == 200 and report["test"] == 50
    assert report["source"] == str(Path(os.environ["KERAS_HOME"]) / "datasets" / "mnist.npz")
    assert f"Downloading data from {download_from_file}" in result.stderr


def test_fit_json_prints_only_json_while_downloading(download_from_file, tiny_spec):
    result = run_cli("fit", tiny_spec(epochs=1), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 1
    assert f"Downloading data from {download_from_file}" in result.stderr
