"""The run folder: its layout, creating one, finding runs, the lock, sweeping a killed writer's files.

    runs/<name>/<YYYYmmdd-HHMMSS>/
      .cnntrain-run                        the marker, written first: the folder is ours, and the names we write
      spec.yaml  model.keras  best.keras  history.csv  metrics.json  env.json  curves.png
      eval.json  confusion.png             after `cnntrain evaluate`
      backup/                              resume state while the fit is unfinished

cnntrain deletes only in a folder holding its marker, and there only the names the marker lists:
a user's folder (a project with its own backup/) is never trained into, so never emptied.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import re
import shutil
from pathlib import Path

from cnntrain import __version__
from cnntrain.errors import CnntrainError
from cnntrain.runs import atomic, schema
from cnntrain.runs.atomic import write_error

BACKUP = "backup"
MARKER = ".cnntrain-run"
LOCK = ".lock"
_TRASH = ".backup.deleting"
# Every name a run writes at its top level; the marker adds those of the spec's callbacks.
OWN_NAMES = ("spec.yaml", "env.json", "model.keras", "best.keras", "history.csv", "metrics.json", "curves.png",
             "eval.json", "confusion.png", "tensorboard", BACKUP, _TRASH)
# Multi-worker: the other workers' resume state beside the chief's files (see train/fit.py).
_WORKER = re.compile(r"^\.worker-\d+$")


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


def is_ours(path) -> bool:
    """Whether `path` holds cnntrain's run marker: only there does cnntrain write or delete."""
    return (Path(path) / MARKER).is_file()


def check_ours(path):
    """Refuse to resume (so to write and delete in) a folder without our marker."""
    if not is_ours(path):
        raise CnntrainError(f"not a run folder made by this version of cnntrain: it has no {MARKER} marker, and "
                            "cnntrain writes and deletes only in folders it made", file=str(path),
                            hint=f"start the run anew: cnntrain fit {Path(path) / 'spec.yaml'} --out NEW_FOLDER")


def check_out(path):
    """Refuse `--out PATH` when PATH holds a run, or holds files that are not a cnntrain run's."""
    path = Path(path)
    if is_run(path) and is_ours(path):
        raise CnntrainError("this folder already holds a run", file=str(path),
                            hint=f"resume it with 'cnntrain fit --resume {path}', or choose a new --out")
    if path.exists() and not path.is_dir():
        raise CnntrainError("--out names a file, not a folder", file=str(path), hint="choose a new folder with --out")
    foreign = _foreign_entries(path)
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CnntrainError(f"this folder is not empty and is not a cnntrain run folder (it holds {shown}); "
                            "cnntrain trains only into a new or empty folder, so that it never deletes your files",
                            file=str(path), hint=f"choose a new folder, e.g. --out {path / 'run'} (created for you)")


def _foreign_entries(path) -> list[str]:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CnntrainError(f"cannot read the folder: {os.strerror(exc.errno) if exc.errno else exc}",
                            file=str(path), hint="choose a folder you can write with --out") from None
    if MARKER in names:
        return []
    return [n for n in names if not _WORKER.match(n)]


def claim(path, extra_names=()) -> bool:
    """Make `path` a run folder: create it (or take it when empty) and write the marker first,
    listing the names this run may write. Returns whether the folder was created here."""
    path = Path(path)
    created = False
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        check_out(path)
    except OSError as exc:
        raise CnntrainError(f"cannot create the run folder: {exc.strerror}", file=str(path)) from None
    mark(path, extra_names)
    return created


def mark(path, extra_names=()):
    """Write the run marker first in `run_dir`, listing the names the run will write."""
    names = sorted(set(OWN_NAMES) | set(extra_names))
    atomic.write_json(Path(path) / MARKER, {"cnntrain": __version__, "names": names})


def own_names(path) -> set[str]:
    """The names the marker of `path` says cnntrain wrote; none without a marker."""
    if not is_ours(path):
        return set()
    try:
        names = atomic.read_json(Path(path) / MARKER).get("names")
    except (CnntrainError, AttributeError):
        names = None
    if not isinstance(names, list):
        names = list(OWN_NAMES)
    return {n for n in names if isinstance(n, str) and _plain_name(n)}


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def remove_run(path, *, created: bool):
    """Delete what a run wrote in `path` (the names its marker lists, then the marker and the lock);
    the folder itself only when this fit created it and nothing else is left in it."""
    path = Path(path)
    for name in sorted(own_names(path)):
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    for name in (MARKER, LOCK):
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    if created:
        with contextlib.suppress(OSError):
            path.rmdir()


def backup_file(run_dir, name) -> Path:
    """The file `name` of backup/, as state.json names it: a plain name inside backup/, or the
    run is refused as damaged (a path read back from a folder never reaches outside it)."""
    backup = Path(run_dir) / BACKUP
    if not (isinstance(name, str) and _plain_name(name) and not name.startswith(".")):
        raise CnntrainError(f"the resume state is damaged: its weights file must be a file name inside "
                            f"{BACKUP}/, received: {name!r}", file=str(backup / "state.json"),
                            hint="this run cannot be resumed; start a new fit")
    return backup / name


def remove_backup(run_dir):
    """Remove the resume state of a finished fit: one rename (the commit: the run is finished),
    then the deletion. A kill during the deletion leaves a hidden folder, never a backup/ that
    is missing its state.json and so could be neither resumed nor counted as finished."""
    run_dir = Path(run_dir)
    if not is_ours(run_dir):
        return
    trash = run_dir / _TRASH
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(run_dir / BACKUP, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def is_run(path) -> bool:
    """Whether `path` is a run folder (it holds spec.yaml)."""
    path = Path(path)
    return (path / "spec.yaml").is_file()


def is_finished(path) -> bool:
    """Whether the run at `path` finished: model.keras written and no resume state left."""
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
    try:   # a damaged env.json only loses the run its place in the order: `runs` says what is wrong
        stamp = (schema.read_optional(run_dir / "env.json", schema.ENV) or {}).get("started")
        return _dt.datetime.fromisoformat(stamp).timestamp()
    except (CnntrainError, ValueError, TypeError, OverflowError):
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
    Only safe while holding the run's lock: then no one else is writing them; and only in a
    folder with our marker: elsewhere such names may be someone else's."""
    removed = []
    if not is_ours(run_dir):
        return removed
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
        self.path = Path(run_dir) / LOCK
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
