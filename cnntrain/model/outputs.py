"""Whether a model's output is a probability distribution over its classes.

It is when the model ends in a softmax over the last axis. A linear last layer gives scores
(logits: a model trained with from_logits=True), and a softmax over another axis sums to 1
over the batch, not over the classes: both print "probabilities" such as -0.07 or 0.003 for
a sure answer. Read from the layers, not the numbers, so `check` can say it before training.
"""
from __future__ import annotations

from dataclasses import dataclass

# Layers that pass values through unchanged at inference: what comes before them is the output.
_PASS_THROUGH = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                           "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
                           "Identity"})


@dataclass(frozen=True)
class Output:
    kind: str          # "softmax" | "logits" | "wrong_axis" | "other"
    layer: object      # the last layer that changes values (None for a model without one)
    detail: str        # what it is, for messages: "activation linear", "a softmax over axis 0"

    @property
    def name(self) -> str:
        return getattr(self.layer, "name", "?")


def _axes(axis) -> tuple:
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def final_output(model) -> Output:
    """What the model's last layer gives: a softmax over the classes, scores (logits), or other."""
    layer = next((x for x in reversed(model.layers) if type(x).__name__ not in _PASS_THROUGH), None)
    if layer is None:
        return Output("logits", None, "no layers")
    if {"Functional", "Sequential"} & {c.__name__ for c in type(layer).__mro__}:   # a backbone with its top
        return final_output(layer)
    rank = len(model.output_shape)
    if type(layer).__name__ == "Softmax":
        axes = _axes(layer.axis)
        if all(a in (-1, rank - 1) for a in axes):
            return Output("softmax", layer, "a softmax over the classes")
        return Output("wrong_axis", layer, f"a softmax over axis {', '.join(map(str, axes))}")
    activation = getattr(layer, "activation", None)
    if activation is None:
        return Output("logits", layer, f"a {type(layer).__name__} layer without an activation")
    name = getattr(activation, "__name__", type(activation).__name__)
    if name == "softmax":
        return Output("softmax", layer, "a softmax over the classes")
    if name == "linear":
        return Output("logits", layer, "activation linear")
    return Output("other", layer, f"activation {name}")


def problem(model, classes: int) -> str | None:
    """Why the model's output is not a distribution over its `classes`, or None when it is."""
    out = final_output(model)
    if out.kind == "softmax":
        return None
    return (f"the model's last layer '{out.name}' has {out.detail}, so its outputs are not "
            f"probabilities over the {classes} classes")
