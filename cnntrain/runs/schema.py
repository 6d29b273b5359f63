"""What each file cnntrain reads back must hold: one small declarative schema per file, one check.

A run folder can be edited, truncated or tampered with between the write and the read. Whatever
is found, the reader gets either data of the types below or one error naming the file and the
field: `FILE: damaged: 'epochs_done' must be an integer >= 0, received: '2' (str)`. The checks of
meaning that need more than the file (the resume state against the spec and its own history, a
model's metadata against the model) are beside the readers that know the rest.
"""
from __future__ import annotations

import math
from pathlib import Path

from cnntrain.errors import CnntrainError, not_regular
from cnntrain.spec.schema import ON_BROKEN_CHOICES, RESIZE_CHOICES, TTA_CHOICES

DAMAGED_HINT = "the file was changed or broken after cnntrain wrote it"
RESUME_HINT = DAMAGED_HINT + "; start a new fit: this run's backup/ cannot be resumed"


class Damaged(CnntrainError):
    """A file cnntrain wrote, read back, is not what cnntrain writes."""


def damaged(path, field: str, message: str, hint: str = DAMAGED_HINT) -> Damaged:
    """The CnntrainError for a damaged file: `FILE: damaged: 'field' ...` with what to do."""
    where = f"'{field}' " if field else ""
    return Damaged(f"damaged: {where}{message}", file=str(path), hint=hint)


# ---------------------------------------------------------------- the building blocks


class Kind:
    """A value's expected kind: `check` returns a reason it fails, or None."""

    what = "a value"

    def check(self, value):
        return None

    def problem(self, value, field):
        """(field, reason, value) of the first thing wrong, or None."""
        reason = self.check(value)
        return None if reason is None else (field, reason, value)


_LARGEST = 2 ** 63 - 1   # no file cnntrain writes holds a larger integer; JSON allows any (10**4000)


class Int(Kind):
    """An integer in a range."""
    def __init__(self, low=None, high=None):
        self.low, self.high = low, high
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        self.what = "an integer" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")

    def check(self, value):
        if not isinstance(value, int) or isinstance(value, bool) or (self.low is not None and value < self.low) \
                or (self.high is not None and value > self.high) or abs(value) > _LARGEST:
            return self.what


class Number(Kind):
    """A number (not a boolean) in a range, finite unless allowed."""
    def __init__(self, finite=True, low=None, high=None):
        self.finite, self.low, self.high = finite, low, high
        self.what = ("a finite number" if finite else "a number") + (
            f" in [{low}, {high}]" if low is not None else "")

    def check(self, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or (isinstance(value, int)
                                                                               and abs(value) > _LARGEST):
            return self.what
        if (self.finite and not math.isfinite(value)) or (self.low is not None and not self.low <= value <= self.high):
            return self.what


class Str(Kind):
    """A string, of at most max_len characters, one of `choices` when given."""
    def __init__(self, choices=None, max_len=10_000):
        self.choices, self.max_len = choices, max_len
        self.what = f"one of {', '.join(choices)}" if choices else "a text"

    def check(self, value):
        if not isinstance(value, str) or len(value) > self.max_len or (self.choices and value not in self.choices):
            return self.what


class Bool(Kind):
    """true or false."""
    what = "true or false"

    def check(self, value):
        return None if isinstance(value, bool) else self.what


class Optional(Kind):
    """The kind, or null."""
    def __init__(self, kind):
        self.kind = kind
        self.what = f"{kind.what} or null"

    def problem(self, value, field):
        return None if value is None else self.kind.problem(value, field)


class List(Kind):
    """A list of items of one kind, of a given length when given."""
    def __init__(self, item, length=None, min_len=0):
        self.item, self.length, self.min_len = item, length, min_len
        size = f"{length} " if length else ("non-empty " if min_len else "")
        self.what = f"a {size}list of {item.what.removeprefix('a ').removeprefix('an ')}s"

    def problem(self, value, field):
        if not isinstance(value, list) or (self.length and len(value) != self.length) or len(value) < self.min_len:
            return field, self.what, value
        for i, item in enumerate(value):
            found = self.item.problem(item, f"{field}[{i}]")
            if found:
                return found
        return None


class Record(Kind):
    """A JSON object: `fields` must be there (those given as Optional may be null), `rest` is the kind
    of any other key's value (None: other keys are not allowed)."""

    what = "an object"

    def __init__(self, fields: dict, rest: Kind | None = Kind(), optional_keys=()):  # noqa: B008 - a Kind holds no state
        self.fields, self.rest, self.optional_keys = fields, rest, set(optional_keys)

    def problem(self, value, field):
        if not isinstance(value, dict):
            return field, self.what, value
        prefix = f"{field}." if field else ""
        for key, kind in self.fields.items():
            if key not in value:
                if key in self.optional_keys:
                    continue
                return f"{prefix}{key}", _MISSING, None
            found = kind.problem(value[key], f"{prefix}{key}")
            if found:
                return found
        for key, item in value.items():
            if key in self.fields:
                continue
            if self.rest is None:
                return f"{prefix}{key}", _UNKNOWN, None
            found = self.rest.problem(item, f"{prefix}{key}")
            if found:
                return found
        return None


_MISSING, _UNKNOWN = "is missing", "is not a field of this file"


def check(path, value, schema: Kind, hint: str = DAMAGED_HINT):
    """`value` (a file's parsed content) as `schema` says, or a Damaged error naming the field."""
    found = schema.problem(value, "")
    if found is None:
        return value
    field, reason, bad = found
    if reason in (_MISSING, _UNKNOWN):
        raise damaged(path, field, reason, hint)
    if not field:
        raise damaged(path, "", f"the file must hold {reason}, received: {show(bad)}", hint)
    raise damaged(path, field, f"must be {reason}, received: {show(bad)}", hint)


def show(value) -> str:
    """A value as quoted in a message: its repr, shortened, and its type (as the spec's messages do)."""
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({type(value).__name__})" if value is not None else "nothing (null)"


# ---------------------------------------------------------------- the files

FIGURES = Record({}, rest=Number(finite=False))   # {name: value}; a diverged run has an inf loss
# The fit's test figures say the test-time augmentation they were taken with, when there was one.
TEST_FIGURES = Record({"tta": Str(TTA_CHOICES)}, rest=Number(finite=False), optional_keys=("tta",))

# backup/state.json, as train/callbacks.py RunState writes it.
HISTORY_ROW = Record({"epoch": Int(1)}, rest=Number(finite=False))
HISTORY_ROWS = List(HISTORY_ROW)   # history.csv, as runs/history.py parses it
CALLBACK_FIELDS = ("wait", "best", "cooldown_counter", "best_epoch", "stopped_epoch")
STATE = Record({
    "epochs_done": Int(0), "best": Optional(Number()), "best_epoch": Optional(Int(1)),
    "history": List(HISTORY_ROW), "weights": Optional(Str(max_len=100)), "monitor": Str(max_len=200),
    "callbacks": List(Record({k: Number() for k in CALLBACK_FIELDS}, rest=None, optional_keys=CALLBACK_FIELDS)),
}, rest=None)

# metrics.json, as train/finish.py writes it.
METRICS = Record({
    "name": Str(), "epochs": Int(0), "stopped": Str(("completed", "early_stopping", "nan", "pruned")),
    "train": FIGURES, "validation": FIGURES, "test": Optional(TEST_FIGURES),
    "best": Record({"monitor": Str(), "value": Optional(Number()), "epoch": Optional(Int(1))}),
    "parameters": Int(0), "wall_time_s": Number(), "train_images_per_s": Optional(Number()),
})

# eval.json, as assess/evaluate.py writes it: what `runs`, compare and card read back.
_SHARE = Number(low=0, high=1)
EVALUATION = Record({
    "accuracy": _SHARE, "samples": Int(1), "loss": Number(finite=False), "top_k": Int(1), "top_k_accuracy": _SHARE,
    "macro_f1": _SHARE, "split": Str(max_len=100), "tta": Str(TTA_CHOICES),
    "per_class": List(Record({"class": Str(max_len=1000), "precision": _SHARE, "recall": _SHARE, "f1": _SHARE,
                              "support": Int(0)})),
    "most_confused": List(Record({"true": Str(max_len=1000), "predicted": Str(max_len=1000), "count": Int(1)})),
}, optional_keys=("split", "tta", "most_confused", "top_k", "top_k_accuracy"))

# leaderboard.json, as experiments/sweep.py writes it.
TRIAL = Record({"number": Int(0), "state": Str(("COMPLETE", "PRUNED", "FAIL")), "value": Optional(Number()),
                "epochs": Optional(Int(0)), "run": Optional(Str(max_len=1000)), "set": List(Str()),
                "params": Record({}), "seconds": Optional(Number())}, optional_keys=("epochs", "params", "seconds"))
LEADERBOARD = Record({"monitor": Str(max_len=200), "direction": Str(("maximize", "minimize")), "trials": List(TRIAL)})

# cnntrain.json inside model.keras: every field may be missing (a plain Keras file has none).
_SHAPE = List(Int(1), length=3)
METADATA_FIELDS = {
    # The names of datasets, color modes and normalizations are checked where they are used.
    "class_names": List(Str(max_len=1000), min_len=1), "input_shape": _SHAPE, "normalize": Str(),
    "background": Optional(Str(("dark", "light"))), "dataset": Optional(Str()),
    "data_path": Optional(Str()), "image_size": Optional(List(Int(1), length=2)),
    "color_mode": Optional(Str()), "one_hot": Bool(), "name": Optional(Str()),
    "cnntrain_version": Str(), "epoch": Int(0), "tta": Str(TTA_CHOICES),
    "label_smoothing": Number(low=0, high=1), "resize": Str(RESIZE_CHOICES),
    "on_broken": Str(ON_BROKEN_CHOICES), "labels": Optional(Str()),
    "held_out": Optional(Record({"images": Int(1), "digest": Str(max_len=64)}, rest=None)),
}
METADATA = Record(METADATA_FIELDS, optional_keys=METADATA_FIELDS)

# An exported model's metadata (the cnntrain.json beside it, an ONNX file's metadata_props): the
# model.keras metadata and what export adds; predict resizes images and names classes by it.
EXPORTED_FIELDS = {**METADATA_FIELDS, "format": Str(), "quantize": Str(), "source_model": Str(),
                   "input": Record({}), "output": Str()}
EXPORTED = Record(EXPORTED_FIELDS, optional_keys=EXPORTED_FIELDS)
# export.json: only the Keras model it was exported from is read back (for a hint).
EXPORT_RECORD = Record({"model": Str()})

# env.json, as train/fit.py writes it: only what is read back is checked.
ENV = Record({"started": Str(max_len=100)}, optional_keys=("started",))


def read(path, schema: Kind, hint: str = DAMAGED_HINT):
    """A JSON file cnntrain wrote, read back and checked."""
    from cnntrain.runs.atomic import read_json

    kind = not_regular(path)
    if kind:   # open() of a FIFO blocks until something writes to it
        raise damaged(path, "", f"is {kind}, not a regular file", hint)
    return check(Path(path), read_json(path), schema, hint)


def read_optional(path, schema: Kind, hint: str = DAMAGED_HINT):
    """`read`, or None when the file is not there (a run killed early, a model never evaluated)."""
    if not Path(path).exists():
        return None
    return read(path, schema, hint)


def check_resume(path, state: dict, *, epochs: int, monitor: str, callbacks: int) -> dict:
    """backup/state.json (already checked against STATE) against the run's spec and its own history:
    a tampered epoch counter would resume "after epoch 99 of 4", a NaN best would freeze best.keras."""
    done = state["epochs_done"]

    def fail(field, message):
        return damaged(path, field, message, RESUME_HINT)

    if done > epochs:
        raise fail("epochs_done", f"is {done}, but the run trains {epochs} epochs")
    if [row["epoch"] for row in state["history"]] != list(range(1, done + 1)):
        shown = [row["epoch"] for row in state["history"]][:10]
        raise fail("history", f"must hold epochs 1 to {done} in order (epochs_done is {done}), received epochs {shown}")
    expected = f"epoch-{done:04d}.weights.h5" if done else None
    if state["weights"] != expected:
        raise fail("weights", f"must be {expected!r} after {done} epochs, received: {show(state['weights'])}")
    if expected and not (Path(path).parent / expected).is_file():
        raise fail("weights", f"names {expected}, which is not in {Path(path).parent}")
    if (state["best"] is None) != (state["best_epoch"] is None) or (state["best_epoch"] or 0) > done:
        raise fail("best_epoch", f"must be an epoch of 1 to {done} given with 'best' (or both null), received: "
                                 f"best {show(state['best'])}, best_epoch {show(state['best_epoch'])}")
    if state["monitor"] != monitor:
        raise fail("monitor", f"is {state['monitor']!r}, but this run follows {monitor!r}")
    if len(state["callbacks"]) > callbacks:
        raise fail("callbacks", f"holds the counters of {len(state['callbacks'])} callbacks; the spec has {callbacks}")
    return state
