"""One found candidate to arrays: picks the reader for its kind."""
from __future__ import annotations

import posixpath

from . import archive, checks, cifar, decode, folder, idx, labels_csv, npz
from .catalog import KNOWN
from .checks import fail
from .lookup import Candidate

# The largest image file an archive member may be: far above any photo a classifier trains on
# (Pillow's own limit, 179 million pixels, is about 180 MB as a PNG of noise, 20 MB as a JPEG).
MAX_IMAGE_BYTES = 64 << 20


class Loaded:
    """Arrays plus what they came from; `decoded` says image options were applied."""

    def __init__(self, x_train, y_train, x_test, y_test, classes, files, decoded, skipped=()):
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.classes, self.files, self.decoded = list(classes), list(files), decoded
        self.skipped = list(skipped)   # unreadable images left out (data.on_broken: skip)


def _decoded(x_train, y_train, x_test, y_test, classes, skipped, files) -> Loaded:
    return Loaded(x_train, y_train, x_test, y_test, classes, files, True, skipped)


def read(name: str, cand: Candidate, options: folder.ImageOptions, output: decode.Output = decode.IN_MEMORY) -> Loaded:
    """The arrays of `cand`; image files are decoded to `output` (decode.Output: where, and the progress)."""
    loaded = _read(name, cand, options, output)
    image_size, color_mode = options.image_size, options.color_mode
    # The readers bounded what they allocated; this checks what came out is the data set
    # named (an image folder's size and colour are the user's to change with the options).
    for split, x in (("train", loaded.x_train), ("test", loaded.x_test)):
        if x is not None:
            shape = x.shape[1:] if not loaded.decoded or (image_size is None and color_mode is None) \
                else x.shape[1:3] if image_size is None else None
            checks.claimed(name, split, len(x), shape, cand.path, "holds" if split == "train"
                           else "its test split holds")
    checks.classes(name, loaded.classes, cand.path)
    return loaded


def _read(name: str, cand: Candidate, options: folder.ImageOptions, output: decode.Output) -> Loaded:
    known = KNOWN.get(name)
    n_classes = len(known.classes) if known else 0
    if cand.kind == "npz":
        if known is None or name == "cifar10":
            expected = ("a folder or archive of images" if known is None
                        else "its python batches or a JPEG layout")
            raise fail(f"is an .npz file; {name} is read from {expected}", cand.path)
        return Loaded(*npz.read(cand.path, name, n_classes), known.classes, [cand.path], False)
    if cand.kind == "idx":
        *arrays, files = idx.read_set(cand.path, name, n_classes)
        return Loaded(*arrays, known.classes, files, False)
    if cand.kind == "cifar_dir":
        *arrays, files = cifar.read_dir(cand.path)
        return Loaded(*arrays, files, False)
    if cand.kind == "image_dir":
        return _decoded(*folder.read_dir(cand.path, options, name, output), [])
    if cand.kind == "archive":
        return read_archive(cand.path, name, options, output)
    if cand.kind == "labels":
        return _decoded(*labels_csv.read(cand.path, options, output), [cand.path])
    raise fail(f"is not a format cnntrain reads for {name}; expected "
               + ("a .npz file, IDX files, or a folder holding them"
                  if name in ("mnist", "fashion_mnist") else "a folder or a .tar.gz archive"),
               cand.path)


def read_archive(path: str, name: str, options: folder.ImageOptions, output: decode.Output = decode.IN_MEMORY) -> Loaded:
    """CIFAR-10 python batches or an image-folder layout, in one pass through the
    archive: batches are unpickled as they stream past, images kept as bytes."""
    allow_batches = name == "cifar10"

    def want(member: str) -> bool:
        base = posixpath.basename(member)
        return (allow_batches and base in cifar.BATCH_NAMES) or decode.is_image_name(base)

    def check(member: str, size: int) -> None:
        base = posixpath.basename(member)
        if allow_batches and base in cifar.BATCH_NAMES:
            if size > cifar.max_bytes(base):
                raise cifar.too_large(base, size, path, member)
        elif size > MAX_IMAGE_BYTES:
            raise fail(f"member '{member}' is {size:,} bytes; an image file in a data archive is at "
                       f"most {MAX_IMAGE_BYTES:,}, so this is not an image", path,
                       hint="remove it from the archive, or shrink the image")

    parts, pictures, dirs = {}, {}, []
    for member, data in archive.members(path, want, check):
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
        return _decoded(*folder.read_members(path, pictures, dirs, options, name, output), [path])
    raise fail("holds no images" + (" and no CIFAR-10 python batches" if allow_batches else "")
               + f"; expected {'cifar-10-batches-py/data_batch_1 ... or ' if allow_batches else ''}"
               "train/<class>/<image> members", path)
