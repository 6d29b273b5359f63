"""The folder an export writes into: claimed, locked, written and checked aside, then published.

    <out>/
      .cnntrain-export   the manifest, written first: the folder holds exports, and the names they wrote
      .lock              held while an export writes (the kernel drops it when the process dies)
      .export-staging/   the export being written and checked; a killed export's is swept by the next
      model.onnx  cnntrain.json  export.json  ...   (a SavedModel: saved_model.pb, variables/, ...)

--out takes a new folder, an empty one, or one holding the manifest, as `fit --out` does. There an
export replaces only the names the manifest lists; every other file (a Dockerfile beside the model,
the .keras file being exported) is the user's and is left alone, and a name of the user's that the
export would write is refused before any work. The folder itself is never renamed or replaced: a
symbolic link is followed, the folder keeps its mode and group, and a mount point works.
export.json is removed first and published last: a folder without it holds no complete export, and
every model file published was checked in the staging folder first.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from cnntrain.errors import CnntrainError, FolderLocked
from cnntrain.export.names import EXPORT_JSON
from cnntrain.loading.sidecar import MANIFEST
from cnntrain.runs import atomic, folder

STAGING = ".export-staging"
_REPLACED = ".replaced"          # inside the staging folder: what the publish displaced, deleted with it
INFRA = (MANIFEST, folder.LOCK, STAGING)


class ExportFolder:
    """`with ExportFolder(out) as target:` write into target.staging, then target.publish()."""

    def __init__(self, path):
        self.path = Path(path)
        self.staging = self.path / STAGING
        self.created = self.claimed = False
        self._lock = None

    def __enter__(self):
        path = self.path
        if path.exists() and not path.is_dir():
            raise CnntrainError("--out names a file; the export is a folder", file=str(path),
                                hint="give a folder to write the export into (it is created)")
        try:
            path.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            if not path.is_dir():   # a dangling symbolic link: its target is not made for it
                raise CnntrainError("--out is a symbolic link to a folder that does not exist", file=str(path),
                                    hint="create the folder it points to, or give another --out") from None
        except OSError as exc:
            raise atomic.write_error(path, exc) from None
        self._refuse_foreign()   # before the lock, whose file is not made in a user's folder
        lock = folder.RunLock(path)
        try:
            lock.__enter__()
        except FolderLocked:
            raise CnntrainError("another cnntrain export is writing to this folder", file=str(path),
                                hint="wait for it to finish, or export to another --out") from None
        self._lock = lock
        try:
            self._refuse_foreign()
            self.claimed = not folder.is_ours(path, MANIFEST)
            if self.claimed:
                folder.mark(path, marker=MANIFEST, base=INFRA)
            shutil.rmtree(self.staging, ignore_errors=True)   # a killed export's, under our lock
            self.staging.mkdir()
        except OSError as exc:
            self._abandon()
            raise atomic.write_error(self.staging, exc) from None
        except BaseException:
            self._abandon()
            raise
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self._abandon()
        else:
            self._unlock()

    def _refuse_foreign(self):
        shown = folder.foreign_shown(self.path, marker=MANIFEST)
        if shown:
            raise CnntrainError(f"--out is a folder that holds other files and no earlier export (it holds {shown}); "
                                "an export writes only into a new or empty folder or over an earlier export, so "
                                "that it never deletes your files", file=str(self.path),
                                hint=f"choose a new folder, e.g. --out {self.path / 'export'} (created for you)")

    def refuse_clashes(self, names):
        """Refuse when a name the export writes is already here and no export wrote it."""
        own = folder.own_names(self.path, MANIFEST, default=())
        clash = sorted(n for n in names if n not in own and os.path.lexists(self.path / n))
        if clash:
            raise CnntrainError(f"--out holds {', '.join(clash)}, which the export would replace and which no "
                                "earlier export wrote; refusing to replace it", file=str(self.path),
                                hint="move the file away, or export to another --out")

    def publish(self):
        """Move the checked export from the staging folder into place, export.json last."""
        new = sorted(n for n in os.listdir(self.staging) if n != _REPLACED)
        self.refuse_clashes(new)
        own = folder.own_names(self.path, MANIFEST, default=()) - set(INFRA)
        try:
            atomic.sync_tree(self.staging)
            folder.mark(self.path, own | set(new), marker=MANIFEST, base=INFRA, complete=False)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / EXPORT_JSON)   # from here on, the folder holds no complete export
            replaced = self.staging / _REPLACED
            replaced.mkdir()
            for name in sorted(own - {EXPORT_JSON}):   # what earlier exports wrote, and only that
                if os.path.lexists(self.path / name):
                    os.replace(self.path / name, replaced / name)
            for name in new:
                if name != EXPORT_JSON:
                    os.replace(self.staging / name, self.path / name)
            os.replace(self.staging / EXPORT_JSON, self.path / EXPORT_JSON)
            atomic.sync_tree(self.path, files=False)
            folder.mark(self.path, new, marker=MANIFEST, base=INFRA)
        except OSError as exc:
            raise atomic.write_error(self.path, exc) from None
        shutil.rmtree(self.staging, ignore_errors=True)

    def _abandon(self):
        """After a failure: the staging folder goes; a folder this export claimed is left as it was."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.claimed:
            for name in (MANIFEST, folder.LOCK):
                with contextlib.suppress(OSError):
                    os.unlink(self.path / name)
        self._unlock()
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def _unlock(self):
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
