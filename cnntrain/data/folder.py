"""The one-folder-per-class image layout, from a folder on disk or from the
members of an archive:

    ROOT/train/<class>/*.png   ROOT/test/<class>/*.png   (test optional)
    ROOT/<class>/*.png                                    (no test split)

Class names are the sorted class folder names, the same indices in both splits.
Images may sit in nested folders inside their class folder.
"""
from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from cnntrain.errors import not_regular

from . import checks, decode, rows
from .checks import fail
from .decode import IN_MEMORY, Item, Output

_EXTS = ", ".join(decode.IMAGE_EXTENSIONS)


def _hidden(part: str) -> bool:
    # .DS_Store, ._name (macOS resource forks, which look like images but are
    # not), .git, and the __MACOSX folder zips made on a Mac carry.
    return part.startswith(".") or part == "__MACOSX"


class Node:
    __slots__ = ("dirs", "files")

    def __init__(self):
        self.dirs: dict[str, Node] = {}
        self.files: list[str] = []

    def at(self, parts: Iterable[str]) -> Node:
        node = self
        for p in parts:
            node = node.dirs.setdefault(p, Node())
        return node

    def images(self, prefix: str) -> list[str]:
        """Image paths under this node, at any depth, sorted."""
        found = [posixpath.join(prefix, f) for f in self.files if decode.is_image_name(f)]
        for name, child in self.dirs.items():
            found += child.images(posixpath.join(prefix, name))
        return sorted(found)


def tree(files: Iterable[str], dirs: Iterable[str] = ()) -> Node:
    """A tree of relative POSIX paths, hidden entries left out."""
    root = Node()
    for d in dirs:
        parts = d.split("/")
        if not any(_hidden(p) for p in parts):
            root.at(parts)
    for f in files:
        parts = f.split("/")
        if not any(_hidden(p) for p in parts):
            root.at(parts[:-1]).files.append(parts[-1])
    return root


def scan(root: str) -> Node:
    files, dirs, seen = [], [], set()

    def unreadable(e: OSError):
        raise fail(f"cannot be read ({e.strerror or e})", e.filename or root)

    # followlinks: data folders are often symlinked in; `seen` stops link cycles.
    for here, subdirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = [d for d in subdirs if not _hidden(d)]
        rel = os.path.relpath(here, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        dirs += [rel + d for d in subdirs]
        for n in names:
            # A FIFO named x.png would block the decoder forever; a device would never end.
            kind = decode.is_image_name(n) and not _hidden(n) and not_regular(os.path.join(here, n))
            if kind:
                raise fail(f"is {kind}, not a regular file; an image folder holds only regular "
                           "image files", os.path.join(here, n),
                           hint="remove it from the folder, or replace it with the image file")
        files += [rel + n for n in names]
    return tree(files, dirs)


def plan(root: Node, where: Callable[[str], tuple[str, str]]):
    """(class_names, [(relpath, label)] train, [(relpath, label)] test or None).
    `where(rel)` gives (file, name) for a message about folder `rel`."""
    node, prefix = root, ""
    # Archives usually wrap the layout in one top folder (cifar10-jpeg/train/...);
    # a lone folder without images of its own is such a wrapper, not a class.
    while ("train" not in node.dirs and not any(map(decode.is_image_name, node.files))
           and len(node.dirs) == 1):
        name, child = next(iter(node.dirs.items()))
        if any(map(decode.is_image_name, child.files)):
            break
        node, prefix = child, posixpath.join(prefix, name)
    if "train" in node.dirs:
        splits = {"train": posixpath.join(prefix, "train"), "test": None}
        if "test" in node.dirs:
            splits["test"] = posixpath.join(prefix, "test")
    else:
        splits = {"train": prefix, "test": None}
    train_node = root.at(splits["train"].split("/")) if splits["train"] else root
    classes = sorted(train_node.dirs)
    file, shown = where(splits["train"])
    if not classes:
        raise fail(f"{shown} holds no class folders; expected one subfolder per class "
                   f"({shown}/<class>/*.png), optionally under train/ and test/", file,
                   hint="arrange images as train/<class>/<image> (and test/<class>/<image>)")
    if len(classes) < 2:
        raise fail(f"{shown} holds one class folder ('{classes[0]}'); expected at least 2 "
                   "classes to classify", file)
    stray = [f for f in train_node.files if decode.is_image_name(f)]
    if stray:
        raise fail(f"{shown} holds images outside any class folder (e.g. '{stray[0]}'); expected "
                   "every image inside its class folder", file)
    out = {"train": _split(train_node, splits["train"], classes, classes, where), "test": None}
    if splits["test"]:
        test_node = root.at(splits["test"].split("/"))
        extra = sorted(set(test_node.dirs) - set(classes))
        if extra:
            tfile, tshown = where(posixpath.join(splits["test"], extra[0]))
            raise fail(f"test class folder {tshown} has no training counterpart; expected the "
                       f"test classes to be among the training classes {classes}", tfile,
                       hint="add training images for it, or remove it from test/")
        out["test"] = _split(test_node, splits["test"], sorted(test_node.dirs), classes, where)
    return classes, out["train"], out["test"]


def _split(node: Node, prefix: str, names: list[str], classes: list[str], where):
    found = []
    for name in names:
        rel = posixpath.join(prefix, name)
        paths = node.dirs[name].images(rel)
        if not paths:
            file, shown = where(rel)
            raise fail(f"class folder {shown} holds no images; expected files ending in {_EXTS}",
                       file, hint="add images to it, or remove the empty folder")
        label = classes.index(name)
        found += [(p, label) for p in paths]
    return found


@dataclass(frozen=True)
class ImageOptions:
    """The spec's data keys that decide how an image file becomes pixels (None: from the files)."""
    image_size: tuple[int, int] | None = None   # (height, width)
    color_mode: str | None = None
    resize: str = "stretch"                      # data.resize: stretch | pad | crop
    on_broken: str = "error"                     # data.on_broken: error | skip


def load(root: Node, make: Callable[[str], Item], where, options: ImageOptions, name, output: Output = IN_MEMORY):
    """Decodes a planned layout of data set `name`: (x_train, y_train, x_test, y_test, classes, skipped).
    A built-in data set's counts, classes and image size are checked before decoding."""
    classes, train, test = plan(root, where)
    file = where("")[0]
    checks.classes(name, classes, file)
    checks.claimed(name, "train", len(train), None, file, "holds")
    checks.claimed(name, "test", len(test or ()), None, file, "its test split holds")
    return decode_splits(classes, train, test, make, file, options, name, output)


def decode_splits(classes, train, test, make: Callable[[str], Item], file: str, options: ImageOptions,
                  name="image_folder", output: Output = IN_MEMORY):
    """[(name, label)] of the training (and test, or None) split, decoded: (x_train, y_train,
    x_test, y_test, classes, skipped names). `make` turns a name into its Item; `file` is blamed;
    `output` says where the pixels go and who hears the progress."""
    train_items = [make(p) for p, _ in train]
    color_mode, guessed = options.color_mode, options.color_mode is None
    if guessed:
        first_class = [it for it, (_, y) in zip(train_items, train) if y == 0]
        color_mode = decode.guess_color_mode(first_class)
    size = None
    if options.image_size is None:
        # The first readable image sets the size; the unreadable ones are all named by decode_all.
        first = next(decode.readable(train_items), None)
        reference, size = (first[0], first[2]) if first else (train_items[0], (1, 1))
        checks.claimed(name, "train", 0, size[::-1], file, "holds")
    else:
        reference, size = train_items[0], (options.image_size[1], options.image_size[0])
    resize = options.resize if options.image_size is not None else None
    on_broken = options.on_broken

    def run(split, items, pairs):
        gray = color_mode == "grayscale"
        shape = (len(items), size[1], size[0], 1 if gray else 3)
        got = decode.decode_all(items, color_mode, size, resize, reference, source=file, on_broken=on_broken,
                                guessed=guessed, target=output.target(split, shape), progress=output.progress)
        y = np.fromiter((y for _, y in pairs), dtype=np.int64, count=len(pairs))
        pixels = got.pixels
        if output.later:
            kept = items if got.kept is None else [items[i] for i in got.kept]
            pixels = rows.Decoding(kept, functools.partial(decode.decode_one, gray=gray, size=size, resize=resize,
                                                           reference=reference), shape[1:])
        return pixels, (y if got.kept is None else y[got.kept]), got.skipped

    if output.progress is not None:
        output.progress.start(len(train) + len(test or ()))
    x_train, y_train, skipped = run("x_train", train_items, train)
    del train_items
    if test is None:
        x_test = y_test = None
    else:
        x_test, y_test, skipped_test = run("x_test", [make(p) for p, _ in test], test)
        skipped += skipped_test
    if output.progress is not None:
        output.progress.done()
    return x_train, y_train, x_test, y_test, classes, skipped


def read_dir(root: str, options: ImageOptions = ImageOptions(), name="image_folder", output: Output = IN_MEMORY):
    def where(rel):
        path = os.path.join(root, *rel.split("/")) if rel else root
        return path, f"'{path}'"

    return load(scan(root), lambda rel: Item(os.path.join(root, *rel.split("/")), os.path.join(
        root, *rel.split("/"))), where, options, name, output)


def read_members(archive: str, files: dict[str, bytes], dirs: Iterable[str],
                 options: ImageOptions = ImageOptions(), name="image_folder", output: Output = IN_MEMORY):
    def where(rel):
        return archive, f"'{rel or '.'}' (in the archive)"

    return load(tree(files, dirs), lambda rel: Item(files[rel], archive, rel), where, options, name, output)
