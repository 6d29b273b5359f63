"""The names a spec may give a layer, read from Keras' installed files without importing Keras.

Importing Keras imports TensorFlow (seconds): a misspelt layer name is reported before that, and
still against Keras itself, not a list of ours. keras.layers and keras.applications are files of
`from keras.src... import Name as Name` lines that Keras generates; each layer name's class is read
where it is defined. If the files are not where this Keras version keeps them, the names are
looked up by importing Keras (model.build does, for every name, in any case).
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import re
from pathlib import Path

from cnntrain.errors import SpecError

_BASE = "Layer"   # keras.layers.Layer: the class every layer derives from, not one itself
_APPLICATIONS = " or keras.applications model names"


def unknown_name(spec, path, name: str, names: list[str], what: str, module: str,
                 applications: bool = False) -> SpecError:
    """The error for `name`, which is none of `names` (`module`'s, and keras.applications' model
    names when `applications`): the closest names offered, and where the names come from."""
    same = [n for n in names if n.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    hint += f"{what.capitalize()} names are {module} class names{_APPLICATIONS * applications} (case matters)."
    return spec.error(path, f"unknown {what} '{name}'", hint, key=True)


def layer_names() -> list[str] | None:
    """keras.layers' layer classes, sorted, or None."""
    exported = _exported("layers")
    if exported is None:
        return None
    names = []
    for name, (module, defined) in sorted(exported.items()):
        if name[:1].isupper() and name != _BASE:
            kind = _defined_as(module, defined)
            if kind is None:
                return None
            if kind == "subclass":
                names.append(name)
    return names


def application_names() -> list[str] | None:
    """keras.applications' models (MobileNetV2, ResNet50, ...), sorted, or None."""
    exported = _exported("applications")
    return None if exported is None else sorted(n for n in exported if n[:1].isupper())


@functools.lru_cache(maxsize=None)
def _root() -> Path | None:
    try:
        found = importlib.util.find_spec("keras")
    except (ImportError, ValueError):
        return None
    locations = list(found.submodule_search_locations or []) if found else []
    return Path(locations[0]) if locations else None


@functools.lru_cache(maxsize=None)
def _exported(package: str) -> dict[str, tuple[str, str]] | None:
    """{public name: (the module it comes from, its name there)} of keras.`package`, or None
    (AvgPool2D is AveragePooling2D of keras.src.layers.pooling.average_pooling2d)."""
    root = _root()
    if root is None:
        return None
    # Keras 3.0 to 3.5 keep the public API under keras/api/, later versions at the top.
    for init in (root / "api" / package / "__init__.py", root / package / "__init__.py"):
        tree = _parsed(init)
        if tree is not None:
            return {alias.asname or alias.name: (node.module, alias.name) for node in tree.body
                    if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    return None


def _defined_as(module: str, name: str) -> str | None:
    """"subclass" if `module` defines `name` as a class derived from another, "other" if as
    something else (a function, a class of its own), None if the file or the name is not found."""
    root = _root()
    parts = module.split(".")
    if parts[0] != "keras" or root is None:
        return None
    base = root.joinpath(*parts[1:])
    # A pattern rather than ast: parsing the hundred files of the layers took longer than the
    # rest of `check` does without TensorFlow.
    found = re.search(rf"^(class|def)\s+{re.escape(name)}\b\s*(?:\(([^)]*)\))?", _text(base.with_suffix(".py"))
                      or _text(base / "__init__.py"), re.MULTILINE)
    if found is None:
        return None
    return "subclass" if found.group(1) == "class" and (found.group(2) or "").strip() else "other"


@functools.lru_cache(maxsize=None)
def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ""


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(_text(path)) if _text(path) else None
    except (SyntaxError, ValueError):
        return None
