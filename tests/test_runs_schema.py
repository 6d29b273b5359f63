"""Files cnntrain reads back, damaged or tampered with: one error naming the file and the field, never
an internal error; `runs` lists a damaged run as damaged; a resume state that disagrees with its spec
or its own history is refused; model metadata that disagrees with the model is a damaged file."""
import json
import math
import shutil
import zipfile

import pytest
from PIL import Image

from helpers.cli import run_cli
from helpers.runs import make_runs

DAMAGED = "  hint: the file was changed or broken after cnntrain wrote it\n"
RESUME = ("  hint: the file was changed or broken after cnntrain wrote it; start a new fit: this run's backup/ "
          "cannot be resumed\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("runs"))


def copy_of(runs, which, tmp_path):
    run = tmp_path / "r" / which
    shutil.copytree(runs / which, run)
    return run


def error_of(result) -> str:
    """stderr without fit's opening notes (device, data), which must be all that precedes the error."""
    lines = result.stderr.splitlines(keepends=True)
    notes = [line for line in lines if line.startswith(("device: ", "data: "))]
    assert lines[:len(notes)] == notes, result.stderr
    return "".join(lines[len(notes):])


class Whole:
    """What a change returns to replace the whole content (other changes edit it in place)."""

    def __init__(self, value):
        self.value = value


def edit_json(path, change):
    value = json.loads(path.read_text())
    new = change(value)
    path.write_text(json.dumps(new.value if isinstance(new, Whole) else value))


STATE = "backup/state.json"
STATE_CASES = [
    ("epochs_done as text", lambda s: s.update(epochs_done="2"),
     "damaged: 'epochs_done' must be an integer >= 0, received: '2' (str)"),
    ("a missing key", lambda s: s.pop("monitor"), "damaged: 'monitor' is missing"),
    ("a broken history row", lambda s: s["history"].__setitem__(1, "garbage"),
     "damaged: 'history[1]' must be an object, received: 'garbage' (str)"),
    ("a history value as text", lambda s: s["history"][0].update(loss="0.5"),
     "damaged: 'history[0].loss' must be a number, received: '0.5' (str)"),
    ("a huge integer in the history", lambda s: s["history"][0].update(accuracy=10 ** 400),
     "damaged: 'history[0].accuracy' must be a number, received: 1" + "0" * 76 + "... (int)"),
    ("epochs_done beyond the spec", lambda s: s.update(epochs_done=99),
     "damaged: 'epochs_done' is 99, but the run trains 2 epochs"),
    ("negative epochs_done", lambda s: s.update(epochs_done=-5),
     "damaged: 'epochs_done' must be an integer >= 0, received: -5 (int)"),
    ("epochs_done against the history", lambda s: s.update(epochs_done=1),
     "damaged: 'history' must hold epochs 1 to 1 in order (epochs_done is 1), received epochs [1, 2]"),
    ("a NaN best", lambda s: s.update(best=math.nan),
     "damaged: 'best' must be a finite number, received: nan (float)"),
    ("weights outside the backup", lambda s: s.update(weights="../../../etc/passwd"),
     "damaged: 'weights' must be 'epoch-0002.weights.h5' after 2 epochs, received: '../../../etc/passwd' (str)"),
    ("a foreign callback field", lambda s: s.update(callbacks=[{"model": 1}]),
     "damaged: 'callbacks[0].model' is not a field of this file"),
    ("a list for the state", lambda s: Whole([]), "damaged: the file must hold an object, received: [] (list)"),
]


@pytest.mark.parametrize("what,change,message", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_a_damaged_resume_state_is_refused(what, change, message, runs, tmp_path):
    run = copy_of(runs, "unfinished", tmp_path)
    edit_json(run / STATE, change)
    result = run_cli("fit", "--resume", run, "--data-dir", runs / "data", "--quiet")
    assert result.exit_code == 1
    assert error_of(result) == f"{run / STATE}: {message}\n{RESUME}"
    assert not (run / "model.keras").exists()


def test_missing_weights_are_named(runs, tmp_path):
    run = copy_of(runs, "unfinished", tmp_path)
    (run / "backup" / "epoch-0002.weights.h5").unlink()
    result = run_cli("fit", "--resume", run, "--data-dir", runs / "data", "--quiet")
    assert error_of(result) == (f"{run / STATE}: damaged: 'weights' names epoch-0002.weights.h5, which is not in "
                                f"{run / 'backup'}\n{RESUME}")


LISTING_CASES = [
    ("metrics.json", lambda m: Whole([1, 2]), "damaged: the file must hold an object, received: [1, 2] (list)"),
    ("metrics.json", lambda m: m.update(epochs="2"), "damaged: 'epochs' must be an integer >= 0, received: '2' (str)"),
    ("metrics.json", lambda m: m.update(validation=[0.5]),
     "damaged: 'validation' must be an object, received: [0.5] (list)"),
    ("metrics.json", lambda m: m["best"].pop("monitor"), "damaged: 'best.monitor' is missing"),
    ("eval.json", lambda e: Whole({"accuracy": "high"}),
     "damaged: 'accuracy' must be a finite number in [0, 1], received: 'high' (str)"),
]


@pytest.mark.parametrize("name,change,message", LISTING_CASES, ids=[f"{c[0]}: {c[2][9:40]}" for c in LISTING_CASES])
def test_runs_lists_a_damaged_run_as_damaged(name, change, message, runs, tmp_path):
    run = copy_of(runs, "finished", tmp_path)
    good = copy_of(runs, "unfinished", tmp_path)
    if name == "eval.json":
        (run / name).write_text(json.dumps({"accuracy": 0.5}))
    edit_json(run / name, change)
    listed = run_cli("runs", "--runs", tmp_path / "r", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["run"]: row for row in json.loads(listed.stdout)}
    assert rows[str(run)]["status"] == "damaged"
    assert rows[str(run)]["problems"] == [f"{run / name}: {message}"]
    assert rows[str(good)]["status"] == "unfinished (2 epochs)" and rows[str(good)]["problems"] == []
    table = run_cli("runs", "--runs", tmp_path / "r")
    assert table.exit_code == 0
    assert table.stderr == f"warning: {run / name}: {message}\n"
    assert "damaged" in table.stdout


def test_intact_runs_are_listed_without_problems(runs, tmp_path):
    """The schemas accept every file cnntrain itself writes (eval.json included)."""
    finished, unfinished = copy_of(runs, "finished", tmp_path), copy_of(runs, "unfinished", tmp_path)
    assert (finished / "eval.json").is_file()
    listed = run_cli("runs", "--runs", tmp_path / "r", "--json")
    rows = {row["run"]: (row["status"], row["problems"]) for row in json.loads(listed.stdout)}
    assert rows == {str(finished): ("completed", []), str(unfinished): ("unfinished (2 epochs)", [])}
    assert listed.stderr == ""


def set_metadata(model, change):
    """Rewrite the cnntrain.json member of a .keras file, as someone editing the zip would."""
    with zipfile.ZipFile(model) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    metadata = json.loads(members["cnntrain.json"])
    change(metadata)
    members["cnntrain.json"] = json.dumps(metadata).encode()
    with zipfile.ZipFile(model, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


METADATA_CASES = [
    ("a huge input shape", lambda m: m.update(input_shape=[30000, 30000, 1]),
     "damaged: 'input_shape' is [30000, 30000, 1], but the model takes [28, 28, 1]"),
    ("a huge image size", lambda m: m.update(image_size=[30000, 30000]),
     "damaged: 'image_size' is [30000, 30000], but the model takes [28, 28]"),
    ("fewer class names", lambda m: m.update(class_names=["a", "b", "c"]),
     "damaged: 'class_names' names 3 classes, but the model outputs 10"),
    ("class names as text", lambda m: m.update(class_names="0123456789"),
     "damaged: 'class_names' must be a non-empty list of texts, received: '0123456789' (str)"),
    ("a shape of texts", lambda m: m.update(input_shape=["28", 28, 1]),
     "damaged: 'input_shape[0]' must be an integer >= 1, received: '28' (str)"),
]


@pytest.mark.parametrize("what,change,message", METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_model_metadata_that_disagrees_with_the_model(what, change, message, runs, tmp_path):
    run = copy_of(runs, "finished", tmp_path)
    set_metadata(run / "model.keras", change)
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    result = run_cli("predict", image, "--model", run / "model.keras")
    assert result.exit_code == 1
    assert result.stderr == f"{run / 'model.keras'}:cnntrain.json: {message}\n{DAMAGED}"


# What compare and card read back (metrics.json, eval.json, env.json, history.csv) is checked as
# `runs` checks it: `runs --compare` on the first of these ended in an internal error (exit 70).
READ_BACK_CASES = [
    ("metrics.json", '{"test": [1, 2], "best": 3}', "damaged: 'name' is missing"),
    ("eval.json", '{"accuracy": 0.5, "samples": "many"}', "damaged: 'samples' must be an integer >= 1, received: 'many' (str)"),
    ("env.json", '{"started": 5}', "damaged: 'started' must be a text, received: 5 (int)"),
    ("history.csv", "epoch,loss\n1,0.5\n2,lots\n", "damaged: line 3: 'loss' must be a number, received: 'lots'"),
    ("history.csv", "epoch,loss\n0,0.5\n", "damaged: '[0].epoch' must be an integer >= 1, received: 0 (int)"),
]


@pytest.mark.parametrize("name,text,message", READ_BACK_CASES, ids=[f"{c[0]}: {c[1][:20]}" for c in READ_BACK_CASES])
def test_compare_and_card_refuse_a_damaged_file(name, text, message, runs, tmp_path):
    run, other = copy_of(runs, "finished", tmp_path), copy_of(runs, "unfinished", tmp_path)
    (run / name).write_text(text)
    expected = f"{run / name}: {message}\n  hint: the file was changed or broken after cnntrain wrote it\n"
    for args in (["runs", "--compare", run, other], ["card", run, "--data-dir", runs / "data"]):
        result = run_cli(*args)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected), args
    assert not (run / "MODEL_CARD.md").exists()
