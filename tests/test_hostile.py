"""Hostile input, end to end: specs that try to delete, to write outside their run folder, to reach
the network, to pass wrong types; `--out` on a user's folder (files, its own backup/), with a NaN in
epoch 1 and with kills at random moments; a resume state that names a file outside its run.

Every case hashes the files around the run before and after (nothing outside the run folder may
change), listens on 127.0.0.1 (no request may arrive), and ends in a clear error, never a traceback.
docs/reliability.md's tables name these tests.
"""
from __future__ import annotations

import hashlib
import http.server
import inspect
import json
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.procs import reaped

from cnntrain.backend import keras
from cnntrain.model import policy
from cnntrain.runs import folder, schema
from test_reliability import assert_complete, epochs_done, start_fit

TRUST = "if you wrote this spec yourself and trust it, run again with --trust-spec"


def tree(root: Path) -> dict:
    """Every file and folder under `root`: relative path -> sha256 of its bytes (or 'folder')."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def project(root: Path) -> Path:
    """A user's project folder: a README, source code, and its own backup/ folder."""
    (root / "src").mkdir(parents=True)
    (root / "backup").mkdir()
    (root / "README.md").write_text("# my project\n")
    (root / "src" / "main.py").write_text("print('hello')\n")
    (root / "backup" / "thesis.tex").write_text("years of work\n")
    return root


@pytest.fixture
def listener():
    """An HTTP server on 127.0.0.1 that records every request it gets; it stops with the test."""
    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            requests.append((self.command, self.path, self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(200)
            self.end_headers()

        do_GET = do_PUT = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.timeout = 1
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def with_callbacks(spec: Path, *entries: str) -> Path:
    """The tiny spec with `entries` as fit.callbacks, one a line: line 21 is the first."""
    text = spec.read_text()
    lines = "".join(f"    - {entry}\n" for entry in entries)
    spec.write_text(text.replace("  epochs: ", "  callbacks:\n" + lines + "  epochs: ", 1))
    assert spec.read_text().splitlines()[20] == f"    - {entries[0]}"
    return spec


def builds(spec: Path) -> None:
    """The spec validates and its model, optimizer, loss and callbacks build, as in `check` (which
    then also runs a training step: seconds a case, too many for these lists)."""
    from cnntrain.model import build
    from cnntrain.spec import load_spec

    build.build_all(load_spec(spec))


def at(spec: Path, line: int, fragment: str) -> str:
    """`SPEC:LINE:COL` of `fragment` on line `line` of the spec."""
    return f"{spec}:{line}:{spec.read_text().splitlines()[line - 1].index(fragment) + 1}"


def refused_everywhere(spec, mnist_dir, tmp_path, expected: str, *extra):
    """`check`, `summary` and `fit` all give exactly `expected` (exit 1), and no file under tmp_path changes."""
    before = tree(tmp_path)
    for command in ("check", "summary"):
        checked = run_cli(command, spec, *extra)
        assert (checked.exit_code, checked.stdout, checked.stderr) == (1, "", expected)
    fitted = run_cli("fit", spec, "--data-dir", mnist_dir, "--quiet", *extra)
    assert (fitted.exit_code, fitted.stdout, fitted.stderr) == (1, "", expected)
    assert tree(tmp_path) == before
    assert not (tmp_path / "runs").exists()


def callback_refused(tiny_spec, mnist_dir, tmp_path, entry: str, fragment: str, message: str, name="tiny.yaml"):
    """A spec whose one callback is `entry` is refused by check and fit with `message`, at `fragment`."""
    spec = with_callbacks(tiny_spec(epochs=2, name=name), entry)
    refused_everywhere(spec, mnist_dir, tmp_path, f"{at(spec, 21, fragment)}: {message}")
    return spec


# ---------------------------------------------------------------- specs that delete, write, reach out


def test_backup_and_restore_cannot_delete_a_folder(tiny_spec, mnist_dir, tmp_path):
    victim = project(tmp_path / "victim")
    callback_refused(tiny_spec, mnist_dir, tmp_path, f"BackupAndRestore: {{backup_dir: {victim}}}", "Backup", (
        "callback 'BackupAndRestore' is not allowed in a spec: it deletes its backup_dir when training ends, and "
        "cnntrain keeps its own resume state (backup/ in the run folder)\n"
        f"  hint: remove it: every fit is resumable with 'cnntrain fit --resume RUN'; {TRUST}\n"))
    assert (victim / "backup" / "thesis.tex").read_text() == "years of work\n"
    assert run_cli("check", tmp_path / "tiny.yaml", "--trust-spec").exit_code == 0    # the author's own spec


def test_remote_monitor_reaches_no_one(tiny_spec, mnist_dir, tmp_path, listener):
    url, requests = listener
    spec = callback_refused(tiny_spec, mnist_dir, tmp_path, f"RemoteMonitor: {{root: '{url}'}}", "Remote", (
        "callback 'RemoteMonitor' is not allowed in a spec: it sends every "
        f"epoch's metrics to a network address\n  hint: remove it; {TRUST}\n"))
    assert requests == []
    # The listener hears a callback that does reach out: the spec's author may allow it.
    pytest.importorskip("requests", reason="RemoteMonitor sends with requests; without it, nothing to hear")
    trusted = run_cli("fit", spec, "--data-dir", mnist_dir, "--quiet", "--trust-spec")
    assert trusted.exit_code == 0, trusted.output
    assert [(method, path) for method, path, _ in requests] == [("POST", "/publish/epoch/end/")] * 2


def test_a_callback_not_on_the_list_is_refused(tiny_spec, mnist_dir, tmp_path):
    callback_refused(tiny_spec, mnist_dir, tmp_path, "ProgbarLogger", "Progbar", (
        "callback 'ProgbarLogger' is not allowed in a spec: only "
        f"{', '.join(policy.CALLBACKS)} are, which write only inside the run folder and reach no network\n"
        f"  hint: {TRUST}\n"))


@pytest.mark.parametrize("entry, fragment, what", [
    ("CSVLogger: {filename: /tmp/cnntrain-hostile.csv}", "/tmp", "CSVLogger: filename '/tmp/cnntrain-hostile.csv'"),
    ("CSVLogger: ../../escape.csv", "../", "CSVLogger: filename '../../escape.csv'"),
    ("ModelCheckpoint: {filepath: 'logs/../../escape.keras'}", "'logs", "ModelCheckpoint: filepath "
     "'logs/../../escape.keras'"),
    ("TensorBoard: {log_dir: /tmp/cnntrain-hostile-tb}", "/tmp", "TensorBoard: log_dir '/tmp/cnntrain-hostile-tb'"),
])
def test_callback_paths_outside_the_run_folder_are_refused(tiny_spec, mnist_dir, tmp_path, entry, fragment, what):
    name = Path(what.split("'")[1]).name
    callback_refused(tiny_spec, mnist_dir, tmp_path, entry, fragment, (
        f"{what} is outside the run folder: a spec writes only inside its run folder\n"
        f"  hint: give a path inside it, such as '{name}'; {TRUST}\n"))
    assert not Path("/tmp/cnntrain-hostile.csv").exists() and not Path("/tmp/cnntrain-hostile-tb").exists()


def test_callback_paths_to_the_network_or_onto_our_files_are_refused(tiny_spec, mnist_dir, tmp_path, listener):
    url, requests = listener
    callback_refused(tiny_spec, mnist_dir, tmp_path, f"TensorBoard: {{log_dir: '{url}/logs'}}", "'http", (
        f"TensorBoard: log_dir '{url}/logs' is a URL: a spec writes only inside its run folder and makes no "
        f"network request\n  hint: {TRUST}\n"))
    assert requests == []
    callback_refused(tiny_spec, mnist_dir, tmp_path, "CSVLogger: backup/log.csv", "backup/", (
        "CSVLogger: filename 'backup/log.csv' is 'backup', which cnntrain writes "
        "itself\n  hint: choose another name, e.g. 'logs/...'\n"), name="own.yaml")


def test_output_dir_stays_below_the_current_folder(tiny_spec, mnist_dir, tmp_path):
    for value in ("../elsewhere", str(tmp_path.parent / "elsewhere"), "s3://bucket/runs"):
        spec = tiny_spec(epochs=1)
        spec.write_text(spec.read_text().replace("  dir: runs", f"  dir: {value}"))
        refused_everywhere(spec, mnist_dir, tmp_path, (
            f"{at(spec, 22, value)}: 'output.dir' '{value}' is outside the current folder: a spec writes only "
            "below the folder it is run in\n  hint: give a relative folder such as 'runs', or choose the run "
            f"folder with --out; {TRUST}\n"))
    assert not (tmp_path.parent / "elsewhere").exists()


def test_allowed_callbacks_write_inside_the_run_folder(tiny_spec, mnist_dir, tmp_path):
    spec = with_callbacks(tiny_spec(epochs=2), "CSVLogger: log.csv", "ModelCheckpoint: {filepath: 'ckpt/last.keras'}",
                          "TensorBoard", "EarlyStopping: {patience: 3}", "ReduceLROnPlateau: {patience: 1}",
                          "TerminateOnNaN")
    checked = run_cli("check", spec)
    assert checked.exit_code == 0, checked.output
    before = tree(tmp_path)
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert_complete(run, 2, extra={"log.csv", "ckpt", "logs"})
    assert (run / "log.csv").read_text().count("\n") == 3 and (run / "ckpt" / "last.keras").is_file()
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("run")} == before
    marker = json.loads((run / folder.MARKER).read_text())
    assert {"log.csv", "ckpt", "logs", "backup", "spec.yaml"} <= set(marker["names"])


# ---------------------------------------------------------------- wrong types


def _typed_arguments(cls):
    """(argument, a value of the wrong type, a value of the right one) for each typed argument."""
    for key, info in inspect.signature(cls.__init__).parameters.items():
        default = info.default
        if isinstance(default, bool):
            yield key, "no", not default
        elif isinstance(default, (int, float)) and not (cls.__name__, key) == ("TensorBoard", "profile_batch"):
            yield key, str(default), default
        elif isinstance(default, str) and key != "name":
            yield key, [default], default


# Paths (CSVLogger's filename, ...) are the policy's: test_callback_paths_* and the last case here.
TYPED = [(name, key, wrong, right) for name in policy.CALLBACKS
         for key, wrong, right in _typed_arguments(getattr(keras.callbacks, name)) if key not in policy.CALLBACKS[name]]


def test_every_typed_callback_argument_is_covered():
    assert len(TYPED) >= 30
    assert {name for name, *_ in TYPED} == set(policy.CALLBACKS)


@pytest.mark.parametrize("name, key, wrong, right", TYPED, ids=[f"{n}.{k}" for n, k, *_ in TYPED])
def test_wrong_types_in_callbacks_are_errors_at_their_line(tiny_spec, name, key, wrong, right):
    checkpoint = "ckpt.weights.h5" if key == "save_weights_only" else "ckpt.keras"   # Keras wants that name then
    paths = {"CSVLogger": "filename: log.csv, ", "ModelCheckpoint": f"filepath: {checkpoint}, "}.get(name, "")
    good = with_callbacks(tiny_spec(name="good.yaml"), f"{name}: {{{paths}{key}: {json.dumps(right)}}}")
    builds(good)
    spec = with_callbacks(tiny_spec(), f"{name}: {{{paths}{key}: {json.dumps(wrong)}}}")
    result = run_cli("check", spec)
    need = {bool: "true or false", str: "a name"}.get(type(right), "a number")
    shown = f"{wrong!r} ({type(wrong).__name__})"
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{at(spec, 21, json.dumps(wrong))}: {name}: '{key}' must be {need}, "
                                    f"received: {shown}\n  hint: ")


def test_a_path_of_the_wrong_type(tiny_spec):
    spec = with_callbacks(tiny_spec(), "TensorBoard: {log_dir: [logs]}")
    result = run_cli("check", spec)
    assert (result.exit_code, result.stderr) == (1, f"{at(spec, 21, '[logs]')}: TensorBoard: log_dir must be a path "
                                                 "relative to the run folder, received: ['logs'] (list)\n"
                                                 "  hint: e.g. 'log.csv'\n")


def test_a_quoted_patience_is_an_error_before_any_run_folder(tiny_spec, mnist_dir, tmp_path):
    spec = with_callbacks(tiny_spec(epochs=4), 'EarlyStopping: {patience: "3"}')
    quoted = '"3"'
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{at(spec, 21, quoted)}: EarlyStopping: 'patience' must be a number, received: '3' (str)\n"
        "  hint: write the number without quotes: 'patience: 3'\n"))


SCHEDULES = {
    "CosineDecay": {"initial_learning_rate": 0.01, "decay_steps": 10, "warmup_target": 0.02, "warmup_steps": 2},
    "CosineDecayRestarts": {"initial_learning_rate": 0.01, "first_decay_steps": 10},
    "ExponentialDecay": {"initial_learning_rate": 0.01, "decay_steps": 10, "decay_rate": 0.9, "staircase": True},
    "InverseTimeDecay": {"initial_learning_rate": 0.01, "decay_steps": 10, "decay_rate": 0.5},
    "PiecewiseConstantDecay": {"boundaries": [5, 10], "values": [0.01, 0.005, 0.001]},
    "PolynomialDecay": {"initial_learning_rate": 0.01, "decay_steps": 10, "cycle": False},
}
WRONG_SCHEDULES = [(name, key) for name, args in SCHEDULES.items() for key in args]


def test_every_schedule_is_covered():
    assert set(SCHEDULES) == {n for n in dir(keras.optimizers.schedules)
                              if n[:1].isupper() and n != "LearningRateSchedule"}


def schedule_spec(tiny_spec, name, args, file="tiny.yaml"):
    spec = tiny_spec(name=file)
    spec.write_text(spec.read_text().replace("{Adam: {learning_rate: 0.01}}",
                                             f"{{Adam: {{learning_rate: {{{name}: {json.dumps(args)}}}}}}}"))
    return spec


@pytest.mark.parametrize("name, key", WRONG_SCHEDULES, ids=[f"{n}.{k}" for n, k in WRONG_SCHEDULES])
def test_wrong_types_in_schedules_are_errors_at_their_line(tiny_spec, name, key):
    builds(schedule_spec(tiny_spec, name, SCHEDULES[name], "good.yaml"))
    right = SCHEDULES[name][key]
    wrong = {bool: "yes", list: "5, 10"}.get(type(right), "ten")
    spec = schedule_spec(tiny_spec, name, {**SCHEDULES[name], key: wrong})
    result = run_cli("check", spec)
    need = {bool: "true or false", list: "a list of numbers"}.get(type(right), "a number")
    assert result.exit_code == 1
    if key.endswith(("steps", "boundaries")):   # steps may also be written 'N epochs' or 'all'
        assert result.stderr == (f"{at(spec, 17, json.dumps(wrong))}: {key} must be a number of steps, 'N epochs', "
                                 f"'all' or 'all - N epochs', received: '{wrong}'\n  hint: e.g. decay_steps: all (the "
                                 "whole run, which follows --epochs), or warmup_steps: '1 epochs'\n")
    else:
        assert result.stderr.startswith(f"{at(spec, 17, json.dumps(wrong))}: {name}: '{key}' must be {need}, "
                                        f"received: '{wrong}' (str)\n  hint: ")


def test_a_schedule_name_where_a_schedule_is_needed(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("learning_rate: 0.01", "learning_rate: CosineDecay"))
    refused_everywhere(spec, mnist_dir, tmp_path, (
        f"{at(spec, 17, 'CosineDecay')}: Adam: 'learning_rate' must be a number or a schedule {{ClassName: "
        "{arguments}}, received: 'CosineDecay' (str)\n  hint: e.g. learning_rate: 0.001, or learning_rate: "
        "{CosineDecay: {initial_learning_rate: 0.001, decay_steps: \"10 epochs\"}}\n"))
    steps = schedule_spec(tiny_spec, "CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": "2 epochs"},
                          "epochs.yaml")
    assert run_cli("check", steps).exit_code == 0


def _first_number(cls):
    """An optimizer's first number argument but the learning rate, with its default."""
    for key, info in inspect.signature(cls.__init__).parameters.items():
        if key != "learning_rate" and isinstance(info.default, (int, float)) and not isinstance(info.default, bool):
            return key, info.default
    return "clipnorm", 1.0     # every optimizer has it (default None)


OPTIMIZERS = sorted(n for n in dir(keras.optimizers)
                    if n[:1].isupper() and isinstance(getattr(keras.optimizers, n), type)
                    and issubclass(getattr(keras.optimizers, n), keras.optimizers.Optimizer)
                    and n not in ("Optimizer", "LossScaleOptimizer", "MultiOptimizer"))   # these wrap others


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_wrong_types_in_optimizers_are_errors_at_their_line(tiny_spec, name):
    key, right = _first_number(getattr(keras.optimizers, name))
    spec = tiny_spec()
    spec.write_text(spec.read_text().replace("{Adam: {learning_rate: 0.01}}", f'{{{name}: {{{key}: "{right}"}}}}'))
    result = run_cli("check", spec)
    quoted = f'"{right}"'
    assert (result.exit_code, result.stderr) == (1, f"{at(spec, 17, quoted)}: {name}: '{key}' must be a number, "
                                                 f"received: '{right}' (str)\n  hint: write the number without "
                                                 f"quotes: '{key}: {right}'\n")
    spec.write_text(spec.read_text().replace(quoted, str(right)))
    builds(spec)


@pytest.mark.parametrize("line, value, name, key, need, hint", [
    ("  loss: {SparseCategoricalCrossentropy: {from_logits: \"no\"}}", '"no"', "SparseCategoricalCrossentropy",
     "from_logits", "true or false", "write it without quotes: 'from_logits: false'"),
    ("  metrics: [accuracy, {SparseTopKCategoricalAccuracy: {k: \"3\"}}]", '"3"', "SparseTopKCategoricalAccuracy",
     "k", "a number", "write the number without quotes: 'k: 3'"),
    ("  loss: {CategoricalFocalCrossentropy: {gamma: [2]}}", "[2]", "CategoricalFocalCrossentropy", "gamma",
     "a number", "see the arguments of keras.losses.CategoricalFocalCrossentropy"),
])
def test_wrong_types_in_losses_and_metrics_are_errors_at_their_line(tiny_spec, line, value, name, key, need, hint):
    spec = tiny_spec()
    spec.write_text(spec.read_text().replace("compile:\n", f"compile:\n{line}\n"))
    result = run_cli("check", spec)
    shown = {'"no"': "'no' (str)", '"3"': "'3' (str)", "[2]": "[2] (list)"}[value]
    assert (result.exit_code, result.stderr) == (1, f"{at(spec, 17, value)}: {name}: '{key}' must be {need}, "
                                                 f"received: {shown}\n  hint: {hint}\n")
    # The same argument of the right type passes (check also trains one step with it, so the loss
    # must suit the integer labels of the tiny spec).
    spec.write_text(spec.read_text().replace(line, "  loss: {SparseCategoricalCrossentropy: {from_logits: false}}"))
    assert run_cli("check", spec).exit_code == 0


# ---------------------------------------------------------------- --out on a user's folder


def test_out_on_a_user_folder_is_refused_and_left_as_it_was(tiny_spec, mnist_dir, tmp_path):
    user, spec = project(tmp_path / "project"), tiny_spec(epochs=1)
    before = tree(tmp_path)
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", user)
    assert result.exit_code == 1
    assert result.stderr == (f"{user}: this folder is not empty and is not a cnntrain run folder (it holds README.md, "
                             "backup, src); cnntrain trains only into a new or empty folder, so that it never "
                             f"deletes your files\n  hint: choose a new folder, e.g. --out {user / 'run'} (created "
                             "for you)\n")
    assert tree(tmp_path) == before
    # Its subfolder, as the hint says: a run, and the project around it unchanged.
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", user / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert_complete(user / "run", 1)
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("project/run")} == before


NAN_IN_EPOCH_1 = "learning_rate: .nan"
NAN_ERROR = ("error: the loss became NaN at epoch 1, step 2, before any epoch finished; nothing was saved\n"
             "  hint: lower the learning rate, or normalize the input (preprocess.normalize: scale)\n")


def test_nan_in_the_first_epoch_removes_only_the_runs_own_files(tiny_spec, mnist_dir, tmp_path):
    spec = tiny_spec(epochs=2)
    spec.write_text(spec.read_text().replace("learning_rate: 0.01", NAN_IN_EPOCH_1))
    user = project(tmp_path / "project")
    before = tree(tmp_path)
    refused = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", user, "--quiet")
    assert refused.exit_code == 1 and "is not a cnntrain run folder" in refused.stderr
    assert tree(tmp_path) == before
    # An empty folder of the user's is trained into, and stays, empty, after the NaN.
    (user / "empty").mkdir()
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", user / "empty", "--quiet")
    assert (result.exit_code, result.stderr) == (1, NAN_ERROR)
    assert tree(tmp_path) == {**before, "project/empty": "folder"}
    # A folder the fit made is removed with the run's files.
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", user / "made", "--quiet")
    assert (result.exit_code, result.stderr) == (1, NAN_ERROR)
    assert not (user / "made").exists()


def test_removing_a_run_deletes_only_the_names_it_wrote(tmp_path):
    run = tmp_path / "run"
    folder.claim(run, {"log.csv"})
    for name in ("spec.yaml", "log.csv", "notes.txt"):
        (run / name).write_text(name)
    (run / folder.BACKUP).mkdir()
    (run / folder.BACKUP / "state.json").write_text("{}")
    (run / ".mine.abcdefgh.tmp").write_text("a user's file that looks like a temporary")
    folder.remove_run(run, created=True)
    assert tree(run) == tree_of({"notes.txt": "notes.txt", ".mine.abcdefgh.tmp": None})
    # Without the marker nothing is ours: nothing is swept or deleted.
    (run / folder.BACKUP).mkdir()
    folder.remove_backup(run)
    assert folder.sweep_temporaries(run) == [] and (run / folder.BACKUP).is_dir()
    assert (run / ".mine.abcdefgh.tmp").exists()


def tree_of(files: dict) -> dict:
    return {name: hashlib.sha256((text if text is not None else "a user's file that looks like a temporary")
                                 .encode()).hexdigest() for name, text in files.items()}


@pytest.mark.slow
def test_kills_at_random_moments_never_touch_the_users_files(tiny_spec, mnist_dir, tmp_path):
    """A fit into a new folder inside a user's project, killed (SIGKILL) at seeded random moments and
    resumed each time: the run completes and no file of the project outside it ever changes."""
    rng = random.Random(16)
    user = project(tmp_path / "project")
    before = tree(user)
    spec, run = tiny_spec(epochs=12), user / "run"
    args = [spec, "--out", run]
    for kill in range(2):
        log = tmp_path / f"fit{kill}.log"
        with reaped(start_fit(args, mnist_dir, log)) as proc:
            deadline = time.monotonic() + 150
            while epochs_done(run) < 1 + kill * 3 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
        assert {k: v for k, v in tree(user).items() if not k.startswith("run")} == before
        assert kill or not folder.is_finished(run)      # the first kill, at least, is mid-run
        args = ["--resume", run]
    if not folder.is_finished(run):
        result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--quiet")
        assert result.exit_code == 0, result.output
    assert_complete(run, 12)
    assert {k: v for k, v in tree(user).items() if not k.startswith("run")} == before


# ---------------------------------------------------------------- files read back from a run folder


def unfinished_run(tiny_spec, mnist_dir, tmp_path, weights) -> Path:
    """A finished one-epoch run given a resume state that names `weights`."""
    run = tmp_path / "run"
    assert run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run, "--quiet").exit_code == 0
    (run / folder.BACKUP).mkdir()
    (run / folder.BACKUP / "state.json").write_text(json.dumps({
        "epochs_done": 0, "best": None, "best_epoch": None, "history": [], "weights": weights,
        "monitor": "val_accuracy", "callbacks": []}))
    return run


@pytest.mark.parametrize("weights", ["../../other/model.keras", "ABSOLUTE", "../model.keras"])
def test_resume_state_naming_a_file_outside_is_refused(tiny_spec, mnist_dir, tmp_path, weights):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.keras").write_bytes(b"someone else's model")
    weights = str(other / "model.keras") if weights == "ABSOLUTE" else weights
    run = unfinished_run(tiny_spec, mnist_dir, tmp_path, weights)
    before = unlocked(tree(tmp_path))
    result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--quiet")
    assert result.exit_code == 1
    # The resume state's schema names the one weights file it may hold (epoch-NNNN.weights.h5, none
    # before the first epoch): any other name, a path outside above all, is a damaged state.
    assert result.stderr == (f"{run / 'backup' / 'state.json'}: damaged: 'weights' must be None after 0 epochs, "
                             f"received: {schema.show(weights)}\n  hint: the file was changed or broken after cnntrain "
                             "wrote it; start a new fit: this run's backup/ cannot be resumed\n")
    assert unlocked(tree(tmp_path)) == before
    assert (other / "model.keras").read_bytes() == b"someone else's model"


def unlocked(files: dict) -> dict:
    """The tree without the run's lock file, which a resume takes (and writes its pid in) first."""
    return {k: v for k, v in files.items() if k != "run/.lock"}


def test_a_folder_without_the_marker_is_not_resumed(tiny_spec, mnist_dir, tmp_path):
    run = unfinished_run(tiny_spec, mnist_dir, tmp_path, None)
    (run / folder.MARKER).unlink()
    before = tree(tmp_path)
    result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert result.exit_code == 1
    assert result.stderr == (f"{run}: not a run folder made by this version of cnntrain: it has no .cnntrain-run "
                             "marker, and cnntrain writes and deletes only in folders it made\n  hint: start the "
                             f"run anew: cnntrain fit {run / 'spec.yaml'} --out NEW_FOLDER\n")
    assert tree(tmp_path) == before
