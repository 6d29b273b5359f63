"""A run folder read back as values: its spec, figures, history and pictures, for compare and card.

Reading only: nothing here writes. A file that is missing reads as empty, since a run killed early,
or never evaluated, still has the rest worth showing; a file that is there is checked as
runs/schema.py says (a damaged one is an error naming the file and the field), and a folder that
is not a run at all is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cnntrain.errors import CnntrainError
from cnntrain.runs import schema
from cnntrain.runs.folder import is_run
from cnntrain.runs.history import read_history
from cnntrain.spec.load import load_spec
from cnntrain.spec.schema import dotted

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
    """A JSON file, or {} when it is missing, unreadable or not an object. Left for the sweep's
    leaderboard and trials (experiments/sweep.py), whose reading another change moves to schema.py."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_run(path) -> RunContents:
    """The contents of run folder `run`, its files checked as they are read."""
    path = Path(path)
    if not is_run(path):
        raise CnntrainError("not a run folder (it holds no spec.yaml)", file=str(path),
                            hint="give a folder listed by 'cnntrain runs'")
    history = path / "history.csv"
    return RunContents(path=path, spec=load_spec(path / "spec.yaml").values,
                       metrics=schema.read_optional(path / "metrics.json", schema.METRICS) or {},
                       env=schema.read_optional(path / "env.json", schema.ENV) or {},
                       evaluation=schema.read_optional(path / "eval.json", schema.EVALUATION) or {},
                       history=read_history(history) if history.exists() else [],
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
