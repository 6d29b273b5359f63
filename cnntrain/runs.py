"""The run folder: its layout, atomic writes, the lock, finding runs, model files with metadata.

    runs/<name>/<YYYYmmdd-HHMMSS>/
      spec.yaml  model.keras  best.keras  history.csv  metrics.json  env.json  curves.png
      eval.json  confusion.png             after `cnntrain evaluate`
      backup/                              resume state while the fit is unfinished
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from cnntrain.errors import CnntrainError

METADATA = "cnntrain.json"   # stored inside model.keras, beside Keras' own config.json
BACKUP = "backup"
_UMASK = os.umask(0)
os.umask(_UMASK)


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; on success rename it over `path`.

    A kill at any moment leaves either the old file or the new one, never half of one
    (a kill can leave the temporary file itself: RunLock sweeps those). The temporary file
    is flushed to disk before the rename, and a failed flush fails the write: on file systems
    that allocate late (ext4, XFS, NFS) a full disk may show only then, and renaming a file
    whose data never reached the disk over a good one would lose both.
    """
    path = Path(path)
    suffix = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any file we write
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # this file system has no fsync
            raise
    finally:
        os.close(fd)


def _fsync_dir(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path, text: str):
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise write_error(path, exc) from None


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(path, exc: OSError) -> CnntrainError:
    """`FILE: cannot write: <reason>` with what to do. The reason is the system's short text for the
    error number: h5py (weights files) puts a page of its own diagnostics in strerror."""
    if exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = ((exc.strerror or str(exc)).strip().splitlines() or [type(exc).__name__])[0]
    if exc.errno in _READ_ONLY:
        hint = "the folder is read-only or not writable by you: choose another folder with --out"
    elif exc.errno in _FULL:
        hint = "free some disk space or choose another folder with --out"
    else:
        hint = "check the disk and the folder, or choose another folder with --out"
    return CnntrainError(f"cannot write: {reason}", file=str(path),
                         hint=hint + "; the files already in the run folder are intact")


def copy_file(source, path):
    """An atomic copy: `path` is either its old self or a complete copy of `source`."""
    try:
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as exc:
        raise write_error(path, exc) from None


def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CnntrainError("file not found", file=str(path)) from None
    except (OSError, ValueError) as exc:
        raise CnntrainError(f"cannot read JSON: {exc}", file=str(path)) from None


# ---------------------------------------------------------------- models with metadata


def save_model(model, path, metadata: dict):
    """`model.save()` plus our metadata (class names, preprocessing notes) inside the same zip.

    Keras' loader ignores the extra member, so plain `keras.models.load_model` still works.
    """
    try:
        with atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA, json.dumps(metadata, indent=2, default=_json_default))
    except OSError as exc:
        raise write_error(path, exc) from None


def read_metadata(path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA not in archive.namelist():
                return {}
            return json.loads(archive.read(METADATA))
    except FileNotFoundError:
        raise CnntrainError("model file not found", file=str(path)) from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CnntrainError(f"not a readable .keras model file ({exc})", file=str(path),
                            hint="model files are the model.keras / best.keras of a run folder") from None


def load_model(path, *, unsafe: bool = False):
    """(model, metadata). Keras' safe mode stays on unless `unsafe`: a Lambda layer's code never runs."""
    from cnntrain.backend import keras

    metadata = read_metadata(path)
    try:
        model = keras.models.load_model(path, safe_mode=not unsafe, compile=True)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError ... for bad files
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None
        if not unsafe and ("safe_mode" in str(exc) or "Lambda" in str(exc)):
            # Keras' own text tells a Python programmer about safe_mode=False; say it for the command line.
            text = "it contains Python code (a Lambda layer), which is not run unless you trust the file"
            hint = "the file contains code (a Lambda layer); load it only if you trust it, with --unsafe"
        raise CnntrainError(f"cannot load the model: {text}", file=str(path), hint=hint) from None
    return model, metadata


# ---------------------------------------------------------------- folders


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
    """Every run folder under `root`, newest first (by folder name, then modification time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p.parent for p in root.glob("*/*/spec.yaml")] + [p.parent for p in root.glob("*/spec.yaml")]
    return sorted(set(found), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


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
    raise CnntrainError(f"no {what} found under {root}/",
                        hint="train one first with 'cnntrain fit SPEC', or give the run folder")


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
