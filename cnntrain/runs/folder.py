"""The run folder: its layout, creating one, finding runs, the lock, sweeping a killed writer's files.

    runs/<name>/<YYYYmmdd-HHMMSS>/
      spec.yaml  model.keras  best.keras  history.csv  metrics.json  env.json  curves.png
      eval.json  confusion.png             after `cnntrain evaluate`
      backup/                              resume state while the fit is unfinished
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs.atomic import write_error

BACKUP = "backup"


def new_run_dir(root, name) -> Path:
    """A fresh runs/<name>/<timestamp>/, created complete with its lock file or not at all."""
    parent = Path(root) / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnntrainError(f"cannot create the run folder: {exc.strerror}", file=str(parent),
                            hint="choose a writable folder with --out or output.dir") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        candidate = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise CnntrainError("too many runs started in the same second", file=str(parent))


_TRASH = ".backup.deleting"


def remove_backup(run_dir):
    """Remove the resume state of a finished fit: one rename (the commit: the run is finished),
    then the deletion. A kill during the deletion leaves a hidden folder, never a backup/ that
    is missing its state.json and so could be neither resumed nor counted as finished."""
    run_dir = Path(run_dir)
    trash = run_dir / _TRASH
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(run_dir / BACKUP, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def is_run(path) -> bool:
    path = Path(path)
    return (path / "spec.yaml").is_file()


def is_finished(path) -> bool:
    path = Path(path)
    return (path / "model.keras").is_file() and not (path / BACKUP).exists()


def list_runs(root="runs") -> list[Path]:
    """Every run folder under `root`, newest first: by the time each run started, which `evaluate`
    and `fit --resume` leave alone (the folders' modification times they change)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p.parent for p in root.glob("*/*/spec.yaml")] + [p.parent for p in root.glob("*/spec.yaml")]
    return sorted(set(found), key=lambda p: (started(p), p.name), reverse=True)


def started(run_dir) -> float:
    """When the run started, in seconds since the epoch: env.json's `started`, else when env.json
    (written once, at the start) or spec.yaml was written."""
    run_dir = Path(run_dir)
    try:
        stamp = json.loads((run_dir / "env.json").read_text(encoding="utf-8")).get("started")
        return _dt.datetime.fromisoformat(stamp).timestamp()
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    for name in ("env.json", "spec.yaml"):
        with contextlib.suppress(OSError):
            return (run_dir / name).stat().st_mtime
    return 0.0


def resolve_run(arg: str | None, root="runs", *, unfinished=False, need_model=False) -> Path:
    """A run folder given by path or name, or the newest one."""
    if arg:
        path = Path(arg)
        if is_run(path):
            return path
        for run in list_runs(root):
            if run.name == arg or str(run.relative_to(root)) == arg:
                return run
        raise CnntrainError(f"no run folder '{arg}'", file=str(path),
                            hint=f"give a folder holding spec.yaml, such as one listed by 'cnntrain runs' (under {root}/)")
    for run in list_runs(root):
        if unfinished and not (run / BACKUP).is_dir():
            continue
        if need_model and not (run / "model.keras").is_file():
            continue
        return run
    what = "unfinished run" if unfinished else "finished run" if need_model else "run"
    hint = "train one first with 'cnntrain fit SPEC', or give the run folder"
    if unfinished:
        hint += "; a finished run is trained longer with 'cnntrain fit --resume RUN --epochs N'"
    raise CnntrainError(f"no {what} found under {root}/", hint=hint)


# What atomic_path's mkstemp names look like: .<stem>.<8 random characters>.tmp<suffix>
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^/]*)?$")


def sweep_temporaries(run_dir) -> list[Path]:
    """Delete the temporary files that a killed writer left in a run folder and its backup/.
    Only safe while holding the run's lock: then no one else is writing them."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / BACKUP):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    trash = Path(run_dir) / _TRASH
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    return removed


class RunLock:
    """An exclusive lock on a run folder, so two fits never write into one folder.

    flock is released by the kernel when the process dies, even by SIGKILL,
    so a killed fit never leaves a stale lock behind. Once the lock is held, the
    temporary files of a killed writer are swept away.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:   # a read-only or vanished folder: the fit could not write anyway
            raise write_error(self.path, exc) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            if isinstance(exc, BlockingIOError):
                raise CnntrainError("another cnntrain fit is writing to this run folder",
                                    file=str(self.path.parent),
                                    hint="wait for it to finish, or train into another folder with --out") from None
            raise CnntrainError(f"cannot lock the run folder: {os.strerror(exc.errno) if exc.errno else exc}",
                                file=str(self.path.parent),
                                hint="the file system may not support locks (flock); train into a local "
                                     "folder with --out") from None
        with contextlib.suppress(OSError):   # the pid is a courtesy to a person looking; a full disk may refuse it
            os.ftruncate(self.fd, 0)
            os.write(self.fd, str(os.getpid()).encode())
        sweep_temporaries(self.path.parent)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
