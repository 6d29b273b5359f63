"""Where each data set may be, in lookup order, and the download of last resort.

Order: `path` alone when given (a typo'd path must not quietly fall back to a
cache); else the data folder (`data_dir`, else $CNNTRAIN_DATA_DIR), then Keras'
cache ($KERAS_HOME/datasets), then a download unless offline.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

from cnntrain.errors import CnntrainError

from . import idx
from .archive import is_tar_name
from .catalog import IDX_NAMES, KNOWN

_IDX_SHOWN = "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"


@dataclass(frozen=True)
class Candidate:
    """One place a data set may be: a path and the reader that understands it."""
    kind: str                 # npz | idx | cifar_dir | image_dir | archive | unknown
    path: str
    marker: str | None = None  # a file or folder inside `path` that must exist

    def exists(self) -> bool:
        if self.kind == "idx":
            return idx.complete(self.path)
        if self.marker:
            return os.path.exists(os.path.join(self.path, self.marker))
        if self.kind in ("npz", "archive", "unknown"):
            return os.path.isfile(self.path)
        return os.path.isdir(self.path)

    def shown(self) -> str:
        if self.kind == "idx":
            return os.path.join(self.path, _IDX_SHOWN)
        if self.kind == "cifar_dir":
            return os.path.join(self.path, "data_batch_{1..5}")
        if self.kind == "image_dir":
            return os.path.join(self.path, self.marker or "", "<class>", "<image>")
        return self.path


def keras_home() -> str:
    # The same rule as keras/src/backend/config.py, without importing Keras.
    """Keras' cache root: $KERAS_HOME, else ~/.keras (as keras.utils.get_file uses it)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def keras_cache() -> str:
    """The folder under Keras' cache where downloaded data sets are kept."""
    return os.path.join(keras_home(), "datasets")


def data_folder(data_dir: str | None) -> str | None:
    """The folder given by --data-dir or $CNNTRAIN_DATA_DIR, or None.

    A folder that does not exist is an error of its own: looking past it would download the data
    (or read Keras' cache) and hide the typo."""
    folder = data_dir or os.environ.get("CNNTRAIN_DATA_DIR") or None
    if folder is not None and not os.path.isdir(folder):
        raise CnntrainError("the data folder (--data-dir or $CNNTRAIN_DATA_DIR) "
                            + ("is not a folder" if os.path.exists(folder) else "does not exist"),
                            file=folder, hint="name the folder that holds the dataset files, or leave "
                                              "--data-dir out to use Keras' cache and its download")
    return folder


def recorded_source(recorded: dict, data_dir: str | None) -> str | None:
    """The file or folder a run's data was found in (its metadata's `data_source`), to be read again
    where no data folder is given now (`data_dir`, $CNNTRAIN_DATA_DIR) and it is still there."""
    source = recorded.get("data_source")
    if data_folder(data_dir) or not isinstance(source, str) or not os.path.exists(source):
        return None
    return source


def in_folder(name: str, root: str, explicit: bool) -> list[Candidate]:
    """Candidates inside one folder. `explicit` (a folder the user named) also
    lets the folder itself be the data: IDX files or batches right in it. Not in
    Keras' cache, where MNIST and Fashion-MNIST IDX files would share names."""
    j = lambda *p: os.path.join(root, *p)  # noqa: E731 - a short name for the many paths below
    if name == "mnist":
        found = [Candidate("npz", j("mnist.npz")), Candidate("idx", j("mnist"))]
        return found + [Candidate("idx", root)] * explicit
    if name == "fashion_mnist":
        found = [Candidate("idx", j("fashion-mnist")), Candidate("idx", j("fashion_mnist")),
                 Candidate("npz", j("fashion_mnist.npz")), Candidate("npz", j("fashion-mnist.npz"))]
        return found + [Candidate("idx", root)] * explicit
    if name == "cifar10":
        found = [Candidate("cifar_dir", j("cifar-10-batches-py"), "data_batch_1"),
                 Candidate("archive", j("cifar-10-python.tar.gz")),
                 Candidate("image_dir", j("cifar10"), "train"),
                 Candidate("image_dir", j("cifar10-jpeg"), "train"),
                 Candidate("archive", j("cifar10-jpeg.tar.gz"))]
        if explicit:
            return found + [Candidate("cifar_dir", root, "data_batch_1"),
                            Candidate("image_dir", root, "train")]
        # Where Keras 3 (first two) and Keras 2 (last) leave their download.
        return found + [
            Candidate("cifar_dir", j("cifar-10-batches-py-target", "cifar-10-batches-py"),
                      "data_batch_1"),
            Candidate("archive", j("cifar-10-batches-py-target_archive")),
            Candidate("archive", j("cifar-10-batches-py.tar.gz"))]
    return []


def for_path(name: str, path: str) -> list[Candidate]:
    """What a `path` from the spec can be: a file in one of our formats, or a folder."""
    lower = path.lower()
    if lower.endswith(".npz"):
        return [Candidate("npz", path)]
    if is_tar_name(path) or (name in ("cifar10", "image_folder") and os.path.isfile(path)):
        return [Candidate("archive", path)]
    if name == "image_folder":
        return [Candidate("image_dir", path)]
    if os.path.isfile(path):
        base = os.path.basename(lower)
        if any(base.startswith((n, n.replace("-idx", ".idx"))) for n in IDX_NAMES):
            return [Candidate("idx", os.path.dirname(path) or ".")]
        return [Candidate("unknown", path)]  # exists; its reader says what was expected
    return in_folder(name, path, explicit=True)


def candidates(name: str, path: str | None = None, data_dir: str | None = None) -> list[Candidate]:
    """Every place a data set is looked for, in lookup order."""
    if path:
        return for_path(name, path)
    found = []
    folder = data_folder(data_dir)
    if folder:
        found += in_folder(name, folder, explicit=True)
    return found + in_folder(name, keras_cache(), explicit=False)


def _get_file(**kwargs) -> str:
    # Keras (and TensorFlow with it) is imported only when a download is needed.
    from cnntrain.backend import keras

    # Keras prints "Downloading data from ..." and its progress bar on stdout, which carries
    # only results (the JSON of `fit --json` and `data verify`): they go to stderr instead.
    with contextlib.redirect_stdout(sys.stderr):
        return keras.utils.get_file(**kwargs)


def download(name: str) -> Candidate:
    """Fetches the published files into Keras' cache; raises what Keras raises."""
    # Keras falls back to /tmp/.keras when the cache folder is not writable, and a folder that
    # does not exist yet is not: it would then use (or download into) another user's /tmp/.keras.
    for d in KNOWN[name].downloads:
        try:
            os.makedirs(os.path.join(keras_home(), d.subdir), exist_ok=True)
        except OSError:
            pass   # unwritable: Keras' own error (or fallback) says so
    paths = [_get_file(fname=d.fname, origin=d.origin, file_hash=d.file_hash,
                       cache_dir=keras_home(), cache_subdir=d.subdir)
             for d in KNOWN[name].downloads]
    if name == "mnist":
        return Candidate("npz", paths[0])
    if name == "fashion_mnist":
        return Candidate("idx", os.path.dirname(paths[0]))
    return Candidate("archive", paths[0])
