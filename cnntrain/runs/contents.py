"""A run folder read back as values: its spec, figures, history and pictures, for compare and card.

Reading only: nothing here writes. A file that is missing or unreadable reads as empty, since a run
killed early, or never evaluated, still has the rest worth showing; only a folder that is not a run
at all is an error.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs.folder import is_run
from cnntrain.spec.schema import dotted
from cnntrain.spec.yamlmarks import parse_yaml

PICTURES = ("curves.png", "confusion.png")


@dataclass
class RunContents:
    """What a run folder holds, read back for compare and card."""
    path: Path
    spec: dict                                     # spec.yaml as plain values
    metrics: dict = field(default_factory=dict)    # metrics.json
    env: dict = field(default_factory=dict)        # env.json
    evaluation: dict = field(default_factory=dict)  # eval.json (after cnntrain evaluate)
    history: list = field(default_factory=list)    # history.csv rows, numbers as floats (epoch as int)
    pictures: list = field(default_factory=list)   # which of PICTURES the folder holds


def optional_json(path: Path) -> dict:
    """A JSON file of a run, or None when it is not there."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []
    out = []
    for row in rows:
        parsed = {}
        for key, text in row.items():
            if key is None or text in (None, ""):
                continue
            try:
                parsed[key] = int(text) if key == "epoch" else float(text)
            except ValueError:
                continue
        if "epoch" in parsed:
            out.append(parsed)
    return out


def read_run(path) -> RunContents:
    """The contents of run folder `run`, its files checked as they are read."""
    path = Path(path)
    if not is_run(path):
        raise CnntrainError("not a run folder (it holds no spec.yaml)", file=str(path),
                            hint="give a folder listed by 'cnntrain runs'")
    text = (path / "spec.yaml").read_text(encoding="utf-8")
    spec = parse_yaml(text, str(path / "spec.yaml"))[0]
    if not isinstance(spec, dict):
        raise CnntrainError("spec.yaml is not a mapping of sections", file=str(path / "spec.yaml"))
    return RunContents(path=path, spec=spec, metrics=optional_json(path / "metrics.json"),
                       env=optional_json(path / "env.json"), evaluation=optional_json(path / "eval.json"),
                       history=read_history(path / "history.csv"),
                       pictures=[p for p in PICTURES if (path / p).is_file()])


def flatten(values, prefix=()) -> dict:
    """Nested spec values as {dotted path: leaf}, the paths `--set` takes: model.layers.0.Conv2D.filters."""
    if isinstance(values, dict) and values:
        items = values.items()
    elif isinstance(values, list) and values:
        items = enumerate(values)
    else:
        return {dotted(prefix): values} if prefix else {}
    out = {}
    for key, value in items:
        out.update(flatten(value, prefix + (key,)))
    return out
