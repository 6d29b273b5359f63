"""`cnntrain explain`: Grad-CAM finds what decides the class, in a flat CNN and in a nested backbone.

The data: gray noise with one coloured square at a random place; its colour is the class. A
model that learned the colours must look at the square, so the map's strongest cell must lie
inside it: a map that looked anywhere else fails.
"""
from __future__ import annotations

import json

import numpy as np

from cnntrain.backend import keras
from helpers.cli import run_cli
from helpers.formats import image_bytes, write_image_tree

COLOURS = {"red": (230, 30, 30), "green": (30, 230, 30), "blue": (30, 30, 230)}
# A fourth class of plain noise: each colour must then be told by its own square, not by the
# absence of the other colours (which Grad-CAM rightly draws as "everywhere but there").
NAMES = [*COLOURS, "plain"]


def patches(n, size, patch, seed, centred_on=None, classes=4):
    """n images (size x size RGB), their classes and the (top, left) of each one's square;
    `centred_on`: the squares cover one of these points (a coarse map's cell centres); `classes`:
    the first of NAMES drawn."""
    rng = np.random.default_rng(seed)
    x = rng.integers(90, 150, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % classes
    corners = []
    for i in range(n):
        if centred_on is None:
            top, left = rng.integers(0, size - patch + 1, 2)
        else:
            r, c = centred_on[rng.integers(len(centred_on))]
            top, left = (int(np.clip(v - patch // 2 + rng.integers(-2, 3), 0, size - patch)) for v in (r, c))
        if y[i] < len(COLOURS):
            x[i, top:top + patch, left:left + patch] = list(COLOURS.values())[y[i]]
        corners.append((int(top), int(left)))
    return x, y, corners


def inside(peak, corner, patch) -> bool:
    return corner[0] <= peak[0] < corner[0] + patch and corner[1] <= peak[1] < corner[1] + patch


def _write_tests(tmp_path, x, corners):
    files = {f"test/{i}.png": image_bytes(image, "png") for i, image in enumerate(x)}
    write_image_tree(tmp_path / "explain-images", files)
    return [tmp_path / "explain-images" / "test" / f"{i}.png" for i in range(len(x))]


def test_the_map_of_a_flat_cnn_peaks_inside_the_square(tmp_path):
    x, y, _ = patches(200, 32, 8, seed=0)
    files = {f"train/{NAMES[label]}/{i}.png": image_bytes(image, "png") for i, (image, label) in enumerate(zip(x, y))}
    write_image_tree(tmp_path / "squares", files)
    spec = tmp_path / "squares.yaml"
    spec.write_text(f"""\
name: squares
seed: 1
data: {{dataset: image_folder, path: {tmp_path / 'squares'}, validation: none}}
model:
  input_shape: [32, 32, 3]
  layers:
    - Conv2D: {{filters: 8, kernel_size: 3, padding: same, activation: relu}}
    - MaxPooling2D: {{pool_size: 2}}
    - Conv2D: {{filters: 16, kernel_size: 3, padding: same, activation: relu}}
    - GlobalMaxPooling2D
    - Dense: {{units: 4, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.01}}}}
fit: {{batch_size: 16, epochs: 6}}
""")
    run = tmp_path / "run"
    result = run_cli("fit", spec, "--out", run)
    assert result.exit_code == 0, result.output
    test_x, test_y, corners = patches(6, 32, 8, seed=5, classes=len(COLOURS))
    images = _write_tests(tmp_path, test_x, corners)
    result = run_cli("explain", run, *images, "--out", tmp_path / "maps", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [f["class"] for f in found] == [NAMES[label] for label in test_y]
    assert len({f["layer"] for f in found}) == 1 and found[0]["layer"].startswith("conv2d")
    assert all(f["map_shape"] == [16, 16] for f in found)
    assert [inside(f["peak"], corner, 8) for f, corner in zip(found, corners)] == [True] * 6
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [f"{i}.png" for i in range(6)]


def test_the_map_inside_a_nested_model_peaks_inside_the_square(tmp_path):
    # The maps sit inside a nested model that pools them itself, as a backbone with pooling: avg
    # does: the case where a naive gradient model is "Graph disconnected" (tensorflow#44462).
    x, y, _ = patches(200, 32, 8, seed=0)
    L = keras.layers
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    maps = L.Conv2D(16, 3, padding="same", activation="relu", name="features")(
        L.MaxPooling2D(2)(L.Conv2D(8, 3, padding="same", activation="relu")(inputs)))
    inner = keras.Model(inputs, L.GlobalMaxPooling2D()(maps), name="tiny_backbone")
    model = keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255), inner, L.Dense(4, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=6, batch_size=16, verbose=0)
    model.save(tmp_path / "nested.keras")
    test_x, test_y, corners = patches(6, 32, 8, seed=5, classes=len(COLOURS))
    images = _write_tests(tmp_path, test_x, corners)
    result = run_cli("explain", tmp_path / "nested.keras", *images, "--out", tmp_path / "maps", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [f["class"] for f in found] == [str(label) for label in test_y]
    assert {f["layer"] for f in found} == {"tiny_backbone/features"}
    assert all(f["map_shape"] == [16, 16] for f in found)
    assert [inside(f["peak"], corner, 8) for f, corner in zip(found, corners)] == [True] * 6


def test_explain_takes_the_maps_inside_a_keras_applications_backbone(tmp_path):
    from cnntrain.model import build
    from cnntrain.spec import spec_from_text

    spec = spec_from_text("""\
name: b
preprocess: {normalize: none}
model:
  input_shape: [64, 64, 3]
  layers:
    - MobileNetV2: {include_top: false, weights: null, alpha: 0.35, pooling: avg}
    - Dense: {units: 3, activation: softmax}
""", file="b.yaml")
    build.build_model(spec, pretrained=False).save(tmp_path / "b.keras")
    x, _, corners = patches(1, 64, 16, seed=5)
    images = _write_tests(tmp_path, x, corners)
    result = run_cli("explain", tmp_path / "b.keras", *images, "--out", tmp_path / "maps", "--json")
    assert result.exit_code == 0, result.output
    found, = json.loads(result.stdout)
    assert (found["layer"], found["map_shape"]) == ("mobilenetv2_0.35_64/out_relu", [2, 2])
    assert (tmp_path / "maps" / "0.png").stat().st_size > 0


def test_explain_a_class_the_model_does_not_have(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "m.keras")
    image = tmp_path / "a.png"
    image.write_bytes(image_bytes(np.zeros((8, 8), np.uint8), "png"))
    result = run_cli("explain", tmp_path / "m.keras", image, "--class", "cat")
    assert result.exit_code == 1
    assert result.stderr.endswith("error: --class 'cat' is not a class of this model\n  hint: its classes are: 0, 1\n")
