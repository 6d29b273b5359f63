"""Your own images streamed from the decoded-image cache (data.cache: auto, disk, memory, none): the
same fit whichever is chosen, the decode's progress piped and on a real terminal, the validation
split indexing the cache file instead of copying it, the first decode's blocks bounded. Tiny real
JPEG and PNG folders written by the tests."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from helpers import formats as fx
from helpers import terminal
from helpers.cli import run_cli
from helpers.runs import history

from cnntrain.data import load_dataset
from cnntrain.data.rows import Decoding, Rows

SPEC = """\
name: stream
seed: 3
data: {{dataset: image_folder, path: {path}, image_size: [12, 12], validation: split, validation_split: 0.25,
        cache: {cache}}}
model:
  layers:
    - Conv2D: {{filters: 4, kernel_size: 3}}
    - GlobalAveragePooling2D
    - Dense: {{units: 4, activation: softmax}}
fit: {{epochs: 2, batch_size: 8}}
"""


def _folder(tmp_path, n=40, test=0):
    """n shapes in four class folders, half JPEG and half PNG, 28x28 (resized to 12x12 by the spec);
    with `test`, that many more in a test/ split beside train/."""
    x, y = fx.shapes(n + test, seed=4)
    split = ["train/" if test else ""] * n + ["test/"] * test
    files = {f"{split[i]}c{label}/{i:03d}.{'jpg' if i % 2 else 'png'}":
             fx.image_bytes(np.repeat(x[i][..., None], 3, -1), "JPEG" if i % 2 else "PNG")
             for i, label in enumerate(y)}
    return fx.write_image_tree(tmp_path / "shapes", files)


def _spec(tmp_path, root, cache):
    path = tmp_path / f"{cache}.yaml"
    path.write_text(SPEC.format(path=root, cache=cache))
    return path


def _entries(tmp_path):
    folder = tmp_path / "cnntrain-cache"   # conftest's CNNTRAIN_CACHE_DIR
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_data_cache_value_fits_the_same(tmp_path):
    """Streamed batches (disk), one array in memory (memory, and auto for a small set) and no cache
    (none) feed the same images in the same order: the same history to the last digit."""
    root = _folder(tmp_path)
    rows = {}
    for cache in ("none", "disk", "memory", "auto"):
        result = run_cli("fit", _spec(tmp_path, root, cache), "--out", tmp_path / cache, "--deterministic")
        assert result.exit_code == 0, result.output
        assert "data: " + root + ": 30 train, 10 validation, 0 test images of [12, 12, 3], 4 classes" in \
            " ".join(result.stderr.split())
        rows[cache] = [{k: v for k, v in r.items() if k != "seconds"} for r in history(tmp_path / cache)]
        assert len(_entries(tmp_path)) == (0 if cache == "none" else 1)   # disk wrote it; memory, auto read it
    assert rows["disk"] == rows["none"] == rows["memory"] == rows["auto"] and len(rows["none"]) == 2


def test_a_wrong_data_cache_names_its_line(tmp_path):
    spec = _spec(tmp_path, _folder(tmp_path, n=8), "ram")
    result = run_cli("check", spec)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (f"{spec}:4:16: 'data.cache' must be one of auto, disk, memory, none, "
                             "received: 'ram' (str)\n")
    fixed = run_cli("check", _spec(tmp_path, _folder(tmp_path, n=8), "auto"), "--set", "data.cache=Disk")
    assert fixed.exit_code == 1
    assert fixed.stderr == ("--set data.cache=Disk: 'data.cache' must be one of auto, disk, memory, none, "
                            "received: 'Disk' (str)\n  hint: did you mean 'disk'?\n")


DECODED = re.compile(r"decoded 40 images in \d+\.\d s \([\d,]+ images/s on \d+ cores?\)")


def test_the_first_decode_says_its_speed_in_one_piped_line(tmp_path):
    root = _folder(tmp_path)
    first = run_cli("fit", _spec(tmp_path, root, "disk"), "--out", tmp_path / "one")
    assert first.exit_code == 0, first.output
    lines = first.stderr.splitlines()
    assert [bool(DECODED.fullmatch(line)) for line in lines].count(True) == 1
    assert lines.index(next(line for line in lines if DECODED.fullmatch(line))) + 1 == \
        lines.index(next(line for line in lines if line.startswith("data: ")))
    again = run_cli("fit", _spec(tmp_path, root, "disk"), "--out", tmp_path / "two")
    assert again.exit_code == 0 and "decoded" not in again.stderr   # the cache's: nothing decoded
    quiet = run_cli("fit", _spec(tmp_path, root, "none"), "--out", tmp_path / "three", "--quiet")
    assert quiet.exit_code == 0 and "decoded" not in quiet.stderr


PTY_BAR = """
import fcntl, struct, sys, termios, time
from cnntrain.views.decoding import DecodeProgress
fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 60, 80, 0, 0))
bar = DecodeProgress(live=True)
bar.start(100_000)
for _ in range(10):
    bar.advance(9_999)
    time.sleep(0.12)   # rich redraws ten times a second: every state is drawn
bar.advance(10)
bar.done()
"""


def test_the_decode_bar_fits_80_columns_of_a_real_terminal():
    text = terminal.run_in_pty(PTY_BAR, keep_returns=True)
    drawn = [d for line in text.split("\n") for d in line.split("\r") if d.strip()]
    bars = [d for d in drawn if d.startswith("decoding ")]
    assert bars and all(len(d) <= 80 for d in drawn), drawn
    # rich draws the last state when the bar stops, whatever the load did to its refreshes.
    assert any(re.fullmatch(r"decoding [━╺╸]+ [\d,]+/100,000 [\d,]+ images/s +[\d:-]+", d) for d in bars), bars
    assert re.fullmatch(r"decoded 100,000 images in \d+\.\d s \([\d,]+ images/s on \d+ cores?\)", drawn[-1]), drawn


@pytest.mark.parametrize("cache, kind", [("disk", Rows), ("none", Decoding)])
def test_the_validation_split_indexes_the_cache_file(cache, kind, tmp_path):
    """The split of images on disk (or of files decoded when read) is the in-memory split's, image
    for image, and reads nothing."""
    from cnntrain.data import splits
    from cnntrain.spec.load import load_spec

    root = _folder(tmp_path)
    spec = load_spec(_spec(tmp_path, root, cache))
    on_disk = splits.prepare(spec)
    in_memory = splits.held_out(spec, load_dataset("image_folder", path=root, image_size=(12, 12), cache="memory"))
    assert isinstance(on_disk.x_train, kind) and isinstance(on_disk.x_val, kind)
    assert on_disk.x_train.index.tolist() == [i for i in range(40) if i not in on_disk.x_val.index]
    np.testing.assert_array_equal(np.asarray(on_disk.x_train), in_memory.x_train)
    np.testing.assert_array_equal(np.asarray(on_disk.x_val), in_memory.x_val)
    assert on_disk.held_out == in_memory.held_out


@pytest.mark.parametrize("rows_per_block, expected", [(8 << 20, 64), (1_000, 1), (7_000, 2)])
def test_the_first_decode_holds_a_block_not_the_set(rows_per_block, expected, monkeypatch, tmp_path):
    """Each decoding thread holds one block of at most BLOCK_BYTES (and 64 images at most when they
    are small), whatever the number of images: what bounds the decode's memory."""
    from cnntrain.data import decode

    monkeypatch.setattr(decode, "BLOCK_BYTES", rows_per_block)
    root = _folder(tmp_path, n=300)
    sizes = []

    class Recorder(decode.InMemory):
        def block(self, lo, hi):
            sizes.append(hi - lo)
            return super().block(lo, hi)

    items = [decode.Item(p, p) for p in sorted(str(p) for p in (tmp_path / "shapes").rglob("*.*"))]
    got = decode.decode_all(items, "rgb", (28, 28), None, items[0], source=root, target=Recorder((300, 28, 28, 3)))
    assert max(sizes) == expected and sum(sizes) == 300 and got.pixels.shape == (300, 28, 28, 3)


def test_each_worker_gathers_only_its_shard_of_the_batches(tmp_path):
    """A multi-worker fit's rule (AutoShardPolicy.DATA: worker w keeps batch i where i % workers == w),
    applied to the batches of indices: the two workers' batches are the one machine's, dealt out."""
    from cnntrain.feed import pipeline

    data = load_dataset("image_folder", path=_folder(tmp_path, n=20), cache="disk")
    assert isinstance(data.x_train, Rows)
    kwargs = {"batch_size": 3, "augment": [], "seed": 2, "epochs": 2}
    whole = list(pipeline.train_dataset(data.x_train, data.y_train, **kwargs).as_numpy_iterator())
    shards = [list(pipeline.train_dataset(data.x_train, data.y_train, shard=(2, w), **kwargs).as_numpy_iterator())
              for w in (0, 1)]
    assert (len(whole), [len(s) for s in shards]) == (14, [7, 7])
    for i, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(shards[i % 2][i // 2][0], x)
        np.testing.assert_array_equal(shards[i % 2][i // 2][1], y)
    evaluated = [np.concatenate([b[0] for b in pipeline.eval_dataset(data.x_train, data.y_train, batch_size=6,
                                                                      shard=(2, w)).as_numpy_iterator()])
                 for w in (0, 1)]
    assert [len(e) for e in evaluated] == [12, 8]   # batches 0, 2 and 1, 3 of 6, 6, 6, 2 images


def test_evaluate_reads_the_validation_images_from_the_cache_file(tmp_path):
    """evaluate --split validation of a data.cache: disk run: the held-out images streamed from the
    cache file, the fit's last validation accuracy again."""
    import json

    root = _folder(tmp_path)
    run = tmp_path / "run"
    fitted = run_cli("fit", _spec(tmp_path, root, "disk"), "--out", run, "--deterministic")
    assert fitted.exit_code == 0, fitted.output
    result = run_cli("evaluate", run, "--split", "validation", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["samples"] == 10
    assert abs(figures["accuracy"] - float(history(run)[-1]["val_accuracy"])) < 1e-6


@pytest.fixture(scope="module")
def cache_of_a_module_fixture():
    from cnntrain.data import cache
    return cache.root()


def test_a_module_fixture_decodes_into_a_cache_of_the_tests_own(cache_of_a_module_fixture, tmp_path_factory):
    """test_export's module fixtures decoded their image folders into the user's ~/.cache/cnntrain."""
    assert Path(cache_of_a_module_fixture).parent.parent == tmp_path_factory.getbasetemp()


def test_an_image_gone_during_a_fit_without_cache_is_named(monkeypatch, tmp_path):
    """data.cache: none decodes every image at every epoch: a file deleted after the data set was
    loaded (here right after, before the first batch) is our error naming it, not TensorFlow's."""
    from cnntrain.data import splits

    root = _folder(tmp_path, n=8)
    gone = tmp_path / "shapes" / "c1" / "001.jpg"
    prepare = splits.prepare

    def prepared_then_deleted(*args, **kwargs):
        data = prepare(*args, **kwargs)
        gone.unlink()
        return data

    monkeypatch.setattr(splits, "prepare", prepared_then_deleted)
    result = run_cli("fit", _spec(tmp_path, root, "none"), "--out", tmp_path / "run", "--quiet")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"{gone}: no longer exists; it was read when the data set was loaded, and data.cache: none decodes every "
        "image again each time it is fed\n  hint: put the file back as it was and run the command again, or run it "
        "again without the file (data.on_broken: skip leaves out the files unreadable when the data set is loaded, "
        "not those that break later); data.cache: auto or disk decodes each image once, before training\n")


TRUNCATED_READ = """\
import os, sys
from cnntrain.data import load_dataset
from cnntrain.errors import CnntrainError
x = load_dataset("image_folder", path=sys.argv[1], cache="disk").x_train   # the entry the test built
x[:8]
os.truncate(x.path, x.offset + 8 * x.row_bytes)   # another process cut it short
try:
    x[-8:]
except CnntrainError as exc:
    print(exc)
    sys.exit(1)
"""


def test_a_cache_file_truncated_under_a_reader_is_our_error_not_sigbus(tmp_path):
    """A read from the map past the end of a truncated file is a SIGBUS that kills the process: each
    batch first checks the file's size. Re-run, the damaged entry is built again."""
    import subprocess
    import sys

    root = _folder(tmp_path, n=40)
    built = load_dataset("image_folder", path=root, cache="disk")
    entry = _entries(tmp_path)
    done = subprocess.run([sys.executable, "-c", TRUNCATED_READ, root], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, ""), done.stderr
    need = built.x_train.offset + 40 * 28 * 28 * 3
    assert done.stdout == (
        f"{built.x_train.path}: the decoded-image cache file is {built.x_train.offset + 8 * 28 * 28 * 3:,} bytes, "
        f"shorter than the {need:,} its images need: it was truncated or overwritten while in use\n"
        "  hint: run the command again: a damaged cache entry is removed and built again ('cnntrain data cache "
        "clear' removes every entry)\n")
    again = load_dataset("image_folder", path=root, cache="disk")
    assert _entries(tmp_path) == entry
    np.testing.assert_array_equal(np.asarray(again.x_train),
                                  load_dataset("image_folder", path=root, cache="memory").x_train)


def test_views_and_exported_models_read_a_streamed_split_a_block_at_a_time(monkeypatch, tmp_path):
    """evaluate --tta flip, evaluate of an exported .tflite file and the export's own check, on a test
    split left on disk whose whole-array read is refused (blocks of 8 images): the figures of the
    split in memory."""
    import json

    from cnntrain import data as datasets
    from cnntrain.data import rows

    root = _folder(tmp_path, n=40, test=24)
    run = tmp_path / "run"
    fitted = run_cli("fit", _spec(tmp_path, root, "auto"), "--out", run, "--quiet")
    assert fitted.exit_code == 0, fitted.output
    tflite = run / "export" / "tflite" / "model.tflite"

    def figures(target, *args):
        result = run_cli("evaluate", target, "--batch-size", 4, "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def refused(self, dtype=None, copy=None):
        raise AssertionError(f"all {len(self)} images read at once")

    in_memory = {tta: figures(run, "--tta", tta) for tta in ("none", "flip")}
    with monkeypatch.context() as streamed:
        streamed.setattr(datasets, "IN_MEMORY_BYTES", 0)   # data.cache: auto leaves every split on disk
        streamed.setattr(rows, "BLOCK_BYTES", 8 * 12 * 12 * 3)
        streamed.setattr(Rows, "__array__", refused)
        assert figures(run, "--tta", "flip") == in_memory["flip"] and in_memory["flip"]["samples"] == 24
        exported = run_cli("export", run, "--format", "tflite", "--json")
        assert exported.exit_code == 0, exported.output
        on_disk = figures(tflite, "--tta", "flip")
    assert figures(tflite, "--tta", "flip") == on_disk and on_disk["tta"] == "flip"
    check = json.loads(exported.stdout)["check"]
    assert (check["images"], check["agreement"]) == (24, 1.0)
    assert check["keras_accuracy"] == in_memory["none"]["accuracy"]
    assert check["accuracy"] == figures(tflite, "--tta", "none")["accuracy"]
