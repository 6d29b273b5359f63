"""A run's figures as people read them, and the names Keras logs them under: one rule each for
every command, view, card and file.

Accuracies are percentages everywhere (fit's line, evaluate, runs, compare, the card), other
figures (losses, F1) four decimals; Keras logs a validation figure as its metric's name with
`val_` in front, and a monitor names one or the other.
"""
from __future__ import annotations

VALIDATION = "val_"


def pct(value) -> str:
    """A fraction as a percentage; '-' for none."""
    return "-" if value is None else f"{100.0 * value:.2f}%"


def fmt(value) -> str:
    """A figure that is not a fraction of images: 4 decimals for floats, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def figure(name: str, value) -> str:
    """A metric by its name: accuracies as percentages, the rest (losses) as numbers."""
    return pct(value) if metric_of(name).endswith(("accuracy", "acc")) else fmt(value)


def validation_name(metric: str) -> str:
    """The name Keras logs `metric`'s validation figure under: accuracy -> val_accuracy."""
    return VALIDATION + metric


def is_validation(name: str) -> bool:
    return name.startswith(VALIDATION)


def metric_of(name: str) -> str:
    """The metric a logged name or a monitor measures: val_accuracy -> accuracy, loss -> loss."""
    return name.removeprefix(VALIDATION)
