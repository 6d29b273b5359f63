"""evaluate.py and the evaluation half of tables.py, on a tiny real model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from cnntrain.figures import confusion
from cnntrain.runs import model_file
from cnntrain.views import tables
from cnntrain.backend import keras
from cnntrain.errors import CnntrainError
from helpers.models import CLASSES, metadata, part_trained, synthetic
from cnntrain.assess.metrics import classification_metrics, sparse_crossentropy
from cnntrain.assess.evaluate import evaluate_model, evaluate_run

@pytest.fixture(scope="module")
def trained():
    return part_trained(1, metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")])


@pytest.fixture(scope="module")
def test_set():
    return synthetic(150, 1)


def test_figures_agree_with_keras_evaluate(trained, test_set):
    x, y = test_set
    result = evaluate_model(trained, metadata(), x, y, batch_size=64, top_k=3)
    loss, acc, top3 = trained.evaluate(x.astype("float32"), y, batch_size=64, verbose=0)
    assert result["samples"] == 150
    assert abs(result["loss"] - loss) < 1e-4
    # The same number of correct answers (keras divides in float32).
    assert round(result["accuracy"] * 150) == round(acc * 150)
    assert abs(result["accuracy"] - acc) < 1e-6
    assert result["top_k"] == 3 and abs(result["top_k_accuracy"] - top3) < 1e-6
    # A part-trained model: neither perfect nor hopeless, so the test means something.
    assert 0.1 < result["accuracy"] < 1.0


@pytest.mark.parametrize("head", ["dense", "activation", "softmax_layer"])
def test_confidently_wrong_loss_agrees(head):
    """Keras takes the crossentropy of a softmax from its logits: a loss far above -log(1e-7)."""
    layers = [keras.Input((2, 2, 1)), keras.layers.Flatten()]
    if head == "dense":
        layers.append(keras.layers.Dense(3, activation="softmax"))
    else:
        layers += [keras.layers.Dense(3),
                   keras.layers.Activation("softmax") if head == "activation" else keras.layers.Softmax()]
    model = keras.Sequential(layers)
    model.layers[1].set_weights([np.eye(4, 3, dtype="float32") * [5, 1, 1], np.zeros(3, "float32")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.array([[10, 0, 0, 0], [0, 1, 0, 0], [3, 0, 0, 0], [9, 0, 0, 0]], np.uint8).reshape(4, 2, 2, 1)
    y = np.array([1, 1, 2, 0])
    meta = {"class_names": ["a", "b", "c"], "input_shape": [2, 2, 1]}
    result = evaluate_model(model, meta, x, y, top_k=2)
    loss, acc = model.evaluate(x.astype("float32"), y, verbose=0)
    assert loss > 16.2   # beyond what clipped probabilities could give
    assert abs(result["loss"] - loss) < 1e-4
    assert result["accuracy"] == acc == 0.5


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_loss_against_smoothed_labels_agrees_with_keras(trained, test_set, tta):
    """With compile.label_smoothing, evaluate's loss is the one fit trained and reported: Keras'
    CategoricalCrossentropy(label_smoothing) (from the logits, or with flip from averaged probabilities)."""
    x, y = test_set
    xf = x.astype("float32")
    probs = trained.predict(xf, verbose=0)
    if tta == "flip":
        probs = (probs + trained.predict(xf[:, :, ::-1], verbose=0)) / 2
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)
    expected = float(smoothed(keras.ops.one_hot(y, probs.shape[1]), probs))
    result = evaluate_model(trained, metadata(label_smoothing=0.2), x, y, tta=tta)
    plain = evaluate_model(trained, metadata(), x, y, tta=tta)
    assert abs(result["loss"] - expected) < 1e-4 and result["label_smoothing"] == 0.2
    assert abs(result["loss"] - plain["loss"]) > 0.01 and "label_smoothing" not in plain
    assert result["accuracy"] == plain["accuracy"]
    console = Console(width=80, record=True, color_system=None)
    tables.show_evaluation(console, result)
    assert f"loss            {result['loss']:.4f} (labels smoothed by 0.2)" in console.export_text()


def test_confusion_matrix_consistent(trained, test_set):
    x, y = test_set
    result = evaluate_model(trained, metadata(), x, y)
    cm = np.array(result["confusion"])
    assert cm.shape == (CLASSES, CLASSES)
    assert cm.sum() == len(y)
    assert np.trace(cm) / len(y) == pytest.approx(result["accuracy"], abs=1e-12)
    assert cm.sum(axis=1).tolist() == np.bincount(y, minlength=CLASSES).tolist()
    pred = trained.predict(x.astype("float32"), verbose=0).argmax(axis=1)
    assert cm.sum(axis=0).tolist() == np.bincount(pred, minlength=CLASSES).tolist()
    assert [r["support"] for r in result["per_class"]] == cm.sum(axis=1).tolist()
    counts = [p["count"] for p in result["most_confused"]]
    assert counts == sorted(counts, reverse=True) and len(counts) <= 5
    for p in result["most_confused"]:
        assert p["true"] != p["predicted"]
        assert cm[int(p["true"]), int(p["predicted"])] == p["count"]


def test_classification_metrics_exact():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 1, 1]
    m = classification_metrics(y_true, y_pred, 4)
    assert m["confusion"].tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert m["precision"] == [1.0, 0.5, 0.0, 0.0]   # classes 2 and 3 never predicted -> 0.0
    assert m["recall"] == [2 / 3, 1.0, 0.0, 0.0]
    assert m["f1"][0] == pytest.approx(0.8, abs=1e-15)
    assert m["f1"][1] == pytest.approx(2 / 3, abs=1e-15)
    assert m["f1"][2:] == [0.0, 0.0]
    assert m["support"] == [3, 2, 1, 0]
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 4, abs=1e-15)


def test_crossentropy_matches_keras_formula():
    p = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    y = np.array([0, 0, 0])
    ours = sparse_crossentropy(p, y)
    theirs = keras.losses.sparse_categorical_crossentropy(y, p).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_evaluate_run_writes_eval_and_confusion(trained, tmp_path):
    x_tr, y_tr = synthetic(40, 2)
    x_te, y_te = synthetic(60, 3)
    # The task's 8x8 images as a folder of PNGs: a file claiming to be mnist must hold 28x28 images.
    data = tmp_path / "tiny"
    for split, xs, ys in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        for i, (image, label) in enumerate(zip(xs, ys)):
            (data / split / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0]).save(data / split / str(label) / f"{i}.png")
    run = tmp_path / "runs" / "tiny" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text("name: tiny\n")
    model_file.save_model(trained, run / "model.keras", metadata(dataset="image_folder", data_path=str(data)))

    result, written = evaluate_run(None, runs_root=tmp_path / "runs", top_k=3, batch_size=32)
    assert written == (run / "eval.json", run / "confusion.png")
    direct = evaluate_model(trained, metadata(), x_te, y_te, top_k=3)
    for key in ("samples", "accuracy", "confusion", "per_class", "macro_f1", "top_k_accuracy"):
        assert result[key] == direct[key]
    assert abs(result["loss"] - direct["loss"]) < 1e-6
    assert result["split"] == "test" and result["model"] == str(run / "model.keras")

    saved = json.loads((run / "eval.json").read_text())
    assert saved["confusion"] == result["confusion"] and saved["samples"] == 60
    with Image.open(run / "confusion.png") as png:
        png.load()
        side = int(confusion.figure_inches(CLASSES) * 100)
        assert png.format == "PNG" and png.size == (side, side)

    train_result, written = evaluate_run(str(run), split="train", batch_size=32)
    assert train_result["samples"] == 40 and train_result["split"] == "train"
    assert written == (run / "eval-train.json", run / "confusion-train.png")
    assert json.loads((run / "eval.json").read_text())["split"] == "test"  # not replaced by the training split's

    # A bare .keras file: results land beside it.
    bare = tmp_path / "elsewhere" / "mine.keras"
    bare.parent.mkdir()
    model_file.save_model(trained, bare, metadata(dataset="image_folder", data_path=str(data)))
    _, written = evaluate_run(str(bare))
    assert written == (bare.parent / "mine.eval.json", bare.parent / "mine.confusion.png")
    assert all(path.is_file() for path in written)


def test_model_without_metadata(trained, test_set, tmp_path):
    plain = tmp_path / "plain.keras"
    trained.save(plain)
    model, meta = model_file.load_model(plain)
    assert meta == {}
    x, y = test_set
    result = evaluate_model(model, meta, x, y)
    assert result["class_names"] == [str(i) for i in range(CLASSES)]
    assert result["accuracy"] == evaluate_model(trained, metadata(), x, y)["accuracy"]
    # Without metadata the data set is unknown: a clear error, not a crash.
    with pytest.raises(CnntrainError, match="which data set"):
        evaluate_run(str(plain))


def test_wrong_labels_and_shapes(trained, test_set):
    x, y = test_set
    with pytest.raises(CnntrainError, match="classes"):
        evaluate_model(trained, metadata(), x, y + 10)
    with pytest.raises(CnntrainError, match="model takes"):
        evaluate_model(trained, metadata(), np.zeros((3, 9, 9, 1), np.uint8), y[:3])


def test_show_evaluation_escapes_names(tmp_path):
    names = ["[bold]cat", "dog[/]", "x"]
    y_true = np.array([0, 0, 1, 2, 2, 1])
    probs = np.eye(3)[[0, 1, 1, 2, 0, 1]] * 0.9 + 0.1 / 3
    from cnntrain.assess.metrics import metrics_from_probabilities
    result = metrics_from_probabilities(probs, y_true, names, top_k=2)
    console = Console(record=True, width=140, color_system=None)
    tables.show_evaluation(console, result)
    text = console.export_text()
    assert "[bold]cat" in text and "dog[/]" in text
    assert "Confusion matrix" in text and "Most confused" in text
    out = confusion.confusion_png(result, tmp_path / "c.png")
    with Image.open(out) as png:
        assert png.size == (int(confusion.figure_inches(3) * 100),) * 2


def test_evaluate_reproduces_the_fits_smoothed_test_loss(tiny_spec, mnist_dir, tmp_path):
    from helpers.cli import run_cli

    fit = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--set", "compile.label_smoothing=0.2",
                  "--out", tmp_path / "run", "--quiet")
    assert fit.exit_code == 0, fit.output
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    result = run_cli("evaluate", tmp_path / "run", "--data-dir", mnist_dir, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["label_smoothing"] == 0.2 and shown["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    assert shown["loss"] == pytest.approx(test["loss"], abs=1e-5)


def test_validation_split_is_the_one_the_run_held_out(tiny_spec, mnist_dir, tmp_path):
    """--split validation re-draws the run's validation images from its spec.yaml: the model's figures
    on them are exactly fit's last val_ figures."""
    from helpers.cli import run_cli

    run = tmp_path / "run"
    fit = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run, "--quiet")
    assert fit.exit_code == 0, fit.output
    validation = json.loads((run / "metrics.json").read_text())["validation"]
    result = run_cli("evaluate", run, "--data-dir", mnist_dir, "--split", "validation", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["split"] == "validation" and shown["samples"] == 40   # 20% of 200
    assert shown["accuracy"] == pytest.approx(validation["accuracy"], abs=1e-6)
    assert shown["loss"] == pytest.approx(validation["loss"], abs=1e-5)
    assert json.loads((run / "eval-validation.json").read_text())["samples"] == 40
    assert (run / "confusion-validation.png").is_file() and not (run / "eval.json").exists()

    bare = run_cli("evaluate", run / "model.keras", "--data-dir", mnist_dir, "--split", "validation")
    assert bare.exit_code == 1
    assert bare.stderr == ("error: --split validation needs the run folder: the validation images are the ones "
                           "its spec.yaml held out\n  hint: evaluate the run folder, not a model file alone\n")

    # spec.yaml edited after the fit: the images drawn again are other ones, refused rather than evaluated.
    saved = (run / "spec.yaml").read_text()
    for old_text, new_text, differs in (("seed: 7", "seed: 8", "40 images both times, but other ones"),
                                        ("validation_split: 0.2", "validation_split: 0.3", "40 images at fit, 60 now"),
                                        ("limit_train: null", "limit_train: 100",
                                         "40 images at fit, 20 now")):
        assert old_text in saved
        (run / "spec.yaml").write_text(saved.replace(old_text, new_text))
        edited = run_cli("evaluate", run, "--data-dir", mnist_dir, "--split", "validation")
        assert (edited.exit_code, edited.stdout, edited.stderr) == (1, "", (
            f"{run / 'spec.yaml'}: the validation images drawn again from spec.yaml are not the ones the run held "
            f"out ({differs})\n  hint: spec.yaml or the data changed since the fit (seed, data.validation_split, "
            "limits): restore them, or evaluate with --split test\n"))


def test_a_run_without_validation_images_says_so(tiny_spec, mnist_dir, tmp_path):
    from helpers.cli import run_cli

    run = tmp_path / "run"
    fit = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run, "--quiet",
                  "--set", "data.validation=none")
    assert fit.exit_code == 0, fit.output
    result = run_cli("evaluate", run, "--data-dir", mnist_dir, "--split", "validation")
    assert result.exit_code == 1
    assert result.stderr == (f"{run / 'spec.yaml'}: the run held out no validation images (its "
                             "data.validation is 'none')\n"
                             "  hint: evaluate it with --split test\n")


def test_a_folder_without_test_images_suggests_the_held_out_ones(tmp_path):
    from PIL import Image

    from helpers.cli import run_cli
    from helpers.formats import digits

    x, y = digits(40, seed=3, size=16)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = tmp_path / "pics" / "train" / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    spec = tmp_path / "pics.yaml"
    spec.write_text(f"""\
name: pics
data: {{dataset: image_folder, path: {tmp_path / 'pics'}, image_size: [16, 16], color_mode: grayscale,
        validation_split: 0.25}}
model:
  input_shape: [16, 16, 1]
  layers:
    - Flatten
    - Dense: {{units: 10, activation: softmax}}
fit: {{epochs: 1, batch_size: 8}}
""")
    fit = run_cli("fit", spec, "--out", tmp_path / "run", "--quiet", "--trust-spec")
    assert fit.exit_code == 0, fit.output
    result = run_cli("evaluate", tmp_path / "run")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: the data set has no test split ({tmp_path / 'pics'})\n"
        "  hint: evaluate on the images the run held out with --split validation, or add a test/ folder "
        "(one subfolder per class) beside train/\n")
    held_out = run_cli("evaluate", tmp_path / "run", "--split", "validation")
    assert held_out.exit_code == 0, held_out.output
    # export checks on those held-out images (it stopped at "the data set has no test split").
    exported = run_cli("export", tmp_path / "run", "--format", "tflite", "--out", tmp_path / "tfl", "--json")
    assert exported.exit_code == 0, exported.output
    check = json.loads(exported.stdout)["check"]
    assert (check["source"], check["images"]) == (f"validation split of image_folder ({tmp_path / 'pics'})", 10)
    # Without held-out images either, it says what to check the export on.
    spec.write_text(spec.read_text().replace("validation_split: 0.25", "validation: none"))
    assert run_cli("fit", spec, "--out", tmp_path / "all", "--quiet", "--trust-spec").exit_code == 0
    refused = run_cli("export", tmp_path / "all", "--format", "tflite", "--out", tmp_path / "tfl2")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"error: the data set has no test split ({tmp_path / 'pics'}): nothing to check the export on\n"
        "  hint: check it on image files with --check-images DIR (DIR/<class>/<image> also gives accuracy), "
        "or add a test/ folder beside train/\n")
