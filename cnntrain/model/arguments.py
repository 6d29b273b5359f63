"""The types of layer, callback, schedule, optimizer, loss and metric arguments, checked before anything is trained.

Keras keeps most of these arguments as given and fails on a wrong type only when training uses
one: `patience: "3"` is a TypeError at the end of some epoch, a string learning rate one at the
first step, both after the run folder was made. A constructor's default says the type; where it
cannot (a default of None, or none at all), the table below does.
"""
from __future__ import annotations

import inspect
import re

from cnntrain.spec import Spec
from cnntrain.spec.yamlmarks import show

NUMBER, BOOL, NAME, NUMBERS = "a number", "true or false", "a name", "a list of numbers"
RATE = "a number or a schedule {ClassName: {arguments}}"
_RATE_HINT = ("e.g. learning_rate: 0.001, or learning_rate: {CosineDecay: {initial_learning_rate: 0.001, "
              "decay_steps: \"10 epochs\"}}")
_TYPES = {
    ("EarlyStopping", "baseline"): NUMBER,
    ("ModelCheckpoint", "initial_value_threshold"): NUMBER,
    ("TensorBoard", "profile_batch"): None,       # a step, a pair of steps, or "10,20"
    ("TensorBoard", "embeddings_metadata"): None,
    ("CosineDecay", "warmup_target"): NUMBER,
    ("CategoricalFocalCrossentropy", "alpha"): None,   # one weight, or one per class
    ("*", "axis"): None,                               # an axis, or several
    ("*", "learning_rate"): RATE,                      # a schedule comes here built
    # Every optimizer's (keras.optimizers.Optimizer's) numbers that default to None.
    **{("*", key): NUMBER for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                                      "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps")},
    ("PiecewiseConstantDecay", "boundaries"): NUMBERS,
    ("PiecewiseConstantDecay", "values"): NUMBERS,
}
_NUMERIC = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def keras_value(value):
    """Arguments in the spec's syntax to what Keras' own `get()` functions accept.

    `{L2: {l2: 0.0005}}` becomes `{"class_name": "L2", "config": {"l2": 0.0005}}`, the
    serialized form that keras.regularizers/initializers/constraints deserialize.
    """
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if isinstance(key, str) and key[:1].isupper() and (inner is None or isinstance(inner, dict)):
                return {"class_name": key, "config": keras_value(inner or {})}
        return {k: keras_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keras_value(v) for v in value]
    return value


def _expected(cls, name: str, key: str, schedule: bool):
    info = inspect.signature(cls.__init__).parameters.get(key)
    default = None if info is None or info.default is info.empty else info.default
    for which in ((name, key), ("*", key)):
        if which in _TYPES:
            return _TYPES[which], default
    if info is None or info.kind in (info.VAR_KEYWORD, info.VAR_POSITIONAL):
        return None, default
    if info.default is info.empty:
        # A schedule's required arguments are all numbers (steps, rates) but PiecewiseConstantDecay's.
        return (NUMBER if schedule else None), default
    if isinstance(default, bool):
        return BOOL, default
    if isinstance(default, (int, float)):
        return NUMBER, default
    if isinstance(default, str):
        return NAME, default
    return None, default


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(value, kind) -> bool:
    if kind in (NUMBER, RATE):
        return _number(value)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == NAME:   # some take a name or a number (ModelCheckpoint's save_freq: "epoch" or steps)
        return isinstance(value, str) or _number(value)
    if kind == NUMBERS:
        return isinstance(value, list) and bool(value) and all(_number(v) for v in value)
    return True


def _layer_kind(kind, value, default):
    """What a layer argument must be, where a wrong type is sure: layers take a number or a tuple where
    their default is a number (Conv1D's strides: 1 or [2]), and Keras' own checks then compare a
    quoted number with a number ('<=' not supported) or echo it unquoted (Received: factor=0.03)."""
    if not isinstance(value, str):
        return None
    if _NUMERIC.match(value) and kind in (None, NUMBER) and not isinstance(default, str):
        return NUMBER   # a required argument (Dropout's rate) has no default to say so, and no name is a number
    return kind if kind == BOOL else None


def check(spec: Spec, path, cls, name: str, kwargs: dict, *, module: str, schedule: bool = False):
    """Raise a SpecError at the first argument of `name` whose value has the wrong type."""
    for key, value in kwargs.items():
        if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
            continue   # built already (a schedule as an optimizer's learning_rate), checked when it was
        kind, default = _expected(cls, name, key, schedule)
        if module == "layers":
            kind = _layer_kind(kind, value, default)
        if kind is None or _fits(value, kind) or (value is None and default is None and kind != NUMBERS
                                                  and ((name, key) in _TYPES or ("*", key) in _TYPES)):
            continue
        if kind == RATE and not (isinstance(value, str) and _NUMERIC.match(value)):
            hint = _RATE_HINT
        elif isinstance(value, str) and _NUMERIC.match(value) and kind in (NUMBER, RATE):
            hint = f"write the number without quotes: '{key}: {value.strip()}'"
        elif isinstance(value, str) and kind == BOOL and value.lower() in ("true", "false", "yes", "no"):
            hint = f"write it without quotes: '{key}: {value.lower() in ('true', 'yes') and 'true' or 'false'}'"
        else:
            hint = f"see the arguments of keras.{module}.{name}"
        if schedule and kind == NUMBER and isinstance(value, str) and "steps" in key:
            hint += "; a number of steps may also be written \"N epochs\""
        raise spec.error(path + (name, key), f"{name}: '{key}' must be {kind}, received: {show(value)}", hint)
