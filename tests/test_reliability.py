"""Faults and hostile inputs, end to end through the CLI: kills, full and read-only disks, two fits
on one folder, malicious data sets, model files that carry code, decompression bombs.

docs/reliability.md is the table of what each fault does and which test here (or elsewhere) proves it.
Fits use the tiny spec of conftest.py (5 steps an epoch). Processes started here are always reaped.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import pickle
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from helpers import formats as fx
from helpers.cli import run_cli
from helpers.formats import digits
from helpers.marks import tmpfs
from helpers.procs import reaped
from helpers.runs import RUN_FILES

from cnntrain.train import callbacks, fit
from cnntrain.runs import atomic, folder, model_file
from cnntrain.spec import load_spec

TEMPORARY = re.compile(r"^\..+\.tmp")
FULL_HINT = ("  hint: free some disk space or choose another folder with --out; the files already in the run "
             "folder are intact\n")
READ_ONLY_HINT = ("  hint: the folder is read-only or not writable by you: choose another folder with --out; the "
                  "files already in the run folder are intact\n")
LOCKED = "another cnntrain fit is writing to this run folder\n  hint: wait for it to finish, or train into " \
         "another folder with --out\n"


def start_fit(args, mnist_dir, log: Path) -> subprocess.Popen:
    """`cnntrain fit ARGS --quiet` in its own process; stderr goes to `log` (a pipe could fill and block)."""
    env = {**os.environ, "CNNTRAIN_DATA_DIR": str(mnist_dir)}
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "cnntrain", "fit", *map(str, args), "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)


def epochs_done(run: Path) -> int:
    """The epochs an unfinished run has committed (its backup/state.json), 0 before the first."""
    try:
        return json.loads((run / folder.BACKUP / "state.json").read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return 0


def wait_for_epochs(run: Path, proc: subprocess.Popen, more_than: int, log: Path, timeout=150):
    deadline = time.monotonic() + timeout
    while epochs_done(run) <= more_than:
        if proc.poll() is not None:
            pytest.fail(f"the fit ended (exit {proc.returncode}) before epoch {more_than + 1}:\n"
                        f"{log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no epoch {more_than + 1} within {timeout} s")
        time.sleep(0.02)


def history_epochs(run: Path) -> list[int]:
    with open(run / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def temporaries(run: Path) -> list[str]:
    return [p.name for folder in (run, run / folder.BACKUP) if folder.is_dir()
            for p in folder.iterdir() if TEMPORARY.match(p.name)]


def assert_resumable(run: Path):
    """What a killed fit must leave: a committed state whose files are all there and load."""
    assert load_spec(run / "spec.yaml")
    state = json.loads((run / folder.BACKUP / "state.json").read_text())
    done = state["epochs_done"]
    if state["weights"]:
        assert (run / folder.BACKUP / state["weights"]).is_file()
    assert [row["epoch"] for row in state["history"]] == list(range(1, done + 1))
    if (run / "history.csv").exists():
        # history.csv is written just before the state: it may be one epoch ahead, never behind
        assert history_epochs(run) in (list(range(1, done + 1)), list(range(1, done + 2)))
    if (run / "best.keras").exists():
        model_file.load_model(run / "best.keras")
    return done


def assert_complete(run: Path, epochs: int, extra=()):
    """A finished run folder: exactly its files, every one loads, one history row per epoch."""
    assert {p.name for p in run.iterdir()} == RUN_FILES | set(extra)
    assert history_epochs(run) == list(range(1, epochs + 1))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and metrics["stopped"] == "completed"
    assert 1 <= metrics["best"]["epoch"] <= epochs
    _, meta = model_file.load_model(run / "model.keras")
    assert meta["epoch"] == epochs
    _, best = model_file.load_model(run / "best.keras")
    assert 1 <= best["epoch"] <= epochs
    assert load_spec(run / "spec.yaml")["fit"]["epochs"] == epochs
    json.loads((run / "env.json").read_text())
    with Image.open(run / "curves.png") as picture:
        picture.verify()


# ---------------------------------------------------------------- kills


EPOCHS = 12
SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGKILL]   # the middle one is Ctrl-C: exit 130, resumable


def steady_epoch_seconds(run: Path) -> float:
    """The fastest epoch so far, the first left out (it includes tracing the training step)."""
    history = json.loads((run / folder.BACKUP / "state.json").read_text())["history"]
    return min(float(row["seconds"]) for row in history[1:])


@pytest.mark.slow
def test_kill_soak_resumes_to_an_exact_run(tiny_spec, mnist_dir, tmp_path):
    """SIGKILL a real fit at seeded random moments (one Ctrl-C among them), resume it each time, then
    let it finish: the run folder ends complete, every file loads, and history.csv has each epoch
    exactly once."""
    rng = random.Random(6)
    spec, run = tiny_spec(epochs=EPOCHS), tmp_path / "run"
    kills = []
    for cycle, sent in enumerate(SIGNALS):
        started = time.monotonic()
        before = epochs_done(run)
        args = [spec, "--out", run] if cycle == 0 else ["--resume", run]
        log = tmp_path / f"fit-{cycle}.log"
        with reaped(start_fit(args, mnist_dir, log)) as proc:
            # This process trains at least one epoch (the first fit two, to time a steady one),
            wait_for_epochs(run, proc, before + (1 if cycle == 0 else 0), log)
            # then dies anywhere in the next one or two, training or saving. An epoch's length varies
            # with the machine and its load, so the moment is drawn in epochs, not seconds.
            delay = rng.uniform(0.0, 1.6) * steady_epoch_seconds(run)
            time.sleep(delay)
            proc.send_signal(sent)
            proc.wait(timeout=60)
        stderr = log.read_text(errors="replace")
        if sent == signal.SIGINT:
            assert proc.returncode == 130, stderr[-2000:]
            # Ctrl-C during an epoch names the epochs saved; before or after the training loop, just says so.
            saved = (rf"error: interrupted; (1 epoch|\d+ epochs) saved in {re.escape(str(run))}\n  hint: resume with: "
                     rf"cnntrain fit --resume {re.escape(str(run))}\n")
            assert re.search(rf"(^|\n)({saved}|interrupted\n)\Z", stderr), stderr[-2000:]
        else:
            assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
        kills.append({"after": before, "committed": assert_resumable(run), "delay_s": round(delay, 2),
                      "cycle_s": round(time.monotonic() - started, 1)})
    assert epochs_done(run) < EPOCHS, f"the kills came too late to test anything: {kills}"
    result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--quiet")
    assert result.exit_code == 0, (kills, result.output)
    assert_complete(run, EPOCHS)


class Killed(BaseException):
    """Stands for SIGKILL in-process: no `except Exception` stops it, and the `with` blocks that
    release the lock run as the kernel would release it."""


def die_at(monkeypatch, name: str, occurrence: int):
    """The `occurrence`-th atomic write of a file named `name` dies half way through: its temporary
    file stays behind half written, as after a SIGKILL, and the fit stops."""
    real = atomic.atomic_path
    seen = []

    @contextlib.contextmanager
    def atomic_path(path, suffix=None):
        path = Path(path)
        if path.name == name:
            seen.append(path)
            if len(seen) == occurrence:
                fd, _ = tempfile.mkstemp(prefix=f".{path.stem}.", dir=path.parent,
                                         suffix=".tmp" + (path.suffix if suffix is None else suffix))
                os.write(fd, b"half of a file")
                os.close(fd)
                raise Killed(str(path))
        with real(path, suffix) as tmp:
            yield tmp

    monkeypatch.setattr(atomic, "atomic_path", atomic_path)
    return lambda: monkeypatch.setattr(atomic, "atomic_path", real)


def test_kill_before_the_commit_of_an_epoch(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    """Epoch 2's history.csv, best.keras and weights are written, its state.json (the commit) is not:
    the resume redoes epoch 2 once, and sweeps the half-written temporary file away."""
    run = tmp_path / "run"
    restore = die_at(monkeypatch, "state.json", occurrence=3)   # 1: the fresh state, 2: epoch 1, 3: epoch 2
    with pytest.raises(Killed):
        run_cli("fit", tiny_spec(epochs=2), "--data-dir", mnist_dir, "--out", run, "--quiet")
    restore()
    assert assert_resumable(run) == 1
    assert history_epochs(run) == [1, 2]
    assert temporaries(run)
    result = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert result.exit_code == 0, result.output
    assert f"resuming {run} after epoch 1 of 2" in result.stderr
    assert_complete(run, 2)


def test_kill_while_deleting_the_resume_state(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    """A kill half way through deleting backup/ at the very end: the run must be either finished
    (and complete) or resumable, never stuck as 'unfinished' with no state to resume from."""
    run = tmp_path / "run"
    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        path = Path(path)
        if path.parent == run and (path / "state.json").exists():
            (path / "state.json").unlink()         # the first file gone, then the kill
            raise Killed(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", run, "--quiet")
    monkeypatch.setattr(shutil, "rmtree", real)
    # backup/ was renamed before the deletion began: the run is already finished.
    assert folder.is_finished(run)
    assert_complete(run, 1, extra={".backup.deleting"} & {p.name for p in run.iterdir()})


# ---------------------------------------------------------------- two fits, one folder


@pytest.mark.slow   # a second real process for its minute (test_fit: a held lock is refused, in CI)
def test_second_fit_on_a_busy_run_folder_is_refused(tiny_spec, mnist_dir, tmp_path):
    """A real fit in another process holds the run folder: a resume of it and a fresh fit into it
    are both refused at once, and the first fit goes on undisturbed."""
    spec, run, log = tiny_spec(epochs=60), tmp_path / "run", tmp_path / "first.log"
    with reaped(start_fit([spec, "--out", run], mnist_dir, log)) as first:
        wait_for_epochs(run, first, 0, log)
        spec_before = (run / "spec.yaml").read_bytes()
        resume = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
        assert resume.exit_code == 1
        assert resume.stderr == f"{run}: {LOCKED}"
        fresh = run_cli("fit", spec, "--data-dir", mnist_dir, "--out", run)
        assert fresh.exit_code == 1
        assert fresh.stderr == (f"{run}: this folder already holds a run\n  hint: resume it with 'cnntrain fit "
                                f"--resume {run}', or choose a new --out\n")
        done = epochs_done(run)
        wait_for_epochs(run, first, done, log)          # still training, into the same folder
        assert (run / "spec.yaml").read_bytes() == spec_before
        first.kill()
    # The kernel released the dead process's lock: the folder can be resumed now.
    with folder.RunLock(run):
        pass


def test_fits_without_out_never_share_a_folder(tmp_path):
    """Fits of one spec started in the same second get their own runs/<name>/<time>[-n]/ folders."""
    folders = [folder.new_run_dir(tmp_path / "runs", "tiny") for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() for f in folders)


# ---------------------------------------------------------------- full and read-only disks


def fill(folder: Path):
    """Write zeros until the file system says it is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for block in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
        with pytest.raises(OSError) as info:
            os.write(fd, b"\0" * 4096)
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs): needs root and a sandbox that allows mount; else skipped
    (test_disk_full_at_the_final_save covers the same code on any machine)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    with tmpfs(mount, "size=8m", "mounting a small tmpfs"):
        yield mount


def remount(mount: Path, mode: str):
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True, capture_output=True)


def test_disk_full_then_read_only_while_training(tiny_spec, mnist_dir, small_disk, monkeypatch):
    """The disk fills up after epoch 1 (for real, on a tmpfs): the fit stops with
    `FILE: cannot write: No space left on device`, epoch 1's files are intact. A resume on the same
    disk made read-only is refused cleanly; once the disk is writable with space again, the resume
    completes the run."""
    run = small_disk / "run"
    original = callbacks.RunState.on_epoch_end
    filled = []

    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if not filled:
            fill(small_disk)
            filled.append(epoch)

    monkeypatch.setattr(callbacks.RunState, "on_epoch_end", on_epoch_end)
    result = run_cli("fit", tiny_spec(epochs=3), "--data-dir", mnist_dir, "--out", run, "--quiet")
    assert result.exit_code == 1
    failed = re.fullmatch(rf"({re.escape(str(run))}/[\w./-]+): cannot write: No space left on device\n"
                          + re.escape(FULL_HINT), result.stderr)
    assert failed, result.stderr
    assert Path(failed.group(1)).name in ("best.keras", "history.csv", "epoch-0002.weights.h5", "state.json")
    assert "Traceback" not in result.output
    # Epoch 1 is intact and nothing half-written is left.
    assert assert_resumable(run) == 1
    assert history_epochs(run) == [1]
    assert model_file.load_model(run / "best.keras")[1]["epoch"] == 1
    assert temporaries(run) == []

    remount(small_disk, "ro")
    try:
        resume = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--quiet")
        assert resume.exit_code == 1
        assert resume.stderr == f"{run / '.lock'}: cannot write: Read-only file system\n{READ_ONLY_HINT}"
        fresh = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", small_disk / "new", "--quiet")
        assert fresh.exit_code == 1
        assert fresh.stderr == f"{small_disk / 'new'}: cannot create the run folder: Read-only file system\n"
    finally:
        remount(small_disk, "rw")

    (small_disk / "filler").unlink()
    resume = run_cli("fit", "--resume", run, "--data-dir", mnist_dir, "--quiet")
    assert resume.exit_code == 0, resume.output
    assert_complete(run, 3)


FILL_THEN_SAVE = """
import os, sys
from pathlib import Path
from cnntrain.train import callbacks
disk, leave = Path(sys.argv[1]), int(sys.argv[2])
save = callbacks.RunState.save

def full_then_save(self, epochs_done):
    if epochs_done == 2:   # the disk fills after epoch 2's history and best.keras, before its weights
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        for block in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\\0" * block)
            except OSError:
                pass
        os.close(fd)
        os.truncate(disk / "filler", os.path.getsize(disk / "filler") - leave)
    save(self, epochs_done)

callbacks.RunState.save = full_then_save
from cnntrain.cli import main
sys.argv = ["cnntrain", *sys.argv[3:]]
main()
"""


def test_weights_on_a_full_disk_close_cleanly(tiny_spec, mnist_dir, small_disk):
    """h5py writing a weights file that the disk cannot hold (4 KB free: the file is created, its data
    is not) printed `Exception ignored in ... __dealloc__` tracebacks and then crashed the process
    (exit 139, 4 times of 4). The weights are now made in memory and written by the atomic writer:
    exit 1 with the message alone, and epoch 1 stays resumable."""
    run = small_disk / "run"
    done = subprocess.run([sys.executable, "-c", FILL_THEN_SAVE, str(small_disk), "4096", "fit", str(tiny_spec(epochs=3)),
                           "--data-dir", str(mnist_dir), "--out", str(run), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == f"{run / 'backup' / 'epoch-0002.weights.h5'}: cannot write: No space left on device\n{FULL_HINT}"
    assert assert_resumable(run) == 1 and temporaries(run) == []


def test_disk_full_at_the_final_save(tiny_spec, mnist_dir, tmp_path, monkeypatch):
    """On any machine: every write fails with ENOSPC from the moment model.keras is saved (the flush
    before the rename fails, as a full disk does on file systems that allocate late). The fit says
    so without a traceback, keeps the resume state, and a resume finishes the run."""
    run = tmp_path / "run"
    real_fsync, real_finish = atomic._fsync, fit.finish
    full, finishes = [], []

    def fsync(path):
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(path)

    def finish(*args, **kwargs):
        if not finishes:          # the first fit's end: the disk is full from now on
            full.append(True)
        finishes.append(True)
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(atomic, "_fsync", fsync)
    monkeypatch.setattr(fit, "finish", finish)
    result = run_cli("fit", tiny_spec(epochs=2), "--data-dir", mnist_dir, "--out", run, "--quiet")
    assert result.exit_code == 1
    assert result.stderr == f"{run / 'model.keras'}: cannot write: No space left on device\n{FULL_HINT}"
    assert not (run / "model.keras").exists() and temporaries(run) == []
    assert assert_resumable(run) == 2 and history_epochs(run) == [1, 2]

    full.clear()
    resume = run_cli("fit", "--resume", run, "--data-dir", mnist_dir)
    assert resume.exit_code == 0, resume.output
    assert f"resuming {run} after epoch 2 of 2" in resume.stderr
    assert_complete(run, 2)


def test_write_error_gives_the_short_reason_and_a_fitting_hint():
    """h5py (weights files) puts a page of diagnostics in strerror; the message keeps the system's
    short text. Full disk, read-only folder and other errors each get their own hint."""
    h5py_error = OSError(errno.ENOSPC, "Unable to synchronously create file (file write failed: time = Wed Nov 25\n"
                                       ", filename = 'w.h5', file descriptor = 4, errno = 28, error message = 'No "
                                       "space left on device', buf = 0x5649, total write size = 96)")
    assert str(atomic.write_error("run/w.h5", h5py_error)) + "\n" == \
        f"run/w.h5: cannot write: No space left on device\n{FULL_HINT}"
    assert str(atomic.write_error("run/a", OSError(errno.EROFS, "x"))) + "\n" == \
        f"run/a: cannot write: Read-only file system\n{READ_ONLY_HINT}"
    assert str(atomic.write_error("run/a", OSError(errno.EIO, "x"))) == (
        "run/a: cannot write: Input/output error\n  hint: check the disk and the folder, or choose another folder "
        "with --out; the files already in the run folder are intact")
    assert atomic.write_error("run/a", OSError("disk gone\nmore")).message == "cannot write: disk gone"


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write to: chmod for a normal user; root ignores chmod, so a read-only
    tmpfs for root (skipped where mount is refused)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder, "Permission denied"
        folder.chmod(0o755)
        return
    with tmpfs(folder, "size=1m,ro", "root ignores chmod, and mounting a read-only tmpfs"):
        yield folder, "Read-only file system"


def test_unwritable_output_folder(tiny_spec, mnist_dir, read_only_folder):
    folder, reason = read_only_folder
    result = run_cli("fit", tiny_spec(epochs=1), "--data-dir", mnist_dir, "--out", folder / "run", "--quiet")
    assert result.exit_code == 1
    assert result.stderr == f"{folder / 'run'}: cannot create the run folder: {reason}\n"
    spec = tiny_spec(epochs=1)
    spec.write_text(spec.read_text().replace("dir: runs", f"dir: {folder.name}"))   # relative: tmp_path is the cwd
    result = run_cli("fit", spec, "--data-dir", mnist_dir, "--quiet")
    assert result.exit_code == 1
    assert result.stderr == (f"{Path(folder.name) / 'tiny'}: cannot create the run folder: {reason}\n  hint: choose a writable "
                             "folder with --out or output.dir\n")


# ---------------------------------------------------------------- hostile specs at the command line


def test_python_tags_in_a_spec_never_run(tmp_path):
    """`!!python/object/apply:os.system` in a spec or a --set: exit 1 with the exact message (from a
    real `cnntrain fit` process, and from check and summary), and the command was not run."""
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text("model:\n  layers: [Flatten, {Dense: {units: 10}}]\n"
                    f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    expected = (f"{spec}:3:7: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed\n"
                "  hint: specs are plain YAML: no tags that build Python objects\n")
    done = subprocess.run([sys.executable, "-m", "cnntrain", "fit", str(spec)], capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (1, expected, "")
    for command in ("check", "summary"):
        done = run_cli(command, spec)
        assert (done.exit_code, done.stderr, done.stdout) == (1, expected, "")
    # Relative (the test's folder is the current one): a long tmp path (an xdist worker's) is shortened in the message.
    value = "!!python/object/apply:os.system ['touch pwned']"
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  layers: [Flatten, {Dense: {units: 10}}]\n")
    done = run_cli("check", good, "--set", f"seed={value}")
    assert done.exit_code == 1
    assert done.stderr == (f"--set seed={value}: the value is not valid YAML (YAML tag "
                           "'tag:yaml.org,2002:python/object/apply:os.system' is not allowed)\n"
                           "  hint: specs are plain YAML: no tags that build Python objects\n")
    assert not marker.exists()


# ---------------------------------------------------------------- hostile data sets


@pytest.mark.parametrize("packaging", ["folder", "archive"])
def test_fit_on_a_malicious_cifar_batch(tmp_path, packaging):
    """A CIFAR-10 batch whose pickle calls os.system: `cnntrain fit` stops with the file's name,
    nothing in the pickle runs, and no run folder is made."""
    marker = tmp_path / "pwned"
    members = fx.cifar_members(*fx.cifar_arrays())
    members["data_batch_3"] = pickle.dumps({b"data": fx.Payload(f"touch {marker}"), b"labels": [0]}, protocol=4)
    if packaging == "folder":
        path = fx.write_cifar_dir(tmp_path / "cifar-10-batches-py", members)
        where, member = os.path.join(path, "data_batch_3"), ""
    else:
        path = fx.write_tar(tmp_path / "cifar-10-python.tar.gz",
                            {f"cifar-10-batches-py/{k}": v for k, v in members.items()})
        where, member = path, "member 'cifar-10-batches-py/data_batch_3': "
    spec = tmp_path / "cifar.yaml"
    spec.write_text(textwrap.dedent(f"""\
        data: {{dataset: cifar10, path: {path}}}
        model:
          input_shape: [32, 32, 3]
          layers: [Flatten, {{Dense: {{units: 10, activation: softmax}}}}]
        fit: {{epochs: 1}}
        output: {{dir: runs}}
        """))
    result = run_cli("fit", spec, "--offline", "--quiet")
    assert result.exit_code == 1
    assert result.stderr == (f"{where}: {member}refusing to unpickle global '{os.system.__module__}.system': a "
                             "CIFAR-10 batch holds only numpy arrays, lists and strings, so this file is corrupt or "
                             "malicious (nothing in it was run)\n  hint: replace it with the original "
                             "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html\n")
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- model files that carry code


def metadata(**extra):
    return {"class_names": [str(i) for i in range(10)], "input_shape": [28, 28, 1], "normalize": "scale",
            "background": "dark", "dataset": "mnist", "data_path": None, "image_size": None, "color_mode": None,
            "one_hot": False, "name": "tiny", "cnntrain_version": "0.1.0", **extra}


@pytest.fixture
def lambda_model(tmp_path):
    """A .keras file whose Lambda layer creates a marker file whenever its code runs."""
    from cnntrain.backend import keras

    marker = tmp_path / "lambda-ran"
    code = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")  # the path inside the code itself
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(code), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "lambda.keras"
    model_file.save_model(model, path, metadata())
    marker.unlink()   # building the model ran the code once, here
    image = tmp_path / "digit.png"
    Image.fromarray(digits(1)[0][0]).save(image)
    return path, marker, image


def test_model_with_code_is_not_loaded_without_unsafe(lambda_model):
    path, marker, image = lambda_model
    message = (f"{path}: cannot load the model: it contains Python code (a Lambda layer), which is not run unless "
               "you trust the file\n  hint: the file contains code (a Lambda layer); load it only if you trust it, "
               "with --unsafe\n")
    for args in (["evaluate", path, "--offline"], ["predict", image, "--model", path], ["filters", path]):
        result = run_cli(*args)
        assert (result.exit_code, result.stderr) == (1, message), args
        assert not marker.exists()
    trusted = run_cli("predict", image, "--model", path, "--unsafe", "--json")
    assert trusted.exit_code == 0, trusted.output
    assert trusted.stderr == "warning: --unsafe lets the model file run its own code\n"
    assert marker.exists()      # --unsafe does what it says
    assert [Path(p["file"]) for p in json.loads(trusted.stdout)["predictions"]] == [image]


# ---------------------------------------------------------------- hostile images


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int, rows=None):
    """A grayscale PNG of side x side zeros: a few hundred KB that decode to side**2 bytes.
    With rows=0 only the header is real (the IDAT holds almost nothing)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)                      # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(side if rows is None else rows)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny model trained for one epoch on the digits, saved as `cnntrain fit` saves model.keras
    (scaling inside, class names and background in its metadata). Keras' own fit: seconds, not tens."""
    from cnntrain.backend import keras

    keras.utils.set_random_seed(3)
    x_train, y_train = digits(200, seed=1)
    x_test, _ = digits(50, seed=2)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, strides=2, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[..., None].astype("float32"), y_train, epochs=1, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("trained") / "model.keras"
    model_file.save_model(model, path, metadata(epoch=1))
    return path, x_test


def test_predict_refuses_bombs_and_broken_files_one_by_one(trained_model, tmp_path, monkeypatch):
    """Good images, two decompression bombs (a header claiming 10^10 pixels; a real 144-megapixel
    PNG of 200 KB) and a truncated file in one `cnntrain predict`: each bad file gets its own error,
    every good one is predicted, exit status 1."""
    model, x_test = trained_model
    good = []
    for i in range(3):
        good.append(tmp_path / f"good{i}.png")
        Image.fromarray(x_test[i]).save(good[-1])
    header_bomb = png_bomb(tmp_path / "header-bomb.png", 100_000, rows=1)
    real_bomb = png_bomb(tmp_path / "real-bomb.png", 12_000)
    assert header_bomb.stat().st_size < 1000 and real_bomb.stat().st_size < 400_000
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(noisy)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(noisy.read_bytes()[:noisy.stat().st_size // 2])
    files = [good[0], header_bomb, good[1], real_bomb, truncated, good[2]]
    decoded = set()   # the files whose pixels Pillow decoded (ImageFile.load), from any reading thread
    load = ImageFile.ImageFile.load

    def load_and_note(image):
        decoded.add(Path(image.filename).name)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_and_note)
    with pytest.warns(Image.DecompressionBombWarning, match="144000000 pixels"):   # Pillow's, on opening the real bomb
        result = run_cli("predict", *files, "--model", model, "--json")
    assert result.exit_code == 1
    output = json.loads(result.stdout)
    assert [p["file"] for p in output["predictions"]] == [str(f) for f in good]
    errors = {e["file"]: e["error"] for e in output["errors"]}
    assert errors == {
        str(header_bomb): "image too large: 10,000,000,000 pixels declared, limit 50,000,000",
        str(real_bomb): "image too large: 144,000,000 pixels declared (12000x12000), limit 50,000,000",
        str(truncated): "truncated or corrupt image data",
    }
    assert result.stderr.count("\n  hint: ") == 3
    # Refused from the header, by the pixel bound: the bombs' pixels (144 MB, 10 GB) are never decoded.
    assert decoded == {"good0.png", "good1.png", "good2.png", "truncated.png"}


def test_broken_model_files_are_refused(trained_model, tmp_path):
    """A truncated model.keras and a text file named .keras: one clear error each, no traceback."""
    model, x_test = trained_model
    image = tmp_path / "digit.png"
    Image.fromarray(x_test[0]).save(image)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(model.read_bytes()[:model.stat().st_size // 2])
    text = tmp_path / "notes.keras"
    text.write_text("not a model\n")
    for path in (truncated, text):
        for args in (["predict", image, "--model", path], ["evaluate", path, "--offline"]):
            result = run_cli(*args)
            assert result.exit_code == 1
            assert result.stderr == (f"{path}: not a readable .keras model file (File is not a zip file)\n"
                                     "  hint: model files are the model.keras / best.keras of a run folder\n")
