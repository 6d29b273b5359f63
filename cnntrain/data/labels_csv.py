"""Labels from a CSV file (data.labels), beside the one-folder-per-class layout:

    filename,label[,split]
    photos/0001.jpg,cat,train
    photos/0002.jpg,dog,test

Paths are relative to the CSV's folder; `split` is train (also when empty or absent) or test.
Class names are the sorted labels of the training rows, as a folder's are its sorted class folders.
"""
from __future__ import annotations

import csv
import os

from cnntrain.errors import CnntrainError, not_regular

from . import decode
from .decode import IN_MEMORY, Item, Output
from .folder import ImageOptions, decode_splits

COLUMNS = ("filename", "label")
SPLITS = ("train", "test")
MAX_BYTES = 256 << 20   # a CSV of labels, not a data set: far above 1 million rows


def _error(path: str, line: int | None, message: str, hint: str | None = None) -> CnntrainError:
    return CnntrainError(message, file=path, line=line, hint=hint)


def rows(path: str):
    """(line number, row as a dict) of each data row, after the header is checked."""
    if not os.path.exists(path):
        raise _error(path, None, "data.labels: no such file", "set data.labels to a CSV file of filename,label rows")
    kind = not_regular(path)
    if kind:
        raise _error(path, None, f"data.labels is {kind}, not a CSV file", "set data.labels to a CSV file")
    if os.path.getsize(path) > MAX_BYTES:
        raise _error(path, None, f"is {os.path.getsize(path):,} bytes; a labels CSV is at most {MAX_BYTES:,}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: Excel's byte-order mark
            reader = csv.reader(f)
            header = next(reader, None)
            names = [h.strip().lower() for h in header or []]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise _error(path, 1, f"the header is {header or 'empty'}; expected the columns filename and "
                             "label (and optionally split)", "make the first line: filename,label,split")
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    raise _error(path, reader.line_num, f"holds {len(row)} values; the header names {len(names)}",
                                 "one value per column; quote a value that holds a comma")
                yield reader.line_num, {n: cell.strip() for n, cell in zip(names, row)}
    except UnicodeDecodeError as exc:
        raise _error(path, None, f"is not UTF-8 text ({exc.reason})", "save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise _error(path, None, f"is not a readable CSV ({exc})") from None
    except OSError as exc:
        raise _error(path, None, f"cannot be read ({exc.strerror or exc})") from None


def plan(path: str):
    """(class names, [(file, label)] train, [(file, label)] test or None), every row checked."""
    folder = os.path.dirname(os.path.abspath(path))
    seen: dict[str, int] = {}
    listed = {"train": [], "test": []}
    for line, row in rows(path):
        name, label, split = row["filename"], row["label"], row.get("split") or "train"
        if not name:
            raise _error(path, line, "has no filename", "every row names an image file")
        if not label:
            raise _error(path, line, f"'{name}' has no label", "give every image its class name")
        if split not in SPLITS:
            raise _error(path, line, f"split '{split}' is not train or test", "use train or test, or leave it empty")
        file = os.path.normpath(os.path.join(folder, name))
        if file in seen:
            raise _error(path, line, f"'{name}' is listed again (first at line {seen[file]})",
                         "list each image once")
        seen[file] = line
        if not os.path.isfile(file):
            raise _error(path, line, f"'{name}' does not exist (looked for {file})",
                         "filenames are relative to the CSV's folder")
        if not decode.is_image_name(file):
            raise _error(path, line, f"'{name}' is not an image file; expected one ending in "
                         f"{', '.join(decode.IMAGE_EXTENSIONS)}")
        listed[split].append((line, file, label))
    classes = sorted({label for _, _, label in listed["train"]})
    if len(classes) < 2:
        raise _error(path, None, f"its training rows hold {len(classes)} label{'s' if len(classes) != 1 else ''}"
                     f"{' (' + repr(classes[0]) + ')' if classes else ''}; expected at least 2 classes to classify")
    index = {c: i for i, c in enumerate(classes)}
    for line, _, label in listed["test"]:
        if label not in index:
            raise _error(path, line, f"label '{label}' is not among the training labels {classes}",
                         "add training rows for it, or correct the label")
    train = [(file, index[label]) for _, file, label in listed["train"]]
    test = [(file, index[label]) for _, file, label in listed["test"]] or None
    return classes, train, test


def read(path: str, options: ImageOptions, output: Output = IN_MEMORY):
    """(x_train, y_train, x_test, y_test, classes, skipped) of the images a labels CSV lists."""
    classes, train, test = plan(path)
    return decode_splits(classes, train, test, lambda f: Item(f, f), path, options, output=output)
