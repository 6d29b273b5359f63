"""Every folder cnntrain writes that may be a user's: `export --out` and `sweep --out` take a new
folder, an empty one, or one of their own kind (its marker), and there replace only what they wrote;
and the files a sweep reads back (the search file, study.db, leaderboard.json) fail with clear errors.

Each case through the CLI, the tree hashed before and after as tests/test_hostile.py does.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers.cli import run_cli
from helpers.marks import tmpfs
from helpers.models import metadata, part_trained, synthetic
from helpers.procs import reaped
from test_bounds import deadline
from test_hostile import project, tree

EXPORTED = [".cnntrain-export", ".lock", "cnntrain.json", "export.json", "model.tflite"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A part-trained 8x8 model.keras and a folder of labelled PNGs to check its exports on."""
    from cnntrain.runs.model_file import save_model

    root = tmp_path_factory.mktemp("model")
    x, y = synthetic(20, 2)
    for i, (a, label) in enumerate(zip(x, y)):
        path = root / "images" / str(label) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a[..., 0], "L").save(path)
    save_model(part_trained(2), root / "model.keras",
               metadata(dataset="image_folder", data_path=str(root / "images"), color_mode="grayscale"))
    return root / "model.keras"


def export(model, out, *extra):
    return run_cli("export", model, "--format", "tflite", "--check-images", model.parent / "images",
                   "--out", out, *extra)


def refused_folder(out: Path, holds: str) -> str:
    return (f"{out}: --out is a folder that holds other files and no earlier export (it holds {holds}); an export "
            "writes only into a new or empty folder or over an earlier export, so that it never deletes your files\n"
            f"  hint: choose a new folder, e.g. --out {out / 'export'} (created for you)\n")


# ---------------------------------------------------------------- export --out


@pytest.mark.parametrize("ours", ["export.json", "cnntrain.json"])
def test_export_never_replaces_a_project_holding_a_file_named_like_ours(model, tmp_path, ours):
    out = project(tmp_path / "proj")
    (out / "notes.txt").write_text("my notes\n")
    (out / ours).write_text("{}\n")
    before = tree(out)
    result = export(model, out)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == refused_folder(out, f"README.md, backup, {ours}, notes.txt, src")
    assert tree(out) == before


def test_export_beside_the_model_it_exports_is_refused_and_the_model_kept(model, tmp_path):
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "model.keras").write_bytes(model.read_bytes())
    before = tree(deploy)
    result = export(deploy / "model.keras", deploy)
    assert (result.exit_code, result.stderr) == (1, refused_folder(deploy, "model.keras"))
    assert tree(deploy) == before


def test_export_again_replaces_only_what_the_earlier_export_wrote(model, tmp_path):
    """The README's flow: export to serving/onnx, add a Dockerfile beside it, export again."""
    out = tmp_path / "serving" / "tflite"
    assert export(model, out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == EXPORTED
    first = tree(out)
    (out / "Dockerfile").write_text("FROM python:3.12\nCOPY model.tflite /srv/\n")
    (out / "src").mkdir()
    (out / "src" / "serve.py").write_text("print('serving')\n")
    mine = {k: v for k, v in tree(out).items() if k not in first}
    result = export(model, out, "--quantize", "dynamic")
    assert result.exit_code == 0, result.output
    after = tree(out)
    assert {k: after[k] for k in mine} == mine
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORTED + ["Dockerfile", "src"])
    assert after["model.tflite"] != first["model.tflite"]
    assert json.loads((out / "export.json").read_text())["quantize"] == "dynamic"
    manifest = json.loads((out / ".cnntrain-export").read_text())
    assert manifest["names"] == [".cnntrain-export", ".export-staging", ".lock", "cnntrain.json", "export.json",
                                 "model.tflite"]


def test_a_users_file_under_a_name_the_export_writes_is_refused(model, tmp_path):
    """A folder an export claimed and was killed in (its manifest, lock and staging folder), where the
    user then put a model.tflite of their own: refused before any work, the leftovers swept."""
    out = tmp_path / "out"
    (out / ".export-staging").mkdir(parents=True)
    (out / ".export-staging" / "model.tflite").write_bytes(b"half")
    (out / ".cnntrain-export").write_text(json.dumps({"cnntrain": "0.1.0", "names": [".cnntrain-export", ".lock",
                                                                                      ".export-staging"]}))
    (out / "model.tflite").write_bytes(b"my own model")
    result = export(model, out)
    assert (result.exit_code, result.stderr) == (1, f"{out}: --out holds model.tflite, which the export would "
                                                    "replace and which no earlier export wrote; refusing to replace "
                                                    "it\n  hint: move the file away, or export to another --out\n")
    assert (out / "model.tflite").read_bytes() == b"my own model"
    assert sorted(p.name for p in out.iterdir()) == [".cnntrain-export", ".lock", "model.tflite"]


def test_a_second_export_into_a_busy_folder_is_refused(model, tmp_path):
    from cnntrain.runs import folder

    out = tmp_path / "out"
    out.mkdir()
    with folder.RunLock(out):   # as an export in another process holds it
        result = export(model, out)
    assert (result.exit_code, result.stderr) == (1, f"{out}: another cnntrain export is writing to this folder\n"
                                                    "  hint: wait for it to finish, or export to another --out\n")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_export_through_a_symlink_writes_in_its_target_and_keeps_the_folders_mode(model, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    link = tmp_path / "link"
    link.symlink_to(shared)
    before = os.stat(shared)
    assert export(model, link).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(shared)
    assert sorted(p.name for p in shared.iterdir()) == EXPORTED
    after = os.stat(shared)
    assert (stat.S_IMODE(after.st_mode), after.st_gid) == (0o2775, before.st_gid)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    new = tmp_path / "new\x1b[2J"   # a path that would clear the screen is printed escaped
    result = export(model, new)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"tflite: {tmp_path}/new\\x1b[2J/model.tflite"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o777 & ~umask


def test_export_into_a_mount_point_writes_and_replaces_inside_it(model, tmp_path):
    """--out a mount point (a real tmpfs): the folder cannot be renamed or replaced (EBUSY), which
    an export never tries; it writes inside it, and a second export replaces its own files there."""
    out = tmp_path / "mnt"
    out.mkdir()
    with tmpfs(out, "size=8m", "an export to a mount point"):
        before = os.stat(out)
        with pytest.raises(OSError) as moved:
            os.rename(out, tmp_path / "moved")
        assert moved.value.errno == errno.EBUSY
        for quantize in ("none", "dynamic"):
            result = export(model, out, "--quantize", quantize)
            assert result.exit_code == 0, result.output
            assert sorted(p.name for p in out.iterdir()) == EXPORTED
            assert json.loads((out / "export.json").read_text())["quantize"] == quantize
        after = os.stat(out)
        assert os.path.ismount(out)
        assert (after.st_dev, after.st_ino, after.st_mode) == (before.st_dev, before.st_ino, before.st_mode)


def test_an_export_killed_while_converting_leaves_no_model_and_is_swept(model, tmp_path):
    out = tmp_path / "out"
    staging = out / ".export-staging"
    args = [sys.executable, "-m", "cnntrain", "export", str(model), "--format", "tflite", "--check-images",
            str(model.parent / "images"), "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with reaped(proc):
        limit = time.monotonic() + 300
        while not (staging / "model.tflite").is_file():   # converted; the check is still to come
            assert proc.poll() is None and time.monotonic() < limit, "the export ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "export.json").exists() and not (out / "model.tflite").exists()
    result = run_cli("predict", model.parent / "images" / "0" / "0.png", "--model", out)
    assert result.exit_code == 1
    result = export(model, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == EXPORTED
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_export_stopped_while_it_was_published_is_not_used(model, tmp_path):
    """A kill between the moves into place left a mix of two exports and no export.json, which
    predict then used without a word."""
    out = tmp_path / "out"
    assert export(model, out).exit_code == 0
    (out / "export.json").unlink()
    image = sorted((model.parent / "images").rglob("*.png"))[0]
    message = (f"{out}: holds no finished export: export.json, which an export writes last, is missing (an export "
               f"into this folder was stopped or failed)\n  hint: export the model into it again: cnntrain export "
               f"MODEL --out {out}\n")
    for given in (out, out / "model.tflite"):
        result = run_cli("predict", image, "--model", given)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", message), given
    assert export(model, out).exit_code == 0
    assert run_cli("predict", image, "--model", out).exit_code == 0


# ---------------------------------------------------------------- sweep --out and what a sweep reads back


def _search(tmp_path) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text("params: {fit.batch_size: {choices: [16, 32]}}\n")
    return path


def test_sweep_never_takes_a_users_folder(tiny_spec, mnist_dir, tmp_path):
    out = tmp_path / "results"
    (out / "trial-000").mkdir(parents=True)
    (out / "trial-000" / "results.csv").write_text("epoch,loss\n1,0.5\n")
    (out / "best.yaml").write_text("my best settings\n")
    (out / "leaderboard.json").write_text('{"mine": true}\n')
    before = tree(out)
    result = run_cli("sweep", tiny_spec(), "--search", _search(tmp_path), "--data-dir", mnist_dir, "--out", out)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (f"{out}: this folder is not empty and is not a cnntrain sweep folder (it holds best.yaml, "
                             "leaderboard.json, trial-000); a sweep starts only in a new or empty folder, so that it "
                             f"never overwrites your files\n  hint: choose a new folder, e.g. --out {out / 'sweep'} "
                             "(created for you)\n")
    assert tree(out) == before


def _sweep_folder(tmp_path) -> Path:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / ".cnntrain-sweep").write_text('{"cnntrain": "0.1.0", "names": []}\n')
    return out


def test_a_garbage_study_db_is_a_clear_error(tiny_spec, mnist_dir, tmp_path):
    out = _sweep_folder(tmp_path)
    (out / "study.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    result = run_cli("sweep", tiny_spec(), "--search", _search(tmp_path), "--data-dir", mnist_dir, "--out", out)
    assert (result.exit_code, result.stderr) == (1, f"{out / 'study.db'}: cannot open the sweep's study: file is not "
                                                    "a database\n  hint: move the file away to start the study anew, "
                                                    "or give another --out\n")


def test_a_fifo_study_db_is_a_clear_error(tiny_spec, mnist_dir, tmp_path):
    out = _sweep_folder(tmp_path)
    os.mkfifo(out / "study.db")
    with deadline():
        result = run_cli("sweep", tiny_spec(), "--search", _search(tmp_path), "--data-dir", mnist_dir, "--out", out)
    assert (result.exit_code, result.stderr) == (1, f"{out / 'study.db'}: is a FIFO (named pipe), not a regular "
                                                    "file; a sweep's study is an SQLite database file\n  hint: move "
                                                    "the file away to start the study anew, or give another --out\n")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_the_search_file_is_read_as_a_spec_is(tiny_spec, tmp_path, kind):
    if kind == "fifo":
        search, what = tmp_path / "search.yaml", "a FIFO (named pipe)"
        os.mkfifo(search)
    else:
        search, what = Path("/dev/zero"), "a character device"
    with deadline():
        result = run_cli("sweep", tiny_spec(), "--search", search)
    assert (result.exit_code, result.stderr) == (1, f"{search}: is {what}, not a regular file; a search file is read "
                                                    "from a YAML file only\n  hint: write the search file to a file "
                                                    "and give its path\n")
    assert not (tmp_path / "runs").exists()


def test_a_damaged_leaderboard_is_named_and_the_others_shown(tmp_path):
    good = {"monitor": "val_loss", "direction": "minimize", "trials": [
        {"number": 0, "state": "COMPLETE", "value": 0.5, "epochs": 2, "run": "trial-000",
         "set": ["fit.batch_size=16"], "params": {"fit.batch_size": "16"}, "seconds": 1.5}]}
    (tmp_path / "a-sweep").mkdir()
    (tmp_path / "a-sweep" / "leaderboard.json").write_text(json.dumps(good))
    (tmp_path / "b-sweep").mkdir()
    (tmp_path / "b-sweep" / "leaderboard.json").write_text(json.dumps({**good, "trials": [{"number": "0"}]}))
    result = run_cli("runs", "--runs", tmp_path)
    assert result.exit_code == 0
    assert result.stdout == (f"\nleaderboard of {tmp_path / 'a-sweep'}: 1 trials by val_loss (minimize), best first\n"
                             "  trial  state         val_loss  epochs      time  overrides\n"
                             "      0  COMPLETE        0.5000       2     1.5 s  fit.batch_size=16\n"
                             f"best: trial 0; its spec is {tmp_path / 'a-sweep'}/best.yaml (cnntrain fit "
                             f"{tmp_path / 'a-sweep'}/best.yaml)\n")
    assert result.stderr == (f"no runs under {tmp_path}/ yet: train one with 'cnntrain fit SPEC'\n"
                             f"warning: {tmp_path / 'b-sweep' / 'leaderboard.json'}: damaged: 'trials[0].number' "
                             "must be an integer >= 0, received: '0' (str)\n")
