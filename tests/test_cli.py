"""The command line: help everywhere, exact messages, exit codes, the commands after fit."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cli import modules_after, run_cli as run
from helpers.formats import picture_size
from helpers.runs import trained_runs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
COMMANDS = ["check", "summary", "fit", "runs", "evaluate", "predict", "data", "augment", "filters", "activations"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command):
    result = run(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: cli" + (f" {command}" if command else ""))


def test_help_answers_without_tensorflow():
    code = ("from click.testing import CliRunner; from cnntrain.cli import cli;"
            "[CliRunner().invoke(cli, [c, '--help']) for c in %r]" % COMMANDS)
    assert modules_after(code) == []   # no TensorFlow or Keras: what would make --help slow


@pytest.mark.parametrize("command", ["check", "summary", "fit", "augment", "lr-find"])
def test_spec_errors_answer_without_tensorflow(command, tmp_path):
    code = (f"from click.testing import CliRunner; from cnntrain.cli import cli; "
            f"r = CliRunner().invoke(cli, [{command!r}, {str(tmp_path / 'missing.yaml')!r}]); assert r.exit_code == 1")
    assert modules_after(code) == []


def test_version():
    assert run("--version").output == "cnntrain, version 0.1.0\n"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_passes_check(path):
    result = run("check", path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK {path}: ")


def test_check_ok_line_is_exact():
    result = run("check", CONFIGS / "seed" / "mnist.yaml")
    assert result.output == f"OK {CONFIGS / 'seed' / 'mnist.yaml'}: seed-mnist, 10 layers, 305,194 parameters\n"


def test_check_error_is_one_message_and_exit_1(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text((CONFIGS / "seed" / "mnist.yaml").read_text().replace("Conv2D", "Conv2d", 1))
    result = run("check", spec)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"{spec}:14:7: unknown layer 'Conv2d'\n  hint: did you mean 'Conv2D'? Layer names "
                             "are keras.layers class names or keras.applications model names (case matters).\n")


def test_a_layer_typo_is_reported_before_tensorflow_is_imported(tmp_path):
    """A misspelt layer name was reported only after the TensorFlow import (~6 s): the names are read
    from Keras' own files (spec.keras_names), with the same did-you-mean over layers and applications."""
    spec = tmp_path / "typo.yaml"
    spec.write_text((CONFIGS / "seed" / "mnist.yaml").read_text().replace("Conv2D", "Conv2d", 1))
    expected = (f"{spec}:14:7: unknown layer 'Conv2d'\n  hint: did you mean 'Conv2D'? Layer names are keras.layers "
                "class names or keras.applications model names (case matters).\n")
    done = subprocess.run([sys.executable, "-m", "cnntrain", "check", str(spec)], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", expected)
    code = (f"from click.testing import CliRunner; from cnntrain.cli import cli; "
            f"r = CliRunner().invoke(cli, ['check', {str(spec)!r}]); "
            f"assert (r.exit_code, r.stderr) == (1, {expected!r}), r.output")
    assert modules_after(code) == []


def test_check_reports_a_bad_override():
    result = run("check", CONFIGS / "mnist.yaml", "--set", "fit.epochs=0")
    assert result.exit_code == 1
    assert result.stderr == "--set fit.epochs=0: 'fit.epochs' must be an integer >= 1, received: 0 (int)\n"


def test_error_without_traceback_and_with_debug(tmp_path):
    missing = tmp_path / "missing.yaml"
    plain = subprocess.run([sys.executable, "-m", "cnntrain", "check", str(missing)], capture_output=True, text=True)
    assert plain.returncode == 1
    assert plain.stderr == (f"{missing}: no such spec file\n  hint: give the path of a .yaml spec, e.g. "
                            "configs/mnist.yaml\n")
    debug = subprocess.run([sys.executable, "-m", "cnntrain", "--debug", "check", str(missing)],
                           capture_output=True, text=True)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr


def test_summary_agrees_with_keras():
    result = run("summary", CONFIGS / "seed" / "mnist.yaml", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["params"] for row in data["layers"] if row["params"]] == [320, 9248, 294976, 650]
    assert data["totals"]["params"] == 305_194
    table = run("summary", CONFIGS / "seed" / "mnist.yaml")
    assert "(1 x 3 x 3 + 1) x 32 = 320" in table.stdout
    assert "total 305,194 parameters" in table.stdout
    # 6 FLOPs per MAC per training image x 5,798,656 MACs x 54,000 images (60,000 less 10% validation)
    assert data["totals"]["train_flops_per_epoch"] == 6 * 5_798_656 * 54_000
    assert "about 1.88 TFLOPs to train one epoch" in table.stdout
    assert "holds 294,976 of the model's 305,194 parameters (96.7%)" in table.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny finished run shared by the commands that read runs."""
    return trained_runs(tmp_path_factory.mktemp("trained"), 3, [[]], run)


def test_runs_lists_the_run(trained):
    result = run("runs", "--runs", trained["runs"], "--json")
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs"] == 3
    assert run("runs", "--runs", trained["runs"]).exit_code == 0


def test_evaluate_the_newest_run(trained):
    result = run("evaluate", "--runs", trained["runs"], "--data-dir", trained["data"], "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["samples"] == 50
    assert sum(map(sum, figures["confusion"])) == 50
    run_dir = next(trained["runs"].glob("tiny/*"))
    assert (run_dir / "eval.json").is_file() and (run_dir / "confusion.png").is_file()


def test_evaluate_finds_the_data_where_fit_found_it(trained):
    # Was: without --data-dir again, evaluate looked in Keras' cache only, then tried to download.
    result = run("evaluate", "--runs", trained["runs"], "--offline", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["source"] == str(trained["data"] / "mnist.npz") and figures["samples"] == 50


def test_predict_good_and_bad_files(trained, tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    result = run("predict", trained["image"], bad, "--runs", trained["runs"], "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [Path(p["file"]).name for p in data["predictions"]] == ["seven.png"]
    assert len(data["predictions"][0]["top"]) == 3
    assert result.stderr.startswith(f"{bad}: empty file (0 bytes)")


def test_filters_and_activations_pictures(trained, tmp_path):
    run_dir = next(trained["runs"].glob("tiny/*"))
    result = run("filters", run_dir, "--out", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert picture_size(tmp_path / "f.png")[0] > 100
    result = run("activations", run_dir, trained["image"], "--out", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert picture_size(tmp_path / "a.png")[0] > 100


def test_activations_sees_the_image_exactly_as_predict_does(trained, tmp_path):
    # Was: predict inverted a seven drawn dark on white paper, activations drew the maps of it uninverted.
    run_dir = next(trained["runs"].glob("tiny/*"))
    paper = tmp_path / "paper-seven.png"
    Image.fromarray(255 - np.asarray(Image.open(trained["image"]))).save(paper)
    note = (f"note: {paper} has a light background; inverted it to match the training images "
            "(--invert no to keep it)\n")
    predicted = run("predict", paper, "--runs", trained["runs"])
    said = f"model: {run_dir / 'model.keras'}\n"
    assert predicted.exit_code == 0 and predicted.stderr == said + note
    drawn = run("activations", run_dir, paper, "--out", tmp_path / "paper.png")
    assert drawn.exit_code == 0 and drawn.stderr == said + note
    assert drawn.stdout == f"wrote {tmp_path / 'paper.png'}: 2 layers\n"
    as_is = run("activations", run_dir, trained["image"], "--invert", "no", "--out", tmp_path / "as-is.png")
    assert as_is.exit_code == 0 and as_is.stderr == said
    assert np.array_equal(np.asarray(Image.open(tmp_path / "paper.png")), np.asarray(Image.open(tmp_path / "as-is.png")))


def test_augment_grid(trained, tmp_path):
    spec = trained["root"] / "aug.yaml"
    spec.write_text((trained["root"] / "tiny.yaml").read_text()
                    + "augment:\n  - RandomRotation: {factor: 0.1}\n")
    result = run("augment", spec, "--data-dir", trained["data"], "--out", tmp_path / "g.png", "--images", 2,
                 "--versions", 3)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {tmp_path / 'g.png'}\n"
    width, height = picture_size(tmp_path / "g.png")
    assert width > height  # 4 columns, 2 rows


def test_augment_without_layers_is_an_error(trained):
    result = run("augment", trained["root"] / "tiny.yaml", "--data-dir", trained["data"])
    assert result.exit_code == 1
    assert result.stderr == (f"{trained['root'] / 'tiny.yaml'}: the spec has no augment layers to show\n"
                             "  hint: add layers such as '- RandomFlip: {mode: horizontal}' under augment:\n")


def test_data_list_and_missing_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = run("data", "list", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "mnist" in result.stdout and "cifar10" in result.stdout
    missing = run("data", "verify", "mnist", "--data-dir", tmp_path, "--offline")
    assert missing.exit_code == 1
    assert "mnist" in missing.stderr and str(tmp_path) in missing.stderr
