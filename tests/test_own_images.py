"""Your own images: data.resize (stretch, pad, crop, as Keras' pad/crop_to_aspect_ratio, recorded in
the model so predict does the same), unreadable files all named or skipped, a folder mixing grayscale
and colour files. Tiny real PNG folders written by the tests."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from helpers import formats as fx
from helpers.cli import run_cli

from cnntrain.data import load_dataset
from cnntrain.data.decode import to_pixels
from cnntrain.data.rows import Rows
from cnntrain.errors import CnntrainError


def _pixels(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _wide_tree(n=4, shape=(6, 12, 3)):
    """Two classes of n wide images each (height 6, width 12): class a dark, class b bright."""
    return {f"{cls}/{i}.png": fx.image_bytes(np.clip(_pixels(i, shape) // 4 + base, 0, 255).astype(np.uint8), "PNG")
            for cls, base in (("a", 0), ("b", 180)) for i in range(n)}


def _error(**kwargs) -> CnntrainError:
    with pytest.raises(CnntrainError) as info:
        load_dataset("image_folder", **kwargs)
    return info.value


# ------------------------------------------------------------------ data.resize

@pytest.mark.parametrize("rule, shape, flag", [("pad", (2, 4, 3), "pad_to_aspect_ratio"),
                                               ("crop", (4, 6, 3), "crop_to_aspect_ratio"),
                                               ("crop", (7, 4, 3), "crop_to_aspect_ratio")])
def test_pad_and_crop_are_keras_own_window(rule, shape, flag):
    # To a square that the window fills exactly, so no interpolation differs: Keras' window, pixel for pixel.
    from cnntrain.backend import keras

    image = _pixels(3, shape)
    side = min(shape[:2]) if rule == "crop" else max(shape[:2])
    ours = to_pixels(Image.fromarray(image), 3, (side, side), rule)
    theirs = keras.ops.convert_to_numpy(keras.ops.image.resize(image.astype("float32"), (side, side), **{flag: True}))
    np.testing.assert_array_equal(ours, theirs.astype(np.uint8))


def test_resize_rules_on_a_folder(tmp_path):
    root = fx.write_image_tree(tmp_path / "wide", _wide_tree(n=1))
    first = _pixels(0, (6, 12, 3)) // 4
    stretch = load_dataset("image_folder", path=root, image_size=(6, 6))
    pad = load_dataset("image_folder", path=root, image_size=(12, 12), resize="pad")
    crop = load_dataset("image_folder", path=root, image_size=(6, 6), resize="crop")
    assert stretch.x_train.shape == pad.x_train.shape[:1] + (6, 6, 3) == crop.x_train.shape
    np.testing.assert_array_equal(pad.x_train[0, :3], 0)           # three black rows above
    np.testing.assert_array_equal(pad.x_train[0, 3:9], first)      # the image, unscaled
    np.testing.assert_array_equal(pad.x_train[0, 9:], 0)           # and three below
    np.testing.assert_array_equal(crop.x_train[0], first[:, 3:9])  # the centre square
    assert not np.array_equal(stretch.x_train[0], crop.x_train[0])
    e = _error(path=root, image_size=(6, 6), resize="fit")
    assert (e.message, e.hint) == ("unknown resize 'fit'; expected stretch or pad or crop",
                                   "set data.resize to one of stretch, pad, crop")


def test_spec_refuses_an_unknown_resize(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {layers: [Flatten, {Dense: {units: 2, activation: softmax}}]}\n")
    result = run_cli("check", spec, "--set", "data.resize=letterbox")
    assert result.exit_code == 1
    assert result.stderr == ("--set data.resize=letterbox: 'data.resize' must be one of stretch, pad, crop, "
                             "received: 'letterbox' (str)\n")


FOLDER_SPEC = """\
name: own
data: {{dataset: image_folder, path: {path}, image_size: [8, 8], resize: pad, on_broken: skip,
        validation: none}}
model:
  layers:
    - Conv2D: {{filters: 2, kernel_size: 3}}
    - GlobalAveragePooling2D
    - Dense: {{units: 2, activation: softmax}}
fit: {{epochs: 1, batch_size: 4}}
"""


def test_fit_pads_skips_and_predict_pads_the_same(tmp_path):
    files = _wide_tree()
    files["a/broken.png"] = files["a/0.png"][:30]
    files["b/empty.jpg"] = b""
    root = fx.write_image_tree(tmp_path / "photos", files)
    spec = tmp_path / "own.yaml"
    spec.write_text(FOLDER_SPEC.format(path=root))
    run = tmp_path / "run"
    result = run_cli("fit", spec, "--out", run)
    assert result.exit_code == 0, result.output
    skipped = [os.path.join(root, "a", "broken.png"), os.path.join(root, "b", "empty.jpg")]
    assert (run / "skipped.txt").read_text() == "".join(f"{s}\n" for s in skipped)
    assert (f"warning: skipped 2 unreadable images (data.on_broken: skip), listed in {run / 'skipped.txt'}"
            in " ".join(result.stderr.split()))   # rich folds the long line at 80 columns
    verified = run_cli("data", "verify", spec)
    assert verified.stdout.splitlines()[-3:] == ["skipped 2 unreadable images (data.on_broken: skip):",
                                                 *(f"  {s}" for s in skipped)]
    # A wide photo given to predict is padded as the training images were: the same scores as
    # the padded square itself.
    wide = _pixels(9, (6, 12, 3))
    Image.fromarray(wide).save(tmp_path / "wide.png")
    square = np.zeros((12, 12, 3), np.uint8)
    square[3:9] = wide
    Image.fromarray(square).save(tmp_path / "square.png")
    result = run_cli("predict", tmp_path / "wide.png", tmp_path / "square.png", "--model", run, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    assert [r["file"] for r in rows] == [str(tmp_path / "wide.png"), str(tmp_path / "square.png")]
    assert rows[0]["top"] == rows[1]["top"]


# ------------------------------------------------------------------ broken files

def test_every_broken_file_named_in_one_error(tmp_path):
    files = _wide_tree(n=30)
    for i in range(23):
        files[f"b/{i}.png"] = b"not a png"
    root = fx.write_image_tree(tmp_path / "bad", files)
    e = _error(path=root)
    assert e.file == root
    lines = e.message.splitlines()
    assert lines[0] == "23 of 60 images cannot be decoded:"
    assert len(lines) == 22 and lines[-1] == "  ... and 3 more"
    assert lines[1].startswith(f"  {os.path.join(root, 'b', '0.png')}: cannot be decoded as an image (")
    assert e.hint == ("remove or replace them (truncated, corrupt, or not the format their extension says), "
                      "or set data.on_broken: skip to train without them")
    kept = load_dataset("image_folder", path=root, on_broken="skip")
    assert kept.x_train.shape == (37, 6, 12, 3) and kept.y_train.tolist() == [0] * 30 + [1] * 7
    np.testing.assert_array_equal(kept.x_train[-1], np.clip(_pixels(29, (6, 12, 3)) // 4 + 180, 0, 255))
    assert len(kept.skipped) == 23


def test_one_broken_file_is_named_itself(tmp_path):
    files = _wide_tree()
    files["b/1.png"] = files["b/1.png"][:40]
    root = fx.write_image_tree(tmp_path / "one", files)
    e = _error(path=root)
    assert e.file == os.path.join(root, "b", "1.png")
    assert e.message.startswith("cannot be decoded as an image (")
    assert e.hint == ("remove or replace the file; it is truncated, corrupt, or not the format its extension "
                      "says; or set data.on_broken: skip to train without it")


def test_broken_members_of_an_archive(tmp_path):
    members = {f"set/{k}": v for k, v in _wide_tree().items()}
    members["set/a/x.png"] = b"junk"
    members["set/b/y.png"] = b"junk"
    archive = fx.write_tar(tmp_path / "set.tar.gz", members)
    e = _error(path=archive)
    assert e.file == archive
    lines = e.message.splitlines()
    assert lines[0] == "2 of 10 images cannot be decoded:" and len(lines) == 3
    assert lines[1].startswith("  member 'set/a/x.png': cannot be decoded as an image (UnidentifiedImageError: ")
    assert lines[2].startswith("  member 'set/b/y.png': cannot be decoded as an image (UnidentifiedImageError: ")
    assert load_dataset("image_folder", path=archive, on_broken="skip").skipped == ["set/a/x.png", "set/b/y.png"]


def test_a_folder_mixing_grayscale_and_colour_names_color_mode(tmp_path):
    files = {f"a/{i}.png": fx.image_bytes(_pixels(i, (6, 6)), "PNG") for i in range(3)}
    files.update({f"b/{i}.png": fx.image_bytes(_pixels(i, (6, 6, 3)), "PNG") for i in range(2)})
    root = fx.write_image_tree(tmp_path / "mixed", files)
    e = _error(path=root)
    assert (e.file, e.message, e.hint) == (
        root, f"mixes 3 grayscale and 2 colour images (e.g. '{os.path.join(root, 'a', '0.png')}' and "
              f"'{os.path.join(root, 'b', '0.png')}'); the first class alone made them all grayscale",
        "set data.color_mode: rgb (grayscale images get three equal channels) or grayscale (colour images "
        "become luma) to say which")
    assert load_dataset("image_folder", path=root, color_mode="rgb").x_train.shape == (5, 6, 6, 3)


# ------------------------------------------------------------------ labels from a CSV

CSV_SPEC = """\
name: csv
data: {{dataset: image_folder, labels: {labels}, validation_split: 0.4}}
model: {{layers: [Flatten, {{Dense: {{units: 2, activation: softmax}}}}]}}
"""


def _csv_set(tmp_path, rows: str):
    """Images a/0..3.png (dark) and b/0..3.png (bright) under tmp_path/set, labels.csv beside them."""
    root = tmp_path / "set"
    fx.write_image_tree(root, {f"img/{k.replace('/', '_')}": v for k, v in _wide_tree().items()})
    (root / "labels.csv").write_text(rows)
    spec = tmp_path / "csv.yaml"
    spec.write_text(CSV_SPEC.format(labels=root / "labels.csv"))
    return root, spec


GOOD_ROWS = ("filename,label,split\n" + "".join(f"img/a_{i}.png,night,{'test' if i == 3 else 'train'}\n"
                                                 for i in range(4))
             + "".join(f"img/b_{i}.png,day,\n" for i in range(4)))


def test_labels_from_a_csv_through_data_verify(tmp_path):
    root, spec = _csv_set(tmp_path, GOOD_ROWS)
    result = run_cli("data", "verify", spec, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["classes"], report["train"], report["test"]) == (["day", "night"], 7, 1)
    assert report["per_class_train"] == {"day": 4, "night": 3} and report["per_class_test"] == {"day": 0, "night": 1}
    assert report["source"] == str(root / "labels.csv") and report["warnings"] == []
    ds = load_dataset("image_folder", labels=str(root / "labels.csv"))
    np.testing.assert_array_equal(ds.x_test[0], _pixels(3, (6, 12, 3)) // 4)   # img/a_3.png
    assert ds.y_train.tolist() == [1, 1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("rows, line, message", [
    (GOOD_ROWS + "img/a_9.png,night,train\n", 10,
     "'img/a_9.png' does not exist (looked for {root}/img/a_9.png)"),
    (GOOD_ROWS + "img/a_0.png,day,train\n", 10, "'img/a_0.png' is listed again (first at line 2)"),
    (GOOD_ROWS.replace("img/a_3.png,night,test", "img/a_3.png,dusk,test"), 5,
     "label 'dusk' is not among the training labels ['day', 'night']"),
    (GOOD_ROWS.replace("img/b_0.png,day,", "img/b_0.png,day,val"), 6, "split 'val' is not train or test"),
    ("file,class\nimg/a_0.png,night\n", 1,
     "the header is ['file', 'class']; expected the columns filename and label (and optionally split)"),
])
def test_csv_mistakes_name_file_and_line(tmp_path, rows, line, message):
    root, spec = _csv_set(tmp_path, rows)
    result = run_cli("data", "verify", spec)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{root / 'labels.csv'}:{line}: {message.format(root=root)}"


# ------------------------------------------------------------------ class imbalance

def test_data_verify_warns_of_imbalance_and_small_classes(tmp_path):
    files = {f"many/{i}.png": fx.image_bytes(_pixels(i, (4, 4, 3)), "PNG") for i in range(40)}
    files.update({f"few/{i}.png": fx.image_bytes(_pixels(i, (4, 4, 3)), "PNG") for i in range(3)})
    root = fx.write_image_tree(tmp_path / "skewed", files)
    spec = tmp_path / "skewed.yaml"
    spec.write_text(f"name: s\ndata: {{dataset: image_folder, path: {root}, validation_split: 0.1}}\n"
                    "model: {layers: [Flatten, {Dense: {units: 2, activation: softmax}}]}\n")
    result = run_cli("data", "verify", spec)
    assert result.exit_code == 0, result.output
    # A report to read (it was JSON on a terminal), the JSON one flag away.
    lines = result.stdout.splitlines()
    assert lines[0] == f"image_folder: {root}, 43 train and 0 test images of 4x4x3, 2 classes"
    assert [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")] == [
        ["few", "3"], ["many", "40"]]
    assert json.loads(run_cli("data", "verify", spec, "--json").stdout)["per_class_train"] == {"few": 3, "many": 40}
    assert " ".join(result.stderr.split()) == (
        "warning: heavy class imbalance: 'few' has 3 training images, 13.3 times fewer than 'many' (40); set "
        "fit.class_weight: balanced (or weights per class), or add images "
        "warning: 1 class with fewer images than data.validation_split 0.1 needs for one validation image (10): "
        "'few' (3); their validation figures rest on no or one image")


def test_class_weight_weighs_the_gradient():
    # One SGD step on a batch of class 1 alone: weighing class 1 by 0 leaves the weights as they
    # were, by 3 moves them three times as far as by 1.
    from cnntrain.backend import keras
    from cnntrain.feed import pipeline

    x = _pixels(1, (4, 3, 3, 1))
    y = np.array([1, 1, 1, 1])

    def moved(weights):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3, 3, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.001), loss="sparse_categorical_crossentropy")
        before = model.get_weights()[0].copy()
        ds = pipeline.train_dataset(x, y, batch_size=4, augment=[], seed=0, class_weight=weights)
        model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        return model.get_weights()[0] - before

    unweighted, ignored, tripled = moved(None), moved([1.0, 0.0]), moved([1.0, 3.0])
    assert np.abs(unweighted).max() > 0
    np.testing.assert_array_equal(ignored, 0)
    np.testing.assert_allclose(tripled, 3 * unweighted, rtol=1e-4)


def test_class_weight_in_the_fit_header_and_checked(tmp_path):
    root = fx.write_image_tree(tmp_path / "w", _wide_tree())
    spec = tmp_path / "w.yaml"
    spec.write_text(FOLDER_SPEC.format(path=root).replace("fit: {", "fit: {class_weight: {a: 2, b: 0.5}, "))
    result = run_cli("fit", spec, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "class weights: a 2, b 0.5" in result.stderr.splitlines()
    result = run_cli("fit", spec, "--set", "fit.class_weight={a: 1, c: 2}")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        "--set fit.class_weight={a: 1, c: 2}: 'fit.class_weight' names class 'c', which the data does not have; "
        "its classes: a, b", "  hint: keys are the class names: folder names, or the labels of data.labels"]
    result = run_cli("check", spec, "--set", "fit.class_weight=heavy")
    assert result.exit_code == 1
    assert result.stderr.startswith("--set fit.class_weight=heavy: 'fit.class_weight' must be balanced or map "
                                    "class names to weights, received: 'heavy' (str)\n")


# ------------------------------------------------------------------ the decoded-image cache

def _entries(tmp_path):
    folder = tmp_path / "cnntrain-cache"   # conftest's CNNTRAIN_CACHE_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Heard:
    """A decode's progress as load_dataset reports it: how many images were decoded (0: a cache hit)."""

    def __init__(self):
        self.total, self.decoded, self.finished = None, 0, False

    def start(self, total):
        self.total = total

    def advance(self, count):
        self.decoded += count

    def done(self):
        self.finished = True


def _load(root, **kwargs):
    heard = Heard()
    data = load_dataset("image_folder", path=root, progress=heard, **kwargs)
    return data, heard.decoded


def test_second_load_comes_from_the_cache_and_a_change_rebuilds_it(tmp_path):
    root = fx.write_image_tree(tmp_path / "c", _wide_tree())
    first, decoded = _load(root)
    assert isinstance(first.x_train, np.ndarray) and decoded == 8 and len(_entries(tmp_path)) == 1
    again, decoded = _load(root)
    assert decoded == 0 and isinstance(again.x_train, np.ndarray)   # auto: a small split in memory
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert (again.class_names, again.y_train.tolist()) == (first.class_names, first.y_train.tolist())
    on_disk, decoded = _load(root, cache="disk")
    assert decoded == 0 and isinstance(on_disk.x_train, Rows)
    np.testing.assert_array_equal(on_disk.x_train[np.arange(8)], first.x_train)
    assert _load(root, cache="none")[1] == 8
    # Another image_size, and a changed file, are other entries: never the old pixels.
    assert _load(root, image_size=(4, 4))[1] == 8
    Image.fromarray(np.full((6, 12, 3), 7, np.uint8)).save(os.path.join(root, "a", "0.png"))
    changed, decoded = _load(root)
    assert decoded == 8 and (changed.x_train[0] == 7).all()
    assert len(_entries(tmp_path)) == 3


def test_a_damaged_cache_entry_is_rebuilt(tmp_path):
    root = fx.write_image_tree(tmp_path / "d", _wide_tree())
    first = np.asarray(_load(root, cache="disk")[0].x_train)
    (entry,) = _entries(tmp_path)
    array = tmp_path / "cnntrain-cache" / entry / "x_train.npy"
    array.write_bytes(array.read_bytes()[:-10])
    rebuilt, decoded = _load(root, cache="disk")
    assert decoded == 8
    np.testing.assert_array_equal(np.asarray(rebuilt.x_train), first)
    assert _load(root, cache="disk")[1] == 0


def test_data_cache_shows_and_clears(tmp_path):
    root = fx.write_image_tree(tmp_path / "s", _wide_tree())
    load_dataset("image_folder", path=root)
    (entry,) = _entries(tmp_path)
    size = sum(p.stat().st_size for p in (tmp_path / "cnntrain-cache" / entry).iterdir())
    shown = run_cli("data", "cache")
    assert shown.exit_code == 0
    used = time.strftime("%Y-%m-%d %H:%M", time.localtime((tmp_path / "cnntrain-cache" / entry / "manifest.json").stat().st_mtime))
    # Which folder each entry holds (it was a hash of 32 digits), its image shape and last use.
    assert shown.stdout.splitlines()[0] == (f"decoded-image cache {tmp_path / 'cnntrain-cache'}: 1 entry, 0.0 MB "
                                            "('cnntrain data cache clear' removes them)")
    assert [cell.strip() for cell in shown.stdout.splitlines()[4].split("│")[1:-1]] == [
        str(root), "8", "6x12x3", "0.0", used]
    cleared = run_cli("data", "cache", "clear")
    assert cleared.stdout == f"removed 1 cache entry ({size / 1e6:,.1f} MB) from {tmp_path / 'cnntrain-cache'}\n"
    assert _entries(tmp_path) == []


def test_a_fit_killed_while_it_decodes_into_the_cache_never_uses_it(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    from helpers.procs import reaped
    from helpers.runs import history

    # Enough images that the decode lasts seconds: on a loaded machine this process may sleep ~1 s.
    files = {f"{c}/{i}.png": fx.image_bytes(_pixels(i, (96, 96, 3)), "PNG") for c in ("a", "b") for i in range(1000)}
    root = fx.write_image_tree(tmp_path / "big", files)
    spec = tmp_path / "big.yaml"
    spec.write_text(FOLDER_SPEC.format(path=root).replace("on_broken: skip", "on_broken: error, cache: disk"))
    args = [sys.executable, "-m", "cnntrain", "fit", str(spec), "--out", str(tmp_path / "killed"), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cache = tmp_path / "cnntrain-cache"
    with reaped(proc):
        deadline = time.time() + 300
        # The images' file appears in the temporary folder as the decode begins to fill it.
        while time.time() < deadline and not list(cache.glob(".tmp-*/x_train.npy")):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left = _entries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".tmp-")   # half written, under its temporary name
    result = run_cli("fit", spec, "--out", tmp_path / "refit", "--quiet", "--deterministic")
    assert result.exit_code == 0, result.output
    (entry,) = _entries(tmp_path)   # the killed build's folder removed, not used
    assert not entry.startswith(".tmp-")
    # The same fit on a clean cache: the same history, to the last digit.
    monkeypatch.setenv("CNNTRAIN_CACHE_DIR", str(tmp_path / "clean-cache"))
    clean = run_cli("fit", spec, "--out", tmp_path / "clean", "--deterministic")
    assert clean.exit_code == 0, clean.output
    assert f"data: {root}: 2,000 train, 0 validation, 0 test images of [8, 8, 3], 2 classes\n" in clean.stderr
    refit, fresh = ([{k: v for k, v in r.items() if k != "seconds"} for r in history(tmp_path / run)]
                    for run in ("refit", "clean"))
    assert refit == fresh and len(refit) == 1


def test_batches_streamed_from_the_cache_are_the_in_memory_ones(tmp_path):
    from cnntrain.feed import pipeline

    root = fx.write_image_tree(tmp_path / "p", _wide_tree(n=5))
    in_memory = load_dataset("image_folder", path=root, cache="memory")
    on_disk = load_dataset("image_folder", path=root, cache="disk")
    assert isinstance(in_memory.x_train, np.ndarray) and isinstance(on_disk.x_train, Rows)
    kwargs = {"batch_size": 3, "augment": [], "seed": 5, "epochs": 2}
    a = list(pipeline.train_dataset(in_memory.x_train, in_memory.y_train, **kwargs).as_numpy_iterator())
    b = list(pipeline.train_dataset(on_disk.x_train, on_disk.y_train, **kwargs).as_numpy_iterator())
    assert len(a) == len(b) == 8
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    evaluated = list(pipeline.eval_dataset(on_disk.x_train, on_disk.y_train, batch_size=4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([e[0] for e in evaluated]), in_memory.x_train.astype(np.float32))
