"""Test-time augmentation (fit.tta, evaluate/predict --tta: flip, flip_translate, translate) through the CLI, on
a tiny CIFAR-shaped run, against a NumPy recomputation from the trained model itself."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnntrain.backend import keras
from helpers import formats as fx
from helpers.cli import run_cli, without_low_confidence

SPEC = """\
name: tinycifar
seed: 3
data:
  dataset: cifar10
  validation: none
preprocess:
  normalize: scale
model:
  input_shape: [32, 32, 3]
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, strides: 2}
    - Activation: relu
    - Flatten
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
fit:
  batch_size: 50
  epochs: 1
  tta: flip
"""


def striped(n, seed):
    """Noise with a bright column at 3 x class: a mirror puts it at another class's column."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 100, (n, 32, 32, 3), dtype=np.uint8)
    y = np.arange(n) % 10
    for i, label in enumerate(y):
        x[i, :, 3 * label] = 255
    return x, y


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    x_train, y_train = striped(300, 1)
    x_test, y_test = striped(100, 2)
    data = root / "data"
    fx.write_cifar_dir(data / "cifar-10-batches-py", fx.cifar_members(x_train, y_train, x_test, y_test))
    spec = root / "tinycifar.yaml"
    spec.write_text(SPEC)
    result = run_cli("fit", spec, "--data-dir", data, "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    model = keras.models.load_model(root / "run" / "model.keras")
    return {"root": root, "data": data, "run": root / "run", "fit": result, "model": model,
            "x": x_test, "y": y_test}


def softmax_of(model, x):
    return model.predict(np.ascontiguousarray(x, dtype=np.float32), batch_size=len(x), verbose=0)


def figures(probs, y):
    """Keras' crossentropy from probabilities (clipped to [1e-7, 1 - 1e-7], renormalized) and the accuracy."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = np.mean(np.log(p.sum(axis=1)) - np.log(p[np.arange(len(y)), y]))
    return float(loss), float(np.mean(probs.argmax(axis=1) == y))


def flipped_mean(model, x):
    return (softmax_of(model, x) + softmax_of(model, x[:, :, ::-1])) / np.float32(2)


def shifted_by_hand(x, dy, dx):
    """Each pixel (i, j) from (i - dy, j - dx), an index off the edge reflected back (-1 -> 1, H -> H - 2)."""
    h, w = x.shape[1:3]
    rows = [abs(i - dy) if i - dy < h else 2 * h - 2 - (i - dy) for i in range(h)]
    cols = [abs(j - dx) if j - dx < w else 2 * w - 2 - (j - dx) for j in range(w)]
    return x[:, rows][:, :, cols]


def translated_mean(model, x):
    """airbench's level-2 TTA: half the flip's mean, half the flip's mean of the two diagonal shifts."""
    up_left, down_right = shifted_by_hand(x, -1, -1), shifted_by_hand(x, 1, 1)
    return (flipped_mean(model, x) / 2 + (flipped_mean(model, up_left) + flipped_mean(model, down_right)) / 4)


def shifted_mean(model, x):
    """The translate TTA: the mean of the image and its four one-pixel axis shifts, no mirror."""
    shifts = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
    return sum(softmax_of(model, shifted_by_hand(x, dy, dx)) for dy, dx in shifts) / np.float32(5)


def lines(text):
    return [line.rstrip() for line in text.splitlines()]


def test_fit_records_the_flip_and_its_test_figure(run):
    loss, accuracy = figures(flipped_mean(run["model"], run["x"]), run["y"])
    metrics = json.loads((run["run"] / "metrics.json").read_text())
    assert metrics["test"]["tta"] == "flip"
    assert set(metrics["test"]) == {"loss", "accuracy", "tta"}
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["test"]["loss"] == pytest.approx(loss, abs=1e-5)
    assert f"test accuracy {100 * accuracy:.2f}% on 100 images (test-time flip)  ->  " in run["fit"].stdout
    meta = json.loads(__import__("zipfile").ZipFile(run["run"] / "model.keras").read("cnntrain.json"))
    assert meta["tta"] == "flip"


def test_evaluate_defaults_to_the_runs_flip_and_none_overrides(run):
    model, x, y = run["model"], run["x"], run["y"]
    flip_loss, flip_acc = figures(flipped_mean(model, x), y)
    none_loss, none_acc = figures(softmax_of(model, x), y)
    # The tiny model has learnt the stripe's column, so the mirror changes its answers.
    assert flip_acc != none_acc and abs(flip_loss - none_loss) > 0.01

    result = run_cli("evaluate", run["run"], "--data-dir", run["data"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run["run"] / "eval.json").read_text())
    assert saved["tta"] == "flip" and saved["samples"] == 100
    assert saved["accuracy"] == flip_acc
    assert saved["loss"] == pytest.approx(flip_loss, abs=1e-6)
    assert f"accuracy        {100 * flip_acc:.2f}% (test-time flip)" in lines(result.stdout)
    # What fit said of its model, evaluate reproduces.
    metrics = json.loads((run["run"] / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)

    result = run_cli("evaluate", run["run"], "--data-dir", run["data"], "--tta", "none")
    assert result.exit_code == 0, result.output
    assert f"accuracy        {100 * none_acc:.2f}%" in lines(result.stdout)
    shown = json.loads((run["run"] / "eval.json").read_text())
    assert shown["tta"] == "none" and shown["accuracy"] == none_acc
    # No flip: the loss of the logits, as Keras' model.evaluate takes it.
    assert shown["loss"] == pytest.approx(none_loss, abs=1e-4)


def test_predict_flip_is_the_mean_over_the_mirror(run):
    model, x = run["model"], run["x"][:3]
    files = []
    for i, image in enumerate(x):
        files.append(run["root"] / f"image{i}.png")
        Image.fromarray(image).save(files[-1])
    expected = {"flip": flipped_mean(model, x), "none": softmax_of(model, x)}
    for tta, extra in (("flip", []), ("flip", ["--tta", "flip"]), ("none", ["--tta", "none"])):
        result = run_cli("predict", *files, "--run", run["run"], "--top-k", "10", "--json", *extra)
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown["tta"] == tta
        for row, probs in zip(shown["predictions"], expected[tta]):
            got = {t["class"]: t["probability"] for t in row["top"]}
            names = [fx.CIFAR_NAMES[c].decode() for c in range(10)]
            np.testing.assert_allclose([got[n] for n in names], probs, rtol=0, atol=1e-6)
    result = run_cli("predict", files[0], "--run", run["run"])
    assert result.exit_code == 0, result.output
    assert without_low_confidence(result.stderr) == f"model: {run['run'] / 'model.keras'} (test-time flip)\n"


def test_an_exported_model_takes_the_flip_too(run):
    result = run_cli("export", run["run"], "--format", "tflite", "--data-dir", run["data"])
    assert result.exit_code == 0, result.output
    exported = run["run"] / "export" / "tflite" / "model.tflite"
    flip_loss, flip_acc = figures(flipped_mean(run["model"], run["x"]), run["y"])
    # The run's tta travels in the export's cnntrain.json, so evaluate defaults to it there too.
    for extra in ([], ["--tta", "flip"]):
        result = run_cli("evaluate", exported, "--data-dir", run["data"], "--json", *extra)
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown["tta"] == "flip" and shown["accuracy"] == flip_acc
        assert shown["loss"] == pytest.approx(flip_loss, abs=1e-5)


def test_unknown_tta_choices(run, tmp_path):
    result = run_cli("evaluate", run["run"], "--tta", "mirror")
    assert result.exit_code == 2
    assert "Invalid value for '--tta': 'mirror' is not one of 'none', 'flip', 'flip_translate', 'translate'." in result.stderr
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("tta: flip", "tta: mirror"))
    result = run_cli("check", spec)
    assert result.exit_code == 1
    assert result.stderr == f"{spec}:20:8: 'fit.tta' must be one of none, flip, flip_translate, translate, received: 'mirror' (str)\n"


def test_compare_and_card_say_which_accuracies_averaged_mirrors(run, tmp_path):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(run["run"], a, ignore=shutil.ignore_patterns("eval.json", "confusion.png"))
    shutil.copytree(a, b)
    assert run_cli("evaluate", b, "--data-dir", run["data"], "--tta", "none").exit_code == 0
    result = run_cli("runs", "--compare", a, b)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["test", "accuracy's", "TTA", "flip", "flip"] in rows
    assert ["evaluated", "accuracy's", "TTA", "-", "none"] not in rows   # none anywhere: no row
    assert run_cli("evaluate", b, "--data-dir", run["data"]).exit_code == 0
    rows = [line.split() for line in run_cli("runs", "--compare", a, b).stdout.splitlines()]
    assert ["evaluated", "accuracy's", "TTA", "-", "flip"] in rows

    metrics = json.loads((a / "metrics.json").read_text())
    assert run_cli("card", a, "--data-dir", run["data"], "--out", tmp_path / "A.md").exit_code == 0
    card = (tmp_path / "A.md").read_text()
    pct = f"{100 * metrics['test']['accuracy']:.2f}%"
    assert f"; test accuracy **{pct}** (test-time flip).\n" in card
    assert f"accuracy {pct} (test-time flip) (from the fit)." in card
    ev = json.loads((b / "eval.json").read_text())
    assert run_cli("card", b, "--data-dir", run["data"], "--out", tmp_path / "B.md").exit_code == 0
    assert f"accuracy **{100 * ev['accuracy']:.2f}%** (test-time flip), top-5" in (tmp_path / "B.md").read_text()


def test_views_move_one_pixel_with_the_edge_reflected():
    from cnntrain.assess import tta

    x = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    down_right = tta.shifted(x, 1, 1, False)
    assert down_right[0, :, :, 0].tolist() == [[18, 15, 18, 21, 24], [3, 0, 3, 6, 9],
                                               [18, 15, 18, 21, 24], [33, 30, 33, 36, 39]]
    for dy, dx, mirrored in {*tta.VIEWS["flip_translate"], *tta.VIEWS["translate"]}:
        expected = shifted_by_hand(x, dy, dx)[:, :, ::-1] if mirrored else shifted_by_hand(x, dy, dx)
        assert np.array_equal(tta.shifted(x, dy, dx, mirrored), expected)
        as_tensor = tta.shifted(keras.ops.convert_to_tensor(x), dy, dx, mirrored, ops=keras.ops)
        assert np.array_equal(keras.ops.convert_to_numpy(as_tensor), expected)
    assert tta.with_views(x, "flip_translate").shape == (12, 4, 5, 3)
    assert sum(tta.WEIGHTS["flip_translate"]) == 1.0
    assert tta.with_views(x, "translate").shape == (10, 4, 5, 3)
    assert not any(mirrored for _, _, mirrored in tta.VIEWS["translate"])
    assert sum(tta.WEIGHTS["translate"]) == pytest.approx(1.0, abs=1e-12)


def same_through_evaluate_predict_and_fit(run, choice: str, probs, index: int, label: str):
    """evaluate --json, predict --json on image `index` (and the model line it prints), and fit's
    final figure each give the `choice` TTA figures of `probs`, the NumPy mean of its views."""
    from cnntrain.assess import tta
    from cnntrain.feed import pipeline

    model, x, y = run["model"], run["x"], run["y"]
    loss, accuracy = figures(probs, y)
    result = run_cli("evaluate", run["run"], "--data-dir", run["data"], "--tta", choice, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["tta"] == choice and shown["accuracy"] == accuracy
    assert shown["loss"] == pytest.approx(loss, abs=1e-6)

    image = run["root"] / f"{choice}.png"
    Image.fromarray(x[index]).save(image)
    result = run_cli("predict", image, "--run", run["run"], "--top-k", "10", "--json", "--tta", choice)
    assert result.exit_code == 0, result.output
    got = {t["class"]: t["probability"] for t in json.loads(result.stdout)["predictions"][0]["top"]}
    np.testing.assert_allclose([got[fx.CIFAR_NAMES[c].decode()] for c in range(10)], probs[index], rtol=0, atol=1e-6)
    result = run_cli("predict", image, "--run", run["run"], "--tta", choice)
    assert without_low_confidence(result.stderr) == f"model: {run['run'] / 'model.keras'} ({label})\n"

    # fit's final figure takes the same views inside one Keras model.
    dataset = pipeline.eval_dataset(x, y, batch_size=50)   # the sparse loss: labels as indices
    fit_figures = tta.test_figures(model, dataset, choice, metrics=["accuracy"])
    assert fit_figures["tta"] == choice
    assert fit_figures["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert fit_figures["loss"] == pytest.approx(loss, abs=1e-5)


def test_flip_translate_in_evaluate_predict_and_fits_figure(run):
    model, x, y = run["model"], run["x"], run["y"]
    probs = translated_mean(model, x)
    loss, accuracy = figures(probs, y)
    assert accuracy != figures(flipped_mean(model, x), y)[1] or loss != figures(flipped_mean(model, x), y)[0]
    same_through_evaluate_predict_and_fit(run, "flip_translate", probs, 0, "test-time flip + translate")


def test_translate_in_evaluate_predict_and_fits_figure(run):
    model, x, y = run["model"], run["x"], run["y"]
    probs = shifted_mean(model, x)
    loss, accuracy = figures(probs, y)
    assert (accuracy, loss) != figures(translated_mean(model, x), y)
    assert (accuracy, loss) != figures(softmax_of(model, x), y)
    same_through_evaluate_predict_and_fit(run, "translate", probs, 1, "test-time translate")
    result = run_cli("evaluate", run["run"], "--data-dir", run["data"], "--tta", "translate")
    assert f"accuracy        {100 * accuracy:.2f}% (test-time translate)" in lines(result.stdout)
