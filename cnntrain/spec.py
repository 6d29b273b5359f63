"""The YAML spec: loading with line marks, the defaults, validation, --set overrides.

Imports no TensorFlow: a broken spec is reported before the 5 s TensorFlow import.
Layer names and their arguments are checked later by the builder against Keras itself.
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnntrain.errors import SpecError
from cnntrain.yamlmarks import MAX_BYTES, parse_yaml, shorten, show

REQUIRED = object()

# Every key a spec may have, with its default. `model.layers` is the only required one.
DEFAULTS = {
    "name": None,                # default: the spec file's name without .yaml
    "seed": 42,                  # seeds Python, NumPy and TensorFlow
    "data": {
        "dataset": "mnist",      # mnist | fashion_mnist | cifar10 | image_folder
        "path": None,            # a file or folder; default: --data-dir, $CNNTRAIN_DATA_DIR, Keras' cache
        "validation": "split",   # split: hold out validation_split of train | test: the test split | none
        "validation_split": 0.1,  # fraction of the training images, stratified by class
        "image_size": None,      # [height, width] to resize image_folder images to
        "color_mode": None,      # rgb | grayscale for image_folder; default: from the images
        "limit_train": None,     # use N training images, drawn at random (seeded): quick trials
        "limit_test": None,      # use N test images, drawn the same way
    },
    "preprocess": {
        "normalize": "scale",    # none: raw 0-255 | scale: to [0, 1] | standardize: per-channel z-score
    },
    "augment": [],               # keras.layers preprocessing layers, training batches only
    "model": {
        "input_shape": None,     # [height, width, channels]; default: the dataset's shape
        "layers": REQUIRED,      # keras.layers class names with their constructor arguments
    },
    "compile": {
        "optimizer": "adam",     # a name, or {ClassName: {arguments}} from keras.optimizers
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "label_smoothing": 0.0,  # > 0 switches to one-hot labels with categorical crossentropy
    },
    "fit": {
        "batch_size": 128,       # images per step (global, across all replicas)
        "epochs": 10,
        "monitor": "val_accuracy",  # what best.keras, and callbacks without a monitor, watch
        "callbacks": [],         # keras.callbacks class names with arguments, e.g. EarlyStopping
        "tensorboard": False,    # write TensorBoard logs to the run folder
        "strategy": "auto",      # auto | one-device | mirrored | multi-worker
    },
    "output": {
        "dir": "runs",           # run folders go to DIR/<name>/<timestamp>/
    },
}

DATASETS = ("mnist", "fashion_mnist", "cifar10", "image_folder")
CHOICES = {
    ("data", "dataset"): DATASETS,
    ("data", "validation"): ("split", "test", "none"),
    ("data", "color_mode"): ("rgb", "grayscale"),
    ("preprocess", "normalize"): ("none", "scale", "standardize"),
    ("fit", "strategy"): ("auto", "one-device", "mirrored", "multi-worker"),
}

MAX_SEED = 2 ** 32 - 1      # NumPy's seed range, which keras.utils.set_random_seed uses


@dataclass
class Spec:
    """A validated spec: `values` holds every key (defaults filled in)."""

    values: dict
    file: str = "<spec>"
    marks: dict = field(default_factory=dict)      # path -> (line, column) of the value
    key_marks: dict = field(default_factory=dict)  # path -> (line, column) of the key
    overrides: dict = field(default_factory=dict)  # path -> the --set text that gave it

    def __getitem__(self, key):
        return self.values[key]

    def where(self, path, *, key: bool = False) -> dict:
        """The location of `path` as keyword arguments for SpecError."""
        path = tuple(path)
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            if prefix in self.overrides:
                return {"file": f"--set {self.overrides[prefix]}"}
            marks = self.key_marks if key and end == len(path) else self.marks
            if prefix in marks:
                line, column = marks[prefix]
                return {"file": self.file, "line": line, "column": column}
        return {"file": self.file}

    def error(self, path, message: str, hint: str | None = None, *, key: bool = False) -> SpecError:
        return SpecError(message, hint=hint, **self.where(path, key=key))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.values, sort_keys=False, default_flow_style=None)


def dotted(path) -> str:
    return ".".join(str(p) for p in path)



def load_spec(path, overrides=()) -> Spec:
    """Read, override and validate a spec file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)   # bounded: a huge file, or a device such as /dev/zero, is not read whole
    except FileNotFoundError:
        raise SpecError("no such spec file", file=str(path), hint="give the path of a .yaml spec, e.g. configs/mnist.yaml") from None
    except IsADirectoryError:
        raise SpecError("is a folder, not a spec file", file=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror or exc}", file=str(path)) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(f"the spec is too large: more than {MAX_BYTES:,} bytes", file=str(path),
                        hint="a spec is a short YAML file; is this the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start})", file=str(path), hint="save the spec as UTF-8") from None
    return spec_from_text(text, file=str(path), overrides=overrides, default_name=path.stem)


def spec_from_text(text: str, *, file: str = "<spec>", overrides=(), default_name: str = "model") -> Spec:
    values, marks, key_marks = parse_yaml(text, file)
    if values is None:
        raise SpecError("the spec is empty", file=file, hint="a spec needs at least model.layers; see configs/mnist.yaml")
    if not isinstance(values, dict):
        raise SpecError(f"a spec must be a mapping of sections, received: {type(values).__name__}",
                        file=file, line=1, column=1, hint="start with keys such as 'model:' and 'fit:'")
    spec = Spec(values, file, marks, key_marks)
    for text_ in overrides:
        apply_override(spec, text_)
    _check_keys(spec, spec.values, DEFAULTS, ())
    spec.values = _merge(DEFAULTS, spec.values)
    if spec.values["name"] is None:
        spec.values["name"] = default_name
    validate(spec)
    return spec


def _merge(defaults, values):
    merged = {}
    for key, default in defaults.items():
        if key not in values:
            if default is REQUIRED:
                continue
            merged[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(values[key], dict):
            merged[key] = _merge(default, values[key])
        else:
            merged[key] = values[key]
    return merged


def _check_keys(spec, values, defaults, path):
    for key in values:
        if key not in defaults:
            allowed = list(defaults)
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
            where = f"in '{shorten(dotted(path), 80)}'" if path else "at the top level"
            raise spec.error(path + (key,), f"unknown key '{shorten(key, 80)}' {where}", hint, key=True)
        sub = defaults[key]
        if isinstance(sub, dict):
            if not isinstance(values[key], dict):
                if values[key] is None:
                    values[key] = {}
                    continue
                raise spec.error(path + (key,), f"'{dotted(path + (key,))}' must be a mapping, received: "
                                 f"{show(values[key])}", f"write its keys indented below '{key}:'")
            _check_keys(spec, values[key], sub, path + (key,))


# ---------------------------------------------------------------- overrides


def apply_override(spec: Spec, text: str):
    """Apply one `--set a.b.c=value` (value parsed as YAML) to the raw spec."""
    if "=" not in text:
        raise SpecError(f"--set expects KEY=VALUE, received: '{text}'", hint="e.g. --set fit.epochs=3")
    key, _, raw_value = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise SpecError(f"--set key '{shorten(key, 80)}' has an empty part", hint="write dotted keys, e.g. fit.epochs")
    text = shorten(text, 120)   # as it is quoted in messages
    try:
        # The spec's own YAML rules: no object tags, bounded nesting and alias expansion.
        value = parse_yaml(raw_value, f"--set {text}")[0] if raw_value.strip() else None
    except SpecError as exc:
        syntax = exc.message.startswith("YAML syntax error")
        raise SpecError(f"the value is not valid YAML ({exc.message})", file=f"--set {text}",
                        hint="quote strings with special characters" if syntax or not exc.hint else exc.hint) from None
    node, path = spec.values, ()
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not (part.isascii() and part.isdigit() and len(part) < 10) or int(part) >= len(node):
                raise SpecError(f"--set {text}: '{dotted(path)}' is a list of {len(node)} items; "
                                f"'{part}' is not an index in it", hint=f"use an index 0..{len(node) - 1}")
            part = int(part)
        elif not isinstance(node, dict):
            raise SpecError(f"--set {text}: '{dotted(path)}' is {show(node)}, not a mapping",
                            hint=f"set the whole value instead: --set {dotted(path)}='{{...}}'")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]
        path += (part,)
    spec.overrides[path] = text
    for stale in [p for p in spec.marks if p[:len(path)] == path]:
        del spec.marks[stale]


# ---------------------------------------------------------------- validation


def _int(spec, path, value, minimum=None, optional=False, maximum=None):
    if optional and value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        need = f"an integer >= {minimum}" if minimum is not None else "an integer"
        if maximum is not None:
            need = f"an integer in [{minimum}, {maximum}]"
        raise spec.error(path, f"'{dotted(path)}' must be {need}, received: {show(value)}")


def _number(spec, path, value, low, high, *, high_open=True):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise spec.error(path, f"'{dotted(path)}' must be a number in [{low}, {high}{bracket}, received: {show(value)}")


def validate(spec: Spec):
    v = spec.values
    if not isinstance(v["name"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v["name"]):
        raise spec.error(("name",), f"'name' must be a simple name (letters, digits, . _ -), received: {show(v['name'])}",
                         "it names the run folder runs/<name>/")
    _int(spec, ("seed",), v["seed"], 0, maximum=MAX_SEED)
    for path, choices in CHOICES.items():
        value = v[path[0]][path[1]]
        if value is None and path == ("data", "color_mode"):
            continue
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise spec.error(path, f"'{dotted(path)}' must be one of {', '.join(choices)}, received: {show(value)}", hint)
    data = v["data"]
    if data["path"] is not None and not isinstance(data["path"], str):
        raise spec.error(("data", "path"), f"'data.path' must be a path, received: {show(data['path'])}")
    _number(spec, ("data", "validation_split"), data["validation_split"], 0.0, 1.0)
    if data["validation"] == "split" and data["validation_split"] == 0:
        raise spec.error(("data", "validation_split"), "'data.validation_split' is 0 but data.validation is 'split'",
                         "set a fraction such as 0.1, or data.validation: test or none")
    for key in ("limit_train", "limit_test"):
        _int(spec, ("data", key), data[key], 1, optional=True)
    _shape(spec, ("data", "image_size"), data["image_size"], 2)
    if data["dataset"] == "image_folder" and data["path"] is None:
        raise spec.error(("data", "dataset"), "data.dataset 'image_folder' needs data.path",
                         "set data.path to a folder with one subfolder of images per class")
    _shape(spec, ("model", "input_shape"), v["model"]["input_shape"], 3)
    if "layers" not in v["model"]:
        raise spec.error(("model",), "the spec has no model.layers",
                         "list the model's layers under model.layers, e.g. '- Conv2D: {filters: 32, kernel_size: 3}'")
    _layer_list(spec, ("model", "layers"), v["model"]["layers"], allow_empty=False)
    _layer_list(spec, ("augment",), v["augment"], allow_empty=True)
    _layer_list(spec, ("fit", "callbacks"), v["fit"]["callbacks"], allow_empty=True)
    comp = v["compile"]
    _object_ref(spec, ("compile", "optimizer"), comp["optimizer"])
    if isinstance(comp["optimizer"], dict):
        (name, args), = comp["optimizer"].items()
        if isinstance(args, dict) and isinstance(args.get("learning_rate"), dict):
            # A schedule, built by the builder as {ClassName: {arguments}} like the optimizer itself.
            _object_ref(spec, ("compile", "optimizer", name, "learning_rate"), args["learning_rate"])
    _object_ref(spec, ("compile", "loss"), comp["loss"])
    if not isinstance(comp["metrics"], list):
        raise spec.error(("compile", "metrics"), f"'compile.metrics' must be a list, received: {show(comp['metrics'])}",
                         "e.g. metrics: [accuracy]")
    for i, metric in enumerate(comp["metrics"]):
        _object_ref(spec, ("compile", "metrics", i), metric)
    _number(spec, ("compile", "label_smoothing"), comp["label_smoothing"], 0.0, 1.0)
    fit = v["fit"]
    _int(spec, ("fit", "batch_size"), fit["batch_size"], 1)
    _int(spec, ("fit", "epochs"), fit["epochs"], 1)
    if not isinstance(fit["monitor"], str):
        raise spec.error(("fit", "monitor"), f"'fit.monitor' must be a metric name, received: {show(fit['monitor'])}",
                         "e.g. val_accuracy or val_loss")
    if not isinstance(fit["tensorboard"], bool):
        raise spec.error(("fit", "tensorboard"), f"'fit.tensorboard' must be true or false, received: {show(fit['tensorboard'])}")
    if not isinstance(v["output"]["dir"], str) or not v["output"]["dir"]:
        raise spec.error(("output", "dir"), f"'output.dir' must be a folder path, received: {show(v['output']['dir'])}")


def _shape(spec, path, value, length):
    if value is None:
        return
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)):
        example = "[28, 28, 1]" if length == 3 else "[32, 32]"
        raise spec.error(path, f"'{dotted(path)}' must be a list of {length} positive integers, received: {show(value)}",
                         f"e.g. {example}")


def _object_ref(spec, path, value):
    """A Keras object by name ('adam') or as {ClassName: {arguments}}."""
    if isinstance(value, str) and value:
        return
    if isinstance(value, dict) and len(value) == 1:
        (name, args), = value.items()
        if isinstance(name, str) and (args is None or isinstance(args, dict)):
            return
    raise spec.error(path, f"'{dotted(path)}' must be a name or {{ClassName: {{arguments}}}}, received: {show(value)}",
                     "e.g. adam, or {Adam: {learning_rate: 0.001}}")


def layer_entries(items):
    """(index, name, args) for a layer list in the spec's syntax; args is None, a scalar, a list or a dict."""
    for i, item in enumerate(items):
        if isinstance(item, str):
            yield i, item, None
        else:
            (name, args), = item.items()
            yield i, name, args


def _layer_list(spec, path, items, *, allow_empty):
    if items is None and allow_empty:
        _set(spec.values, path, [])
        return
    if not isinstance(items, list) or (not items and not allow_empty):
        raise spec.error(path, f"'{dotted(path)}' must be a list of layers, received: {show(items)}",
                         "write one '- ClassName: {arguments}' per line, e.g. '- Conv2D: {filters: 32, kernel_size: 3}'")
    for i, item in enumerate(items):
        if isinstance(item, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item):
            continue
        if isinstance(item, dict) and len(item) == 1:
            (name, _args), = item.items()
            if isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                continue
        raise spec.error(path + (i,), f"item {i + 1} of '{dotted(path)}' must be a class name or "
                         f"{{ClassName: arguments}}, received: {show(item)}",
                         "e.g. '- Flatten' or '- Dense: {units: 10, activation: softmax}'; "
                         "check the indentation of the arguments")


def _set(values, path, value):
    for part in path[:-1]:
        values = values[part]
    values[path[-1]] = value
