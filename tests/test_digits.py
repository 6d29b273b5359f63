"""A user's own picture of a digit (issue 30): read as MNIST was made for a model trained on one
plain ground (cropped to the ink, scaled into the 20/28 box, centred by mass), the same image in
predict and activations, and the note on a low top probability."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnntrain.assess.predict import read_for_model
from helpers.cli import run_cli
from helpers.formats import SHAPES, draw_shape, shapes
from helpers.models import metadata
from helpers.runs import TINY_SPEC

MNIST = (28, 28, 1)


def ell(height, width, at, ground, ink) -> np.ndarray:
    """An L of 4-pixel strokes in a 20x20 box at `at` (row, column) on a plain canvas."""
    a = np.full((height, width), ground, np.uint8)
    r, c = at
    a[r:r + 20, c:c + 4] = ink
    a[r + 16:r + 20, c + 4:c + 20] = ink
    return a


# The L needs no scaling (its longer side is the 20 of the box). Its centre of mass (row
# 13.06, column 5.94 of the box) goes to the field's centre (13.5, 13.5): the box starts at
# row 0, column 8, where centring the box itself would start it at (4, 4).
CENTRED_L = np.zeros((28, 28), np.uint8)
CENTRED_L[0:20, 8:12] = 255
CENTRED_L[16:20, 12:28] = 255


def save(array, path, mode=None):
    Image.fromarray(array, mode).save(path)
    return path


@pytest.mark.parametrize("paper, ground, ink, inverted", [
    ("white", 255, 0, True),
    ("grey", 150, 60, True),
    ("dim grey", 110, 20, True),     # was: below 127, taken for a dark ground and left as it was
    ("black", 0, 255, False),
])
def test_a_digit_anywhere_on_any_paper_is_cropped_and_centred_by_mass(tmp_path, paper, ground, ink, inverted):
    path = save(ell(200, 300, (150, 250), ground, ink), tmp_path / "l.png")     # near the bottom right corner
    image, flipped = read_for_model(path, MNIST, "auto", "dark")
    assert flipped is inverted
    np.testing.assert_array_equal(image[..., 0], CENTRED_L)


def test_a_white_digit_on_a_transparent_background_is_not_erased(tmp_path):
    # Was: composited on white, white on white, a blank image ("1 0.14").
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[..., :3] = 255                                     # see-through white: the worst case
    rgba[..., 3] = ell(200, 300, (10, 20), 0, 255)          # the L alone is opaque
    image, flipped = read_for_model(save(rgba, tmp_path / "l.png", "RGBA"), MNIST, "auto", "dark")
    assert flipped is False
    np.testing.assert_array_equal(image[..., 0], CENTRED_L)


def test_the_longer_side_is_scaled_into_the_box_keeping_the_aspect(tmp_path):
    canvas = np.full((200, 300), 255, np.uint8)
    canvas[20:100, 200:240] = 0                             # 80 high, 40 wide: 20 x 10 in the box
    image, _ = read_for_model(save(canvas, tmp_path / "block.png"), MNIST, "auto", "dark")
    expected = np.zeros((28, 28), np.uint8)
    expected[4:24, 9:19] = 255
    np.testing.assert_array_equal(image[..., 0], expected)
    image, _ = read_for_model(tmp_path / "block.png", (14, 42, 1), "auto", "dark")   # the box: 10 x 30
    expected = np.zeros((14, 42), np.uint8)
    expected[2:12, 19:24] = 255
    np.testing.assert_array_equal(image[..., 0], expected)


def test_what_is_not_cropped(tmp_path):
    as_is = ell(28, 28, (0, 0), 0, 255)                     # at the input size: taken as it is
    image, _ = read_for_model(save(as_is, tmp_path / "small.png"), MNIST, "auto", "dark")
    np.testing.assert_array_equal(image[..., 0], as_is)
    plain = save(np.full((200, 300), 150, np.uint8), tmp_path / "plain.png")    # no ink: resized
    image, flipped = read_for_model(plain, MNIST, "auto", "dark")
    assert flipped is False and image.shape == MNIST and (image == 150).all()
    drawn = save(ell(200, 300, (150, 250), 255, 0), tmp_path / "l.png")
    image, _ = read_for_model(drawn, MNIST, "auto", None)
    assert image.shape == MNIST and image.min() > 0         # no plain ground recorded: only resized


# ----------------------------------------------------------------- through the CLI, a trained model


@pytest.fixture(scope="module")
def shape_model(tmp_path_factory):
    """A tiny model fit on MNIST-like pictures of SHAPES, written as mnist.npz."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "data").mkdir()
    x_train, y_train = shapes(400, seed=1)
    x_test, y_test = shapes(40, seed=2)
    np.savez(root / "data" / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = root / "shapes.yaml"
    spec.write_text(TINY_SPEC.format(epochs=8, runs="runs"))
    result = run_cli("fit", spec, "--data-dir", root / "data", "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return root / "run" / "model.keras"


def drawing(label: int, paper: str, path):
    """Shape `label` drawn large and off-centre on a 300x200 canvas, as a user draws it."""
    box, width = (170, 60, 290, 180), 12
    if paper == "transparent":
        im = Image.new("RGBA", (300, 200), (255, 255, 255, 0))
        draw_shape(ImageDraw.Draw(im), label, box, width, (255, 255, 255, 255))
    else:
        ground, ink = {"white": (255, 0), "grey": (150, 60), "dim grey": (110, 20)}[paper]
        im = Image.new("L", (300, 200), ground)
        draw_shape(ImageDraw.Draw(im), label, box, width, ink)
    im.save(path)
    return path


@pytest.mark.parametrize("paper", ["white", "grey", "dim grey", "transparent"])
def test_predict_names_a_shape_drawn_anywhere(shape_model, tmp_path, paper):
    files = [drawing(label, paper, tmp_path / f"{label}.png") for label in range(len(SHAPES))]
    result = run_cli("predict", *files, "--model", shape_model, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    assert [row["top"][0]["class"] for row in rows] == [str(label) for label in range(len(SHAPES))]
    assert [row["inverted"] for row in rows] == [paper != "transparent"] * len(SHAPES)


def test_activations_draws_the_image_predict_reads(shape_model, tmp_path):
    drawn = drawing(0, "grey", tmp_path / "ring.png")
    fed, _ = read_for_model(drawn, MNIST, "auto", "dark")
    save(fed[..., 0], tmp_path / "fed.png")
    assert run_cli("activations", shape_model, drawn, "--out", tmp_path / "a.png").exit_code == 0
    assert run_cli("activations", shape_model, tmp_path / "fed.png", "--out", tmp_path / "b.png").exit_code == 0
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------- low confidence


def fixed_model(path, bias):
    """An 8x8 model whose probabilities are softmax(bias) whatever the image."""
    from cnntrain.backend import keras
    from cnntrain.runs.model_file import save_model

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros",
                                                 bias_initializer=keras.initializers.Constant(bias))])
    save_model(model, path, metadata())
    return path


def test_a_low_top_probability_is_said(tmp_path):
    image = save(np.zeros((8, 8), np.uint8), tmp_path / "blank.png")
    unsure = fixed_model(tmp_path / "unsure.keras", [0.0] * 10)          # 0.1 for every class
    result = run_cli("predict", image, "--model", unsure, "--top-k", 1)
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"model: {unsure}\n"
                             f"note: {image}: low confidence (0 0.1000, under 0.5); the image may not show any "
                             "of the 10 classes the model knows\n")
    result = run_cli("predict", image, "--model", unsure, "--json")
    assert json.loads(result.stdout)["predictions"][0]["low_confidence"] is True
    assert result.stderr == ""

    # A folder of such images gets one note, not one per image above its table.
    (tmp_path / "folder").mkdir()
    for i in range(4):
        save(np.zeros((8, 8), np.uint8), tmp_path / "folder" / f"{i}.png")
    result = run_cli("predict", tmp_path / "folder", "--model", unsure, "--top-k", 1)
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"model: {unsure}\n"
                             "note: 4 of 4 images have low confidence (a top probability under 0.5); they may not "
                             "show any of the 10 classes the model knows (--json marks each: low_confidence)\n")

    sure = fixed_model(tmp_path / "sure.keras", [0.0, 0.0, 0.0, 5.0] + [0.0] * 6)   # e^5 / (e^5 + 9) = 0.9428
    result = run_cli("predict", image, "--model", sure, "--top-k", 1)
    assert result.exit_code == 0 and result.stderr == f"model: {sure}\n"
    assert "0.9428" in result.stdout
    assert json.loads(run_cli("predict", image, "--model", sure, "--json").stdout)["predictions"][0][
        "low_confidence"] is False
