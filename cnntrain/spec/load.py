"""Reading a spec: the file (bounded), its YAML with line marks, --set overrides, the defaults.

Imports no TensorFlow: a broken spec is reported before the 5 s TensorFlow import.
Layer names and their arguments are checked later by the model builder against Keras itself.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path


from cnntrain.errors import SpecError, YamlSyntaxError, not_regular
from cnntrain.spec.schema import DEFAULTS, REQUIRED, dotted
from cnntrain.spec.validate import validate
from cnntrain.spec.yamlmarks import MAX_BYTES, dump_yaml, parse_yaml, shorten, show


@dataclass
class Spec:
    """A validated spec: `values` holds every key (defaults filled in)."""

    values: dict
    file: str = "<spec>"
    marks: dict = field(default_factory=dict)      # path -> (line, column) of the value
    key_marks: dict = field(default_factory=dict)  # path -> (line, column) of the key
    overrides: dict = field(default_factory=dict)  # path -> the --set text that gave it
    trusted: bool = False   # --trust-spec: the user wrote it; it may write anywhere and reach the network

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
        return dump_yaml(self.values)


def load_spec(path, overrides=()) -> Spec:
    """Read, override and validate a spec file."""
    path = Path(path)
    # Opening a FIFO blocks until something writes to it (forever), and a device never ends:
    # only a regular file is opened.
    kind = not_regular(path)
    if kind == "a folder":
        raise SpecError("is a folder, not a spec file", file=str(path))
    if kind:
        raise SpecError(f"is {kind}, not a regular file; a spec is read from a YAML file only",
                        file=str(path), hint="write the spec to a file and give its path") from None
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)   # bounded: a huge file is not read whole
    except FileNotFoundError:
        raise SpecError("no such spec file", file=str(path),
                        hint="give the path of a .yaml spec, e.g. configs/mnist.yaml") from None
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
        syntax = isinstance(exc, YamlSyntaxError)
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
