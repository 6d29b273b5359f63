"""predict.py and the prediction half of tables.py, on a tiny real model and real image files."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from cnntrain.runs.model_file import save_model
from cnntrain.views import csvfile, tables
from cnntrain.errors import CnntrainError
from cnntrain.assess.predict import predict_files
from helpers.models import CLASSES, part_trained, synthetic
from helpers.models import metadata as tiny_metadata

def metadata():
    return tiny_metadata([f"c{i}" for i in range(CLASSES)])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = part_trained(2)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, path, metadata())
    return path, model


@pytest.fixture(scope="module")
def samples():
    return synthetic(12, 5)[0]


def save_gray(array, path):
    Image.fromarray(np.asarray(array)[..., 0], "L").save(path)
    return path


def probabilities(row):
    return {t["class"]: t["probability"] for t in row["top"]}


def reference(model, array):
    return model.predict(np.asarray(array, np.float32)[None], verbose=0)[0]


def assert_same(row, expected, tol=1e-6):
    got = probabilities(row)
    assert len(got) == CLASSES
    for i, p in enumerate(expected):
        assert abs(got[f"c{i}"] - float(p)) <= tol


def test_png_predicts_like_the_array(model_file, samples, tmp_path):
    path, model = model_file
    files = [save_gray(a, tmp_path / f"img{i}.png") for i, a in enumerate(samples)]
    rows, errors, info = predict_files([str(f) for f in files], target=str(path), top_k=CLASSES,
                                       batch_size=5)
    assert errors == []
    assert info["model"] == str(path) and info["classes"] == CLASSES
    assert [r["file"] for r in rows] == [str(f) for f in files]   # input order, across batches
    expected = model.predict(samples.astype(np.float32), verbose=0)
    for row, exp in zip(rows, expected):
        assert row["inverted"] is False   # dark background, like the training images
        assert_same(row, exp)


def test_bad_files_get_their_own_errors(model_file, samples, tmp_path):
    path, _ = model_file
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = [save_gray(samples[i], folder / f"good{i}.png") for i in range(3)]
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a picture\n")
    whole = good[0].read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (folder / "readme.txt").write_text("ignored: not an image suffix")

    rows, errors, _ = predict_files([str(folder)], target=str(path))
    assert sorted(r["file"] for r in rows) == sorted(str(g) for g in good)
    bad = {str(folder / n) for n in ("empty.png", "notes.jpg", "truncated.png")}
    assert {e.file for e in errors} == bad
    assert all(isinstance(e, CnntrainError) and e.message for e in errors)
    by_file = {e.file: e.message for e in errors}
    assert "empty" in by_file[str(folder / "empty.png")]


def test_globs_and_missing_inputs(model_file, samples, tmp_path):
    path, _ = model_file
    for i in range(3):
        save_gray(samples[i], tmp_path / f"a{i}.png")
    Image.fromarray(samples[3][..., 0]).save(tmp_path / "b.bmp")
    rows, errors, _ = predict_files([str(tmp_path / "a*.png"), str(tmp_path / "nothere.png")],
                                    target=str(path))
    assert [r["file"] for r in rows] == [str(tmp_path / f"a{i}.png") for i in range(3)]
    assert len(errors) == 1 and errors[0].file == str(tmp_path / "nothere.png")


def test_rgb_image_to_grayscale_model(model_file, samples, tmp_path):
    path, model = model_file
    gray = samples[0]
    rgb = np.repeat(gray, 3, axis=-1)          # R = G = B, so the luma is the gray value exactly
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    rows, errors, _ = predict_files([str(tmp_path / "rgb.png")], target=str(path), top_k=CLASSES)
    assert errors == []
    assert_same(rows[0], reference(model, gray))


def test_light_background_is_inverted_in_auto_only(model_file, samples, tmp_path):
    path, model = model_file
    x, y = synthetic(50, 7)
    dark = x[np.flatnonzero(y == 5)[0]]         # class 5's block sits in the middle, like a digit
    light = 255 - dark                          # a dark stroke on white paper
    f = save_gray(light, tmp_path / "light.png")
    rows, _, info = predict_files([str(f)], target=str(path), top_k=CLASSES, invert="auto")
    assert rows[0]["inverted"] is True and info["inverted"] == 1
    assert_same(rows[0], reference(model, dark))

    rows, _, _ = predict_files([str(f)], target=str(path), top_k=CLASSES, invert="no")
    assert rows[0]["inverted"] is False
    assert_same(rows[0], reference(model, light))

    rows, _, _ = predict_files([str(save_gray(dark, tmp_path / "dark.png"))], target=str(path),
                               top_k=CLASSES, invert="yes")
    assert rows[0]["inverted"] is True
    assert_same(rows[0], reference(model, light))

    with pytest.raises(CnntrainError, match=r"^unknown invert choice 'maybe'\n  hint: --invert is auto"):
        predict_files([str(f)], target=str(path), invert="maybe")


def test_a_colour_model_never_inverts_in_auto(tmp_path):
    """Was: a CIFAR-10 model inverted the test ship photograph (light sky at the border) and called it
    '(inverted) automobile 0.9859'. Models from before recorded a background for colour data too."""
    from cnntrain.backend import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    path = tmp_path / "colour.keras"
    save_model(model, path, {**metadata(), "input_shape": [8, 8, 3], "background": "dark"})
    photo = np.full((8, 8, 3), 230, np.uint8)       # a light sky all round a darker ship
    photo[3:6, 2:7] = (60, 50, 40)
    Image.fromarray(photo, "RGB").save(tmp_path / "ship.png")
    rows, _, info = predict_files([str(tmp_path / "ship.png")], target=str(path), top_k=CLASSES)
    assert rows[0]["inverted"] is False and info["background"] is None
    assert_same(rows[0], reference(model, photo))
    rows, _, _ = predict_files([str(tmp_path / "ship.png")], target=str(path), top_k=CLASSES, invert="yes")
    assert rows[0]["inverted"] is True
    assert_same(rows[0], reference(model, 255 - photo))


def test_top_k_order_and_sum(model_file, samples, tmp_path):
    path, _ = model_file
    f = save_gray(samples[2], tmp_path / "x.png")
    rows, _, _ = predict_files([str(f)], target=str(path), top_k=3)
    top = rows[0]["top"]
    assert len(top) == 3
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True)
    rows, _, _ = predict_files([str(f)], target=str(path), top_k=99)   # clamped to the classes
    assert len(rows[0]["top"]) == CLASSES
    assert sum(t["probability"] for t in rows[0]["top"]) == pytest.approx(1.0, abs=1e-5)
    assert rows[0]["top"][:3] == top


def test_model_without_metadata_and_run_folder(model_file, samples, tmp_path):
    _, model = model_file
    plain = tmp_path / "plain.keras"
    model.save(plain)
    x, y = synthetic(50, 7)
    f = save_gray(255 - x[np.flatnonzero(y == 6)[0]], tmp_path / "light.png")
    rows, _, info = predict_files([str(f)], target=str(plain), top_k=CLASSES)
    assert {t["class"] for t in rows[0]["top"]} == {str(i) for i in range(CLASSES)}
    assert rows[0]["inverted"] is False   # background unknown: never inverted in auto
    assert info["background"] is None

    run = tmp_path / "runs" / "tiny" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text("name: tiny\n")
    save_model(model, run / "model.keras", metadata())
    rows, _, info = predict_files([str(f)], runs_root=tmp_path / "runs")
    assert info["model"] == str(run / "model.keras") and rows[0]["inverted"] is True


def test_predictions_csv_exact(tmp_path):
    rows = [
        {"file": "a,b.png", "top": [{"class": "cat", "probability": 0.75},
                                    {"class": "dog", "probability": 0.25}], "inverted": False},
        {"file": "dir/c.png", "top": [{"class": "[x]", "probability": 1.0},
                                      {"class": "dog", "probability": 1e-9}], "inverted": True},
    ]
    out = csvfile.predictions_csv(rows, tmp_path / "p.csv")
    assert out.read_text(encoding="utf-8") == (
        "file,rank,class,probability\n"
        '"a,b.png",1,cat,0.750000\n'
        '"a,b.png",2,dog,0.250000\n'
        "dir/c.png,1,[x],1.000000\n"
        "dir/c.png,2,dog,0.000000\n"
    )


def test_show_predictions_escapes_markup():
    rows = [{"file": "[red]evil[/red].png", "top": [{"class": "[bold]c", "probability": 0.9},
                                                    {"class": "d", "probability": 0.1}],
             "inverted": True}]
    console = Console(record=True, width=120, color_system=None)
    tables.show_predictions(console, rows, 2)
    text = console.export_text()
    assert "[red]evil[/red].png" in text and "[bold]c" in text and "inverted" in text


def test_top_k_beyond_the_classes_is_capped_and_said(model_file, samples, tmp_path):
    from helpers.cli import run_cli, without_low_confidence

    path, _ = model_file
    image = save_gray(samples[2], tmp_path / "x.png")
    result = run_cli("predict", image, "--model", path, "--top-k", 20)
    assert result.exit_code == 0, result.output
    assert without_low_confidence(result.stderr) == (f"model: {path}\nnote: --top-k 20 is more than the model's 10 classes: top-10 shown\n")
    header, row = [line for line in result.stdout.splitlines() if "x.png" in line or "next" in line]
    next_cell = row.split("│")[4].strip().split(", ")
    assert "next 9" in header and sorted(c.split()[0] for c in next_cell + [row.split("│")[2].strip()]) == \
        [f"c{i}" for i in range(10)], result.stdout
    kept = run_cli("predict", image, "--model", path, "--top-k", 10)
    assert "note: --top-k" not in kept.stderr and "next 9" in kept.stdout


def test_a_missing_image_is_said_before_tensorflow_is_imported(model_file, tmp_path):
    from helpers.cli import modules_after, run_cli

    path, _ = model_file
    missing = tmp_path / "missing.png"
    result = run_cli("predict", missing, "--model", path)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"{missing}: ") and "model:" not in result.stderr, result.stderr
    code = (f"from click.testing import CliRunner; from cnntrain.cli import cli; "
            f"r = CliRunner().invoke(cli, ['predict', {str(missing)!r}, '--model', {str(path)!r}]); "
            f"assert r.exit_code == 1, r.output")
    assert modules_after(code) == []


def test_batches_of_large_inputs_are_bounded_in_bytes(tmp_path, monkeypatch):
    """predict decodes one batch ahead of the model: at a large input size --batch-size images are
    gigabytes (256 at the 4096x4096 RGB bound: 51 GB as float32), so a batch holds at most
    BATCH_BYTES of images as the model is fed them. The outputs are the same."""
    from cnntrain.assess import predict
    from cnntrain.backend import keras

    sizes = [((28, 28, 1), "none"), ((224, 224, 3), "none"), ((224, 224, 3), "flip_translate"),
             ((1024, 1024, 3), "none"), ((4096, 4096, 3), "none")]
    assert [predict.batch_for(shape, 256, tta) for shape, tta in sizes] == [256, 256, 74, 21, 1]
    keras.utils.set_random_seed(4)
    side = 512
    model = keras.Sequential([keras.Input((side, side, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path / "large.keras"
    save_model(model, path, tiny_metadata(["a", "b", "c"], input_shape=[side, side, 3], background=None))
    rng = np.random.default_rng(4)
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8), "RGB").save(tmp_path / f"{i}.png")
    image_bytes = side * side * 3 * 4   # one image as the model is fed it

    def predicted_and_peak():
        """predict's rows and the most memory NumPy held at once while it ran."""
        tracemalloc.start()
        try:
            rows, errors, _info = predict_files([str(tmp_path)], target=str(path), top_k=3)
            return rows, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert errors == []

    whole, whole_peak = predicted_and_peak()   # 9 images, 28 MB: one batch
    monkeypatch.setattr(predict, "BATCH_BYTES", 2 * image_bytes)   # two a batch, as 4096x4096 RGB gets one
    bounded, bounded_peak = predicted_and_peak()
    assert [r["file"] for r in bounded] == [r["file"] for r in whole] == [str(tmp_path / f"{i}.png") for i in range(9)]
    assert np.allclose([list(probabilities(r).values()) for r in bounded],
                       [list(probabilities(r).values()) for r in whole], atol=1e-6)
    # NumPy holds an image about 2.5 times in a batch (its pixels, the float32 the model is fed and
    # Keras' copy of that), and a batch is decoded while the one before it is predicted.
    assert bounded_peak < 4 * predict.BATCH_BYTES < whole_peak
