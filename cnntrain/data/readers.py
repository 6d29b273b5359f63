"""One found candidate to arrays: picks the reader for its kind."""
from __future__ import annotations

import posixpath

from . import archive, cifar, decode, folder, idx, npz
from .catalog import KNOWN
from .checks import fail
from .lookup import Candidate


class Loaded:
    """Arrays plus what they came from; `decoded` says image options were applied."""

    def __init__(self, x_train, y_train, x_test, y_test, classes, files, decoded):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.classes, self.files, self.decoded = list(classes), list(files), decoded


def read(name: str, cand: Candidate, image_size, color_mode) -> Loaded:
    known = KNOWN.get(name)
    n_classes = len(known.classes) if known else 0
    if cand.kind == "npz":
        if known is None or name == "cifar10":
            expected = ("a folder or archive of images" if known is None
                        else "its python batches or a JPEG layout")
            raise fail(f"is an .npz file; {name} is read from {expected}", cand.path)
        return Loaded(*npz.read(cand.path, n_classes), known.classes, [cand.path], False)
    if cand.kind == "idx":
        *arrays, files = idx.read_set(cand.path, n_classes)
        return Loaded(*arrays, known.classes, files, False)
    if cand.kind == "cifar_dir":
        *arrays, files = cifar.read_dir(cand.path)
        return Loaded(*arrays, files, False)
    if cand.kind == "image_dir":
        return Loaded(*folder.read_dir(cand.path, image_size, color_mode), [], True)
    if cand.kind == "archive":
        return read_archive(cand.path, name == "cifar10", image_size, color_mode)
    raise fail(f"is not a format cnntrain reads for {name}; expected "
               + ("a .npz file, IDX files, or a folder holding them"
                  if name in ("mnist", "fashion_mnist") else "a folder or a .tar.gz archive"),
               cand.path)


def read_archive(path: str, allow_batches: bool, image_size, color_mode) -> Loaded:
    """CIFAR-10 python batches or an image-folder layout, in one pass through the
    archive: batches are unpickled as they stream past, images kept as bytes."""
    def want(member: str) -> bool:
        base = posixpath.basename(member)
        return (allow_batches and base in cifar.BATCH_NAMES) or decode.is_image_name(base)

    parts, pictures, dirs = {}, {}, []
    for member, data in archive.members(path, want):
        base = posixpath.basename(member)
        if data is None:
            dirs.append(member)
        elif allow_batches and base in cifar.BATCH_NAMES:
            parts[base] = (cifar.parse_meta(data, path, member) if base == "batches.meta"
                           else cifar.parse_batch(data, path, member))
        else:
            pictures[member] = data
    if parts:
        return Loaded(*cifar.assemble(parts, path), [path], False)
    if pictures:
        return Loaded(*folder.read_members(path, pictures, dirs, image_size, color_mode),
                      [path], True)
    raise fail("holds no images" + (" and no CIFAR-10 python batches" if allow_batches else "")
               + f"; expected {'cifar-10-batches-py/data_batch_1 ... or ' if allow_batches else ''}"
               "train/<class>/<image> members", path)
