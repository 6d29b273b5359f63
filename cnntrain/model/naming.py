"""The names of a model's layers: conv2d, conv2d_1, ... counted within the model.

Keras numbers a new layer's name across every model the process built, so fit's model (built
after preflight's) saved conv2d_2 where `summary`, in a fresh process, said conv2d, and `filters`
and `activations` named layers that `summary` never showed.
"""
from __future__ import annotations

import re


def number_within(front, entries, layers) -> None:
    """Rename the `front` layers and the spec's `layers` (`entries` their spec entries) that the spec
    does not name itself, before any is added to a model."""
    named = [isinstance(args, dict) and "name" in args for _, _, args in entries]
    taken = {layer.name for layer, own in zip(layers, named) if own}
    counts: dict[str, int] = {}
    for layer in [*front, *(layer for layer, own in zip(layers, named) if not own)]:
        base = re.sub(r"_\d+$", "", layer.name)   # Keras' own name less its process-wide number
        name = base
        while name in taken:
            counts[base] = counts.get(base, 0) + 1
            name = f"{base}_{counts[base]}"
        layer.name = name
        taken.add(name)
