"""How the classes of a data set are balanced: per-class counts, the warnings `data verify` gives,
and fit.class_weight's weights."""
from __future__ import annotations

import difflib
import math

import numpy as np

from cnntrain.spec.schema import dotted

# Largest class over smallest from which a data set is "heavily" imbalanced: an accuracy can then
# be reached by predicting the large classes alone.
HEAVY = 10.0
_PATH = ("fit", "class_weight")


def counts(y, class_names) -> dict[str, int]:
    found = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(class_names))
    return {c: int(n) for c, n in zip(class_names, found)}


def warnings(per_class: dict[str, int], validation: str, fraction: float) -> list[str]:
    """What a user should know before training on training images counted `per_class`."""
    found = []
    small, large = min(per_class, key=per_class.get), max(per_class, key=per_class.get)
    if per_class[small] == 0 or per_class[large] / per_class[small] >= HEAVY:
        ratio = "has none" if per_class[small] == 0 else \
            f"{per_class[large] / per_class[small]:.1f} times fewer than '{large}' ({per_class[large]:,})"
        found.append(f"heavy class imbalance: '{small}' has {per_class[small]:,} training images, {ratio}; "
                     "set fit.class_weight: balanced (or weights per class), or add images")
    if validation == "split":
        need = math.ceil(1 / fraction - 1e-9)
        few = [c for c, n in per_class.items() if n * fraction < 1]
        if few:
            shown = ", ".join(f"'{c}' ({per_class[c]:,})" for c in few[:5]) + (" ..." if len(few) > 5 else "")
            found.append(f"{len(few):,} class{'es' if len(few) > 1 else ''} with fewer images than "
                         f"data.validation_split {fraction:g} needs for one validation image ({need:,}): {shown}; "
                         "their validation figures rest on no or one image")
    return found


def class_weights(spec, class_names: list[str], y) -> np.ndarray | None:
    """fit.class_weight as one weight per class (None: unweighted). balanced is n / (k * count), the
    weight scikit-learn's compute_class_weight and Keras' class_weight examples use; a mapping names
    classes, the others weighing 1. An unknown class name is an error at its line."""
    value = spec["fit"]["class_weight"]
    if value is None:
        return None
    if value == "balanced":
        per = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(class_names)).astype(np.float64)
        return np.where(per > 0, len(y) / (len(class_names) * np.maximum(per, 1)), 0.0)
    weights = np.ones(len(class_names))
    for name, weight in value.items():
        if str(name) not in class_names:
            close = difflib.get_close_matches(str(name), class_names, n=1)
            raise spec.error(_PATH + (name,), f"'{dotted(_PATH)}' names class '{name}', which the data "
                             f"does not have; its classes: {', '.join(class_names)}",
                             f"did you mean '{close[0]}'?" if close
                             else "keys are the class names: folder names, or the labels of data.labels", key=True)
        weights[class_names.index(str(name))] = float(weight)
    return weights


def shown(weights: np.ndarray | None, class_names: list[str]) -> str | None:
    """The fit header's line: 'class weights: cat 0.5, dog 2'."""
    if weights is None:
        return None
    parts = [f"{c} {w:.3g}" for c, w in zip(class_names, weights)]
    return "class weights: " + ", ".join(parts[:20]) + (f" ... ({len(parts) - 20} more)" if len(parts) > 20 else "")
