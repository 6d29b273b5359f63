"""The search file of `cnntrain sweep`: which spec values to search, over what, with which sampler.

    sampler: tpe                  # tpe (default) | random | grid (every combination, in this file's order)
    pruner: median                # median (default) | asha | none; or {median: {n_startup_trials: 2}}
    seed: 0                       # the sampler's seed (default: the spec's seed)
    params:                       # dotted spec paths, exactly as --set takes them
      compile.optimizer.Adam.learning_rate: {low: 1.0e-4, high: 0.1, log: true}
      model.layers.0.Conv2D.filters: {low: 4, high: 16, step: 4}    # int: low and high are integers
      fit.batch_size: {choices: [32, 64, 128]}

Read with the spec's own YAML rules and reported the spec's way: FILE:LINE:COL, what was received,
what was expected, did-you-mean on keys and on spec paths. Every bound and choice is checked by
loading the spec with it as --set, so a value the spec would refuse is refused here, before any trial.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnntrain.errors import SpecError
from cnntrain.spec import load_spec
from cnntrain.spec.yamlmarks import MAX_BYTES, parse_yaml, shorten, show

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = {"median": {"n_startup_trials": 2, "n_warmup_steps": 1},
           "asha": {"min_resource": 1, "reduction_factor": 3},
           "none": {}}
TOP_KEYS = ("sampler", "pruner", "seed", "params")
RANGE_KEYS = ("low", "high", "log", "step", "choices")
MAX_GRID = 10_000


@dataclass
class Param:
    path: str                 # a dotted spec path, as --set takes it
    kind: str                 # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list = field(default_factory=list)   # categorical: the YAML text of each choice

    def grid(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        return list(range(self.low, self.high + 1, self.step or 1))


@dataclass
class Search:
    file: str
    text: str
    params: list
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_args: dict = field(default_factory=dict)
    seed: int | None = None

    def grid(self) -> list[dict]:
        """Every combination of the params' values, the first param varying slowest."""
        return [dict(zip((p.path for p in self.params), combo))
                for combo in itertools.product(*(p.grid() for p in self.params))]


def set_text(path: str, value) -> str:
    """A value as the --set text that applies it (YAML, so that it round-trips)."""
    if isinstance(value, str):
        return f"{path}={value}"   # categorical choices are kept as their YAML text
    if isinstance(value, float):
        value = float(f"{value:.4g}")   # 4 significant digits: a spec a person reads, and no loss that matters
    return f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def _choice_text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


class _Reader:
    def __init__(self, file, marks, key_marks):
        self.file, self.marks, self.key_marks = file, marks, key_marks

    def error(self, path, message, hint=None, *, key=False) -> SpecError:
        marks = self.key_marks if key else self.marks
        for end in range(len(path), -1, -1):
            if path[:end] in marks:
                line, column = marks[path[:end]]
                return SpecError(message, file=self.file, line=line, column=column, hint=hint)
        return SpecError(message, file=self.file, hint=hint)

    def unknown(self, path, key, allowed, where):
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
        return self.error(path + (key,), f"unknown key '{shorten(key, 80)}' {where}", hint, key=True)


def load_search(path, spec_path, overrides=()) -> Search:
    """Read and check a search file against the spec (`spec_path` with its --set `overrides`)."""
    path = Path(path)
    try:
        text = path.read_bytes()[:MAX_BYTES + 1].decode("utf-8")
    except FileNotFoundError:
        raise SpecError("no such search file", file=str(path), hint="give a YAML file with 'params:'; see "
                        "docs/experiments.md#sweeps") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the search file: {getattr(exc, 'strerror', None) or exc}", file=str(path)) from None
    values, marks, key_marks = parse_yaml(text, str(path))
    r = _Reader(str(path), marks, key_marks)
    if not isinstance(values, dict):
        raise r.error((), f"a search file must be a mapping with 'params:', received: {show(values)}",
                      "write e.g. params: {compile.optimizer.Adam.learning_rate: {low: 1.0e-4, high: 0.1, log: true}}")
    for key in values:
        if key not in TOP_KEYS:
            raise r.unknown((), key, list(TOP_KEYS), "at the top level")
    search = Search(str(path), text, [])
    search.sampler = _choice(r, values, "sampler", SAMPLERS, "tpe")
    pruner = values.get("pruner", "median")
    pruner_args = {}
    if isinstance(pruner, dict) and len(pruner) == 1:
        (pruner, pruner_args), = pruner.items()
        pruner_args = pruner_args or {}
        if not isinstance(pruner_args, dict):
            raise r.error(("pruner", pruner), f"the pruner's arguments must be a mapping, received: {show(pruner_args)}",
                          "e.g. pruner: {median: {n_startup_trials: 2, n_warmup_steps: 1}}")
    search.pruner = _choice(r, {"pruner": pruner}, "pruner", tuple(PRUNERS), "median")
    for key in pruner_args:
        if key not in PRUNERS[search.pruner]:
            raise r.unknown(("pruner", search.pruner), key, list(PRUNERS[search.pruner]), f"in the {search.pruner} pruner")
        if not isinstance(pruner_args[key], int) or isinstance(pruner_args[key], bool) or pruner_args[key] < 0:
            raise r.error(("pruner", search.pruner, key), f"'{key}' must be an integer >= 0, received: "
                          f"{show(pruner_args[key])}")
    search.pruner_args = {**PRUNERS[search.pruner], **pruner_args}
    seed = values.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 32):
        raise r.error(("seed",), f"'seed' must be an integer from 0 to 2**32 - 1, received: {show(seed)}")
    search.seed = seed
    params = values.get("params")
    if not isinstance(params, dict) or not params:
        raise r.error(("params",) if "params" in values else (), "the search file needs 'params:', a mapping of "
                      f"spec paths to ranges, received: {show(params)}",
                      "e.g. params: {fit.batch_size: {choices: [32, 64]}}")
    spec = load_spec(spec_path, overrides)
    for name, bounds in params.items():
        search.params.append(_param(r, spec, str(name), bounds))
    if search.sampler == "grid":
        for p in search.params:
            if p.kind == "float":
                raise r.error(("params", p.path), f"the grid sampler needs a list of values, received a float range "
                              f"for '{p.path}'", f"give choices: [...] for '{p.path}', or use sampler: tpe")
        size = 1
        for p in search.params:
            size *= len(p.grid())
        if size > MAX_GRID:
            raise r.error(("sampler",), f"the grid has {size:,} combinations, more than {MAX_GRID:,}",
                          "give fewer choices, or a larger step")
    for p in search.params:
        _check_values(r, spec_path, overrides, p)
    return search


def _choice(r, values, key, allowed, default):
    value = values.get(key, default)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
        raise r.error((key,), f"unknown {key} {show(value)}; expected one of: {', '.join(allowed)}",
                      f"did you mean '{close[0]}'?" if close else None)
    return value


def _walk(r, spec, name: str):
    """Follow the dotted path through the resolved spec; a part that is not there is an error."""
    node, done = spec.values, []
    for part in name.split("."):
        where = f"'{'.'.join(done)}'" if done else "the spec"
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise r.error(("params", name), f"'{name}': {where} is a list of {len(node)} items; '{part}' is "
                              "not an index in it", f"use an index 0..{len(node) - 1}", key=True)
            node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                keys = [str(k) for k in node]
                close = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
                hint = f"did you mean '{'.'.join(done + [close[0]])}'?" if close else \
                    f"{where} has: {', '.join(keys) or 'nothing'}"
                raise r.error(("params", name), f"'{name}' is not in the spec: {where} has no '{part}'",
                              hint + " (a searched value must be in the spec or its defaults)", key=True)
            node = node[part]
        else:
            raise r.error(("params", name), f"'{name}': {where} is {show(node)}, not a mapping or list", key=True)
        done.append(part)
    return node


def _param(r, spec, name, bounds) -> Param:
    _walk(r, spec, name)
    at = ("params", name)
    if not isinstance(bounds, dict):
        raise r.error(at, f"'{name}' needs a range or choices, received: {show(bounds)}",
                      "write {low: A, high: B} (add log: true, or step: N) or {choices: [A, B, ...]}")
    for key in bounds:
        if key not in RANGE_KEYS:
            raise r.unknown(at, key, list(RANGE_KEYS), f"in '{name}'")
    if "choices" in bounds:
        extra = [k for k in bounds if k != "choices"]
        if extra:
            raise r.error(at + (extra[0],), f"'{name}' has choices and '{extra[0]}'; give one or the other",
                          key=True)
        choices = bounds["choices"]
        if not isinstance(choices, list) or not choices:
            raise r.error(at + ("choices",), f"'choices' must be a non-empty list, received: {show(choices)}")
        texts = [_choice_text(c) for c in choices]
        for i, t in enumerate(texts):
            if t in texts[:i]:
                raise r.error(at + ("choices", i), f"the choice {shorten(t, 80)} is listed twice")
        return Param(name, "categorical", choices=texts)
    missing = [k for k in ("low", "high") if k not in bounds]
    if missing:
        raise r.error(at, f"'{name}' has no '{missing[0]}'", "a range is {low: A, high: B}; a list is {choices: [...]}")
    low, high, log, step = bounds["low"], bounds["high"], bounds.get("log", False), bounds.get("step")
    for key, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise r.error(at + (key,), f"'{key}' must be a number, received: {show(value)}")
    if not isinstance(log, bool):
        raise r.error(at + ("log",), f"'log' must be true or false, received: {show(log)}")
    if not low < high:
        raise r.error(at + ("high",), f"'high' must be above 'low', received: low {low}, high {high}")
    if log and low <= 0:
        raise r.error(at + ("low",), f"a log range must start above 0, received: low {low}")
    if log and step is not None:
        raise r.error(at + ("step",), "a range takes log or step, not both", key=True)
    if step is not None and step <= 0:
        raise r.error(at + ("step",), f"'step' must be above 0, received: {step}")
    kind = "int" if all(isinstance(v, int) for v in (low, high) + ((step,) if step is not None else ())) else "float"
    if kind == "float":
        low, high = float(low), float(high)
    return Param(name, kind, low, high, log, step)


def _check_values(r, spec_path, overrides, p: Param):
    """Each end of a range and each choice, loaded into the spec as --set: the spec's own checks."""
    candidates = [("choices", i, c) for i, c in enumerate(p.choices)] if p.kind == "categorical" else \
        [("low", None, p.low), ("high", None, p.high)]
    for key, index, value in candidates:
        try:
            load_spec(spec_path, list(overrides) + [set_text(p.path, value)])
        except SpecError as exc:
            at = ("params", p.path, key) + ((index,) if index is not None else ())
            message = exc.message.split(": ", 1)[1] if exc.message.startswith("--set ") else exc.message
            raise r.error(at, f"'{p.path}' = {shorten(value, 80)} is not a value the spec takes: {message}",
                          exc.hint) from None
