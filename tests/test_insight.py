"""cnntrain.insight: layer arithmetic (layers.py), filters and activation maps (maps.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnntrain.insight import maps
from cnntrain.insight.layers import describe, totals, warnings
from cnntrain.backend import keras
from cnntrain.errors import CnntrainError

L = keras.layers


def seq(input_shape, *layers, name=None):
    return keras.Sequential([keras.Input(input_shape), *layers], name=name)


def mnist_model():
    return seq((28, 28, 1), L.Conv2D(32, 3), L.Activation("relu"), L.Conv2D(32, 3),
               L.Activation("relu"), L.MaxPooling2D(2), L.Flatten(), L.Dense(64),
               L.Activation("relu"), L.Dense(10), L.Activation("softmax"), name="mnist")


def cifar_model():
    def block(filters, padding):
        return [L.Conv2D(filters, 3, padding=padding), L.BatchNormalization(), L.Activation("elu")]
    return seq((32, 32, 3), *block(32, "same"), *block(32, "same"), L.MaxPooling2D(2), L.Dropout(0.2),
               *block(64, "same"), *block(64, "same"), L.MaxPooling2D(2), L.Dropout(0.2),
               *block(128, "valid"), *block(128, "valid"), L.MaxPooling2D(2), L.Dropout(0.5),
               L.Flatten(), L.Dense(10, activation="softmax"), name="cifar")


@pytest.fixture(scope="module")
def mnist():
    return mnist_model()


@pytest.fixture(scope="module")
def cifar():
    return cifar_model()


def _check_params(model, rows):
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert [r.name for r in rows] == [layer.name for layer in layers]
    assert [r.params for r in rows] == [layer.count_params() for layer in layers]
    assert sum(r.params for r in rows) == model.count_params()


# ----------------------------------------------------------------- the two chapter models

def test_mnist_rows(mnist):
    rows = describe(mnist)
    _check_params(mnist, rows)
    assert [r.type for r in rows] == ["Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D",
                                      "Flatten", "Dense", "Activation", "Dense", "Activation"]
    assert [r.output_shape for r in rows] == [(26, 26, 32), (26, 26, 32), (24, 24, 32), (24, 24, 32),
                                              (12, 12, 32), (4608,), (64,), (64,), (10,), (10,)]
    assert [r.formula for r in rows] == [
        "(1 x 3 x 3 + 1) x 32 = 320", "", "(32 x 3 x 3 + 1) x 32 = 9,248", "", "", "",
        "(4608 + 1) x 64 = 294,976", "", "(64 + 1) x 10 = 650", ""]
    assert [r.size_arithmetic for r in rows[:5]] == [
        "(28 + 2x0 - 3) / 1 + 1 = 26", "", "(26 + 2x0 - 3) / 1 + 1 = 24", "",
        "(24 + 2x0 - 2) / 2 + 1 = 12"]
    assert (rows[0].kernel, rows[0].stride, rows[0].padding) == ("3x3", "1x1", "valid")
    assert (rows[4].kernel, rows[4].stride, rows[4].padding) == ("2x2", "2x2", "valid")
    assert rows[6].kernel == rows[6].stride == rows[6].padding == ""
    assert [r.receptive_field for r in rows] == [(3, 3), (3, 3), (5, 5), (5, 5), (6, 6)] + [None] * 5
    assert rows[4].receptive_field_text == "6x6" and rows[5].receptive_field_text == "whole image"
    # MACs by hand: Hout*Wout*M*D*Fh*Fw for convs, in*out for Dense
    assert rows[0].macs == 26 * 26 * 32 * 1 * 3 * 3 == 194_688
    assert rows[2].macs == 24 * 24 * 32 * 32 * 3 * 3 == 5_308_416
    assert rows[6].macs == 4608 * 64 and rows[8].macs == 640
    assert [r.macs for r in rows if r.type in ("Activation", "MaxPooling2D", "Flatten")] == [0] * 6
    t = totals(rows, train_images=60_000)
    assert t == {"params": 305_194, "trainable": 305_194, "non_trainable": 0,
                 "macs_per_image": 5_798_656, "train_flops_per_epoch": 6 * 5_798_656 * 60_000}
    assert totals(rows)["train_flops_per_epoch"] is None


def test_mnist_warns_about_its_dense_layer(mnist):
    rows = describe(mnist)
    assert warnings(mnist, rows) == [
        f"{rows[6].name} (Dense) holds 294,976 of the model's 305,194 parameters (96.7%) from 4,608 "
        "input features: add Conv2D/MaxPooling2D stages before Flatten, or use "
        "GlobalAveragePooling2D instead of Flatten, to shrink it"]


def test_cifar_rows(cifar):
    rows = describe(cifar)
    _check_params(cifar, rows)
    assert cifar.count_params() == 293_930
    convs = [r for r in rows if r.type == "Conv2D"]
    assert [r.formula for r in convs] == [
        "(3 x 3 x 3 + 1) x 32 = 896", "(32 x 3 x 3 + 1) x 32 = 9,248", "(32 x 3 x 3 + 1) x 64 = 18,496",
        "(64 x 3 x 3 + 1) x 64 = 36,928", "(64 x 3 x 3 + 1) x 128 = 73,856",
        "(128 x 3 x 3 + 1) x 128 = 147,584"]
    assert [r.output_shape for r in convs] == [(32, 32, 32), (32, 32, 32), (16, 16, 64), (16, 16, 64),
                                               (6, 6, 128), (4, 4, 128)]
    assert convs[0].size_arithmetic == "same: ceil(32 / 1) = 32, i.e. (32 + 2x1 - 3) / 1 + 1 = 32"
    assert convs[4].size_arithmetic == "(8 + 2x0 - 3) / 1 + 1 = 6"
    bns = [r for r in rows if r.type == "BatchNormalization"]
    assert bns[0].formula == "4 x 32 = 128 (64 trainable)"
    assert [(r.params, r.trainable) for r in bns] == [(128, 64), (128, 64), (256, 128), (256, 128),
                                                      (512, 256), (512, 256)]
    assert rows[-1].formula == "(512 + 1) x 10 = 5,130"
    assert [r.receptive_field[0] for r in convs] == [3, 5, 10, 14, 24, 32]
    pool3 = [r for r in rows if r.type == "MaxPooling2D"][-1]
    assert pool3.output_shape == (2, 2, 128) and pool3.receptive_field == (36, 36)
    assert pool3.receptive_field_text == "36x36 (whole image)"
    t = totals(rows)
    assert (t["params"], t["trainable"], t["non_trainable"]) == (293_930, 293_034, 896)
    assert warnings(cifar, rows) == []


# ----------------------------------------------------------------- receptive fields by hand

@pytest.mark.parametrize("layers, expected", [
    ([L.Conv2D(1, 3), L.MaxPooling2D(2), L.Conv2D(1, 3)], 8),
    ([L.Conv2D(1, 3, strides=2)], 3),
    ([L.Conv2D(1, 3, strides=2), L.Conv2D(1, 3)], 7),
    ([L.Conv2D(1, 3, dilation_rate=2)], 5),
    ([L.Conv2D(1, 3, padding="same"), L.Conv2D(1, 3, padding="same")], 5),
    ([L.Conv2D(1, 5)], 5),
    ([L.Conv2D(1, 3), L.ZeroPadding2D(1), L.BatchNormalization(), L.Dropout(0.1),
      L.Activation("relu"), L.Cropping2D(1), L.Conv2D(1, 3)], 5),
    ([L.Conv2D(1, 3), L.MaxPooling2D(2), L.Conv2D(1, 3), L.MaxPooling2D(2)], 10),
])
def test_receptive_field(layers, expected):
    rows = describe(seq((28, 28, 1), *layers))
    assert rows[-1].receptive_field == (expected, expected)
    assert rows[-1].receptive_field_text == f"{expected}x{expected}"


def test_receptive_field_non_square_and_flatten():
    rows = describe(seq((20, 30, 1), L.Conv2D(1, (3, 5)), L.GlobalMaxPooling2D()))
    assert rows[0].receptive_field == (3, 5)
    assert rows[1].receptive_field is None and rows[1].receptive_field_text == "whole image"


# ----------------------------------------------------------------- other layers

def test_every_kind_of_layer_matches_keras():
    model = seq((28, 27, 4),
                L.Rescaling(1 / 255), L.RandomFlip(), L.Conv2D(8, 3, strides=2, padding="same"),
                L.DepthwiseConv2D(3, depth_multiplier=2), L.SeparableConv2D(8, 3, dilation_rate=2),
                L.Conv2DTranspose(4, 3, strides=2), L.UpSampling2D(2), L.ZeroPadding2D(((1, 2), (3, 4))),
                L.Cropping2D(1), L.Conv2D(8, 2, strides=3, use_bias=False, groups=2),
                L.LayerNormalization(), L.AveragePooling2D(3, padding="same"),
                keras.Sequential([L.Conv2D(4, 1)]), L.Reshape((-1, 4)), L.Conv1D(2, 3),
                L.GlobalAveragePooling1D(), L.Dense(3, use_bias=False))
    rows = describe(model)
    _check_params(model, rows)
    by = {r.type: r for r in reversed(rows)}      # the first of each type
    assert by["Conv2D"].size_arithmetic == ("H: same: ceil(28 / 2) = 14, i.e. (28 + 0+1 - 3) / 2 + 1 = 14, "
                                            "W: same: ceil(27 / 2) = 14, i.e. (27 + 2x1 - 3) / 2 + 1 = 14")
    assert by["DepthwiseConv2D"].formula == "(3 x 3 + 1) x 8 x 2 = 160"
    assert by["SeparableConv2D"].formula == "depthwise 3 x 3 x 16 + pointwise 16 x 8 + 8 biases = 280"
    assert by["SeparableConv2D"].kernel == "3x3 dil 2"
    assert by["SeparableConv2D"].size_arithmetic == "(12 + 2x0 - 5) / 1 + 1 = 8 (dilated kernel 2x(3-1)+1 = 5)"
    assert by["Conv2DTranspose"].formula == "(8 x 3 x 3 + 1) x 4 = 292"
    assert by["Conv2DTranspose"].size_arithmetic == "(8 - 1) x 2 + 3 = 17"
    assert by["UpSampling2D"].size_arithmetic == "17 x 2 = 34"
    assert by["ZeroPadding2D"].size_arithmetic == "H: 34 + 1 + 2 = 37, W: 34 + 3 + 4 = 41"
    assert by["Cropping2D"].size_arithmetic == "H: 37 - 1 - 1 = 35, W: 41 - 1 - 1 = 39"
    grouped = [r for r in rows if r.type == "Conv2D"][1]
    assert grouped.formula == "2 x 2 x 2 x 8 = 64 (no bias) (groups 2: 4 / 2 channels per filter)"
    assert grouped.size_arithmetic == ("H: (35 + 2x0 - 2) / 3 + 1 = 12, "
                                       "W: floor((39 + 2x0 - 2) / 3) + 1 = 13")
    assert grouped.macs == 12 * 13 * 8 * 2 * 2 * 2
    assert by["DepthwiseConv2D"].macs == 12 * 12 * 8 * 2 * 9
    assert by["SeparableConv2D"].macs == 8 * 8 * (16 * 9 + 16 * 8)
    assert by["Conv1D"].formula == "(4 x 3 + 1) x 2 = 26"
    assert by["Dense"].formula == "2 x 3 = 6 (no bias)"
    for unknown in ("Rescaling", "RandomFlip", "LayerNormalization", "Sequential", "Reshape"):
        assert by[unknown].formula == "" and by[unknown].kernel == ""
    assert by["Sequential"].output_shape == (4, 5, 4)
    warns = warnings(model, rows)
    assert any("stride 3x3 is larger than its 2x2 window, so 1 of every 3 rows/columns is never "
               "looked at" in w for w in warns)


def test_pooling_a_1x1_map_warns():
    model = seq((4, 4, 1), L.Conv2D(2, 3, padding="same"), L.MaxPooling2D(4),
                L.MaxPooling2D(2, padding="same"), L.Flatten(), L.Dense(2))
    rows = describe(model)
    warns = warnings(model, rows)
    assert f"{rows[2].name} (MaxPooling2D) pools a 1x1 map: there is nothing left to pool; remove it " \
           "or pool less earlier" in warns


def test_unbuilt_model_is_an_error():
    with pytest.raises(CnntrainError, match="not built"):
        describe(keras.Sequential([L.Dense(2)]))


# ----------------------------------------------------------------- pictures

def _png(path):
    with Image.open(path) as img:
        return img.size, np.asarray(img.convert("RGB"), dtype=np.float64)


def test_filters_figure(mnist, cifar, tmp_path):
    out = maps.filters_figure(mnist, tmp_path / "f.png")
    assert out == {"layer": mnist.layers[0].name, "filters": 32, "shown": 32,
                   "path": str(tmp_path / "f.png"), "size": (630, 600)}    # 6x6 grid of 0.8 in tiles
    size, pixels = _png(tmp_path / "f.png")
    assert size == (630, 600) and pixels.std() > 0
    out = maps.filters_figure(cifar, tmp_path / "sub" / "rgb.png")      # folder is made
    size, pixels = _png(out["path"])
    assert out["filters"] == 32 and size == out["size"] == (540, 600)   # no colour bar
    assert pixels[..., 0].std() > 0 and np.abs(pixels[..., 0] - pixels[..., 1]).max() > 0   # colour
    with pytest.raises(CnntrainError, match="no Conv2D layer"):
        maps.filters_figure(seq((4,), L.Dense(2)), tmp_path / "x.png")


def test_activations_figure(mnist, tmp_path):
    image = np.zeros((28, 28, 1), np.uint8)
    image[6:22, 12:16] = 255
    out = maps.activations_figure(mnist, image, tmp_path / "a.png", max_maps=16)
    names = [layer.name for layer in mnist.layers]
    assert out["layers"] == [f"{names[0]} -> {names[1]}  (26, 26, 32)",
                             f"{names[2]} -> {names[3]}  (24, 24, 32)", f"{names[4]}  (12, 12, 32)"]
    assert out["maps_per_layer"] == [16, 16, 16]
    size, pixels = _png(tmp_path / "a.png")
    assert size == out["size"] == (770, 850) and pixels.std() > 0
    out = maps.activations_figure(mnist, image[..., 0], tmp_path / "b.png", max_maps=3)
    assert out["maps_per_layer"] == [3, 3, 3] and _png(out["path"])[0] == out["size"] == (450, 580)
    with pytest.raises(CnntrainError, match="expects"):
        maps.activations_figure(mnist, np.zeros((32, 32, 3), np.uint8), tmp_path / "c.png")
    with pytest.raises(CnntrainError, match="no convolution or pooling"):
        maps.activations_figure(seq((4,), L.Dense(2)), np.zeros((4,)), tmp_path / "d.png")


def test_summary_and_the_saved_model_name_layers_alike(tiny_spec, mnist_dir, tmp_path):
    import json

    from helpers.cli import run_cli

    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("    - Activation: relu\n", "    - Activation: relu\n"
                                             "    - Conv2D: {filters: 4, kernel_size: 1}\n"
                                             "    - Conv2D: {filters: 4, kernel_size: 1, name: mine}\n"))
    # fit builds two models in its process (preflight's, then the real one): Keras' numbering
    # across the process used to save conv2d_3 where summary, in a fresh process, said conv2d.
    fit = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert fit.exit_code == 0, fit.output
    summary = run_cli("summary", spec, "--json")
    names = [row["name"] for row in json.loads(summary.stdout)["layers"]]
    assert names == ["scale", "conv2d", "activation", "conv2d_1", "mine", "max_pooling2d", "flatten", "dense"]
    filters = run_cli("filters", tmp_path / "run", "--out", tmp_path / "f.png")
    assert filters.stdout == f"wrote {tmp_path / 'f.png'}: 4 filters of conv2d\n"
    from cnntrain.runs.model_file import load_model

    saved = [layer.name for layer in load_model(tmp_path / "run" / "model.keras")[0].layers]
    assert saved == names
