"""Spec entries to Keras objects, looked up in Keras itself.

A layer named `Conv2D` in a spec is `keras.layers.Conv2D`, its arguments are that
constructor's arguments; optimizers, losses, metrics, schedules and callbacks are
found the same way in their Keras modules. No alias tables: Keras is the catalogue.
"""
from __future__ import annotations

import difflib
import inspect
import re

from cnntrain.backend import keras
from cnntrain.data.catalog import DATASET_CLASSES, DATASET_SHAPES
from cnntrain.errors import first_lines_of
from cnntrain.model import arguments, backbones, dirac, naming, outputs, policy, whitening  # noqa: F401 (dirac: registers its initializer)
from cnntrain.model.normalization import normalization_layer
from cnntrain.spec import Spec, layer_entries, mix_entries
from cnntrain.spec.keras_names import unknown_name
from cnntrain.spec.schema import MIX_DEFAULTS
from cnntrain.runs.numbers import metric_of

# A schedule argument in epochs: "8 epochs" (fixed), "all" (the whole run, so it follows
# --epochs) or "all - 1 epochs" (the whole run less a warmup, say).
_EPOCHS = re.compile(r"^\s*(?:(?P<all>all)(?:\s*-\s*(?P<less>\d+(?:\.\d+)?)\s*epochs?)?"
                     r"|(?P<n>\d+(?:\.\d+)?)\s*epochs?)\s*$")


def _public_classes(module, base):
    names = []
    for name in dir(module):
        obj = getattr(module, name, None)
        if name[:1].isupper() and isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            names.append(name)
    return names


def lookup_class(spec: Spec, path, name: str, module, base, what: str):
    """`module.name`, which must be a subclass of `base`, or a SpecError with suggestions."""
    obj = getattr(module, name, None) if not name.startswith("_") else None
    if isinstance(obj, type) and issubclass(obj, base) and obj is not base:  # the base class is abstract
        return obj
    extra = backbones.names() if module is keras.layers and tuple(path[:2]) == ("model", "layers") else []
    module_name = module.__name__.replace("keras.api.", "keras.").replace("keras._tf_keras.", "")
    raise unknown_name(spec, path, name, _public_classes(module, base) + extra, what, module_name,
                       applications=bool(extra))


def _allowed_kwargs(cls, base):
    allowed = set()
    for klass in (cls, base):
        params = inspect.signature(klass.__init__).parameters
        allowed |= {p for p, info in params.items() if info.kind not in (info.VAR_KEYWORD, info.VAR_POSITIONAL)}
    return allowed - {"self"}


def construct(spec: Spec, path, name, args, module, base, what: str):
    """Build one object from its spec entry: `Name`, `Name: scalar`, `Name: [args]` or `Name: {kwargs}`."""
    cls = lookup_class(spec, path + (name,), name, module, base, what)
    if isinstance(args, dict):
        allowed = _allowed_kwargs(cls, base) | {"input_shape", "input_dim", "batch_size"}
        for key in args:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                hint += f"See the arguments of keras.{module.__name__.split('.')[-1]}.{name}."
                raise spec.error(path + (name, key), f"{name} has no argument '{key}'", hint, key=True)
        if base is keras.layers.Layer:
            arguments.check(spec, path, cls, name, args, module="layers")
    try:
        if args is None:
            return cls()
        if isinstance(args, dict):
            return cls(**{k: arguments.keras_value(v) for k, v in args.items()})
        if isinstance(args, list):
            return cls(*arguments.keras_value(args))
        return cls(args)
    except Exception as exc:  # Keras raises ValueError, TypeError and others for bad arguments
        raise spec.error(path, f"{name}: {first_lines_of(exc)}", _arg_hint(cls, name, exc)) from None


def _arg_hint(cls, name, exc):
    if "required positional argument" in str(exc):
        params = inspect.signature(cls.__init__).parameters
        required = [p for p, info in params.items()
                    if p != "self" and info.default is info.empty and info.kind == info.POSITIONAL_OR_KEYWORD]
        return f"{name} needs: {', '.join(required)}, e.g. '- {name}: {{{required[0]}: ...}}'"
    return f"see the documentation of keras.layers.{name}" if issubclass(cls, keras.layers.Layer) else None


# ---------------------------------------------------------------- model


def input_shape(spec: Spec, data_shape=None) -> tuple:
    """The model's input shape: model.input_shape, else the data's, else the built-in dataset's."""
    shape = spec["model"]["input_shape"]
    if shape is not None:
        return tuple(shape)
    if data_shape is not None:
        return tuple(data_shape)
    dataset = spec["data"]["dataset"]
    if dataset in DATASET_SHAPES:
        return DATASET_SHAPES[dataset]
    size = spec["data"]["image_size"]
    if size is not None and spec["data"]["color_mode"] is not None:
        return (*size, 1 if spec["data"]["color_mode"] == "grayscale" else 3)
    raise spec.error(("model",), "model.input_shape is not set and cannot be known before reading the images",
                     "set model.input_shape: [height, width, channels], e.g. [64, 64, 3]")


def build_layers(spec: Spec, path) -> list:
    """The keras.layers objects of the layer list at `path` (model.layers or augment), once the policy
    allows them all; in augment, a mix (schema.MIXES) is a (layer, probability) pair, its cnntrain keys
    kept from its constructor."""
    items = policy.allowed_layers(spec, path)
    mixes = {i: probability for i, _, probability in mix_entries(items)} if path == ("augment",) else {}
    built = []
    for i, name, args in layer_entries(items):
        if i in mixes and isinstance(args, dict):
            args = {k: v for k, v in args.items() if k not in MIX_DEFAULTS}
        make = backbones.entry if path == ("model", "layers") and backbones.is_backbone(name) else construct
        layer = make(spec, path + (i,), name, args, keras.layers, keras.layers.Layer, "layer")
        built.append((layer, mixes[i]) if i in mixes else layer)
    return built


def build_model(spec: Spec, *, shape=None, front=(), pretrained=True) -> "keras.Sequential":
    """The spec's Sequential model, built; `front` layers (normalization) go first; backbones.front's `load`."""
    shape = input_shape(spec, shape)
    model = keras.Sequential(name=re.sub(r"[^A-Za-z0-9_]", "_", spec["name"]))
    model.add(keras.Input(shape=shape, name="image"))
    entries, layers = list(layer_entries(spec["model"]["layers"])), build_layers(spec, ("model", "layers"))
    naming.number_within(front, entries, layers)
    for layer in front:
        model.add(layer)
    for (i, name, _), layer in zip(entries, layers):
        before = model.output_shape if model.layers else (None, *shape)
        if isinstance(layer, backbones.Entry):   # the backbone and the layers that feed it what it expects
            backbones.add(spec, model, layer, before[1:], first=len(model.layers) == len(front), load=pretrained)
            continue
        try:
            model.add(layer)
        except Exception as exc:
            raise spec.error(("model", "layers", i), f"{name} cannot take its input of shape {_shape(before)}: "
                             f"{first_lines_of(exc)}",
                             "the output shrank too far or has the wrong rank: check strides, kernel sizes, "
                             "padding and pooling above (cnntrain summary shows every shape)") from None
        if wrong := whitening.problem(layer):
            raise spec.error(("model", "layers", i), *wrong)
    return model


def _shape(shape) -> str:
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


def check_output(spec: Spec, model, num_classes: int | None):
    """The last layer must give one score per class."""
    num_classes = DATASET_CLASSES.get(spec["data"]["dataset"]) if num_classes is None else num_classes
    backbones.check_top(spec, model, num_classes)
    out = model.output_shape
    last = len(spec["model"]["layers"]) - 1
    if len(out) != 2:
        raise spec.error(("model", "layers", last), f"the model's output has shape {_shape(out)}, expected (batch, classes)",
                         "end the model with Flatten (or GlobalAveragePooling2D) and Dense(units: number of classes)")
    if num_classes is not None and out[-1] != num_classes:
        raise spec.error(("model", "layers", last), f"the model's output has {out[-1]} units but the data has "
                         f"{num_classes} classes", f"set units: {num_classes} on the last Dense layer")


_OUTPUT_HINTS = {
    "logits": "end it with activation: softmax; if it is trained on logits (a loss with from_logits: true), "
              "predict and evaluate apply the softmax and say so",
    "wrong_axis": "a softmax over the classes is Softmax: {axis: -1}",
    "other": "end it with activation: softmax; predict and evaluate refuse this output",
}


def output_warning(spec: Spec, model):
    """A SpecError at the last layer when the model does not end in a softmax over its classes
    (`check` prints it as a warning; training such a model is allowed), else None."""
    why = outputs.problem(model, model.output_shape[-1])
    if why is None:
        return None
    hint = _OUTPUT_HINTS[outputs.final_output(model).kind]
    return spec.error(("model", "layers", len(spec["model"]["layers"]) - 1), why, hint)


# ---------------------------------------------------------------- compile


def ref_name(value):
    """A spec reference `name` or `{Name: {args}}` as (name, args)."""
    if isinstance(value, str):
        return value, None
    (name, args), = value.items()
    return name, args or {}


def _by_name(spec, path, value, module, base, getter, what):
    name, args = ref_name(value)
    if args is None:
        try:
            return getter(name)
        except Exception:  # Keras' get() raises ValueError, TypeError, even KeyError ('lossscaleoptimizer')
            # get() takes snake_case function names and class names, any case.
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
            snake = names + [re.sub(r"(?<=[a-z])(?=[A-Z])", "_", n).lower() for n in names if n[:1].isupper()]
            lower = [n.lower() for n in names if n[:1].isupper()]  # 'adamw', 'rmsprop'
            close = (difflib.get_close_matches(name, sorted(set(snake)), n=1, cutoff=0.6)
                     or difflib.get_close_matches(name, lower, n=1, cutoff=0.6))
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise spec.error(path, f"unknown {what} '{name}'",
                             hint + f"Use a name known to keras.{module.__name__.split('.')[-1]}.get() "
                             f"or {{ClassName: {{arguments}}}}") from None
    return _construct_ref(spec, path, name, args, module, base, what)


def _construct_ref(spec, path, name, args, module, base, what):
    # Errors point at the mapping under `path`, whose only key is `name`.
    cls = lookup_class(spec, path + (name,), name, module, base, what)
    arguments.check(spec, path, cls, name, args, module=module.__name__.removeprefix("keras."),
                    schedule=base is keras.optimizers.schedules.LearningRateSchedule)
    try:
        return cls(**{k: arguments.keras_value(v) for k, v in args.items()})
    except Exception as exc:
        raise spec.error(path + (name,), f"{name}: {first_lines_of(exc)}",
                         f"see the arguments of keras.{module.__name__.split('.')[-1]}.{name}") from None


def build_optimizer(spec: Spec, steps_per_epoch: int | None = None):
    """compile.optimizer as a Keras optimizer; a schedule's 'N epochs' counted in `steps_per_epoch`."""
    path = ("compile", "optimizer")
    value = spec["compile"]["optimizer"]
    name, args = ref_name(value)
    if args is not None and isinstance(args.get("learning_rate"), dict):
        args = dict(args)
        args["learning_rate"] = build_schedule(spec, path + (name, "learning_rate"), args["learning_rate"],
                                               steps_per_epoch)
        value = {name: args}
    return _by_name(spec, path, value, keras.optimizers, keras.optimizers.Optimizer, keras.optimizers.get, "optimizer")


def build_schedule(spec, path, value, steps_per_epoch):
    """A keras.optimizers.schedules class; an argument in epochs ('N epochs', 'all', 'all - N epochs')
    becomes steps."""
    name, args = ref_name(value)
    resolved = {key: _steps(spec, path + (name, key), arg, steps_per_epoch) for key, arg in (args or {}).items()}
    base = keras.optimizers.schedules.LearningRateSchedule
    schedule = _construct_ref(spec, path, name, resolved, keras.optimizers.schedules, base, "learning-rate schedule")
    try:   # the first steps, as training will ask for them: a value Keras kept as given fails here, not there
        [float(schedule(step)) for step in (0, 1)]
    except Exception as exc:
        raise spec.error(path + (name,), f"{name}: {first_lines_of(exc)}",
                         f"see the arguments of keras.optimizers.schedules.{name}") from None
    return schedule


def _steps(spec, path, arg, steps_per_epoch):
    if isinstance(arg, list):
        return [_steps(spec, path + (i,), a, steps_per_epoch) for i, a in enumerate(arg)]
    if not isinstance(arg, str):
        return arg
    match = _EPOCHS.match(arg)
    if not match:
        if "epoch" in arg or str(path[-1]).endswith(("steps", "boundaries")):
            raise spec.error(path, f"{path[-1]} must be a number of steps, 'N epochs', 'all' or 'all - N epochs', "
                             f"received: {arg!r}", "e.g. decay_steps: all (the whole run, which follows --epochs), "
                             "or warmup_steps: '1 epochs'")
        return arg
    if match["all"]:
        epochs = spec["fit"]["epochs"] - float(match["less"] or 0)
    else:
        epochs = float(match["n"])
    return max(1, round(epochs * (steps_per_epoch or 1)))


def uses_one_hot(spec: Spec) -> bool:
    """Whether labels must be one-hot: categorical losses, label smoothing and mixes (MixUp) need them."""
    name, _ = ref_name(spec["compile"]["loss"])
    return (spec["compile"]["label_smoothing"] > 0 or name.lower().startswith("categorical")
            or bool(mix_entries(spec["augment"])))


def build_loss(spec: Spec):
    """compile.loss as a Keras loss; sparse crossentropy becomes categorical where labels are one-hot."""
    path = ("compile", "loss")
    value = spec["compile"]["loss"]
    smoothing = spec["compile"]["label_smoothing"]
    name, args = ref_name(value)
    sparse = name.replace("_", "").lower() == "sparsecategoricalcrossentropy"
    if smoothing > 0 or (sparse and uses_one_hot(spec)):
        if not sparse and name.replace("_", "").lower() != "categoricalcrossentropy":
            raise spec.error(("compile", "label_smoothing"), f"label_smoothing needs a categorical crossentropy loss, "
                             f"received loss: {name}", "set compile.loss: categorical_crossentropy, or label_smoothing: 0")
        smoothed = {"label_smoothing": smoothing} if smoothing > 0 else {}
        return _construct_ref(spec, path, "CategoricalCrossentropy", {**(args or {}), **smoothed},
                              keras.losses, keras.losses.Loss, "loss")
    return _by_name(spec, path, value, keras.losses, keras.losses.Loss, keras.losses.get, "loss")


def build_metrics(spec: Spec) -> list:
    """compile.metrics as Keras metrics (names Keras knows stay names)."""
    metrics = []
    for i, value in enumerate(spec["compile"]["metrics"]):
        path = ("compile", "metrics", i)
        if isinstance(value, str):
            if value not in ("accuracy", "acc"):
                _by_name(spec, path, value, keras.metrics, keras.metrics.Metric, keras.metrics.get, "metric")
            metrics.append(value)
        else:
            metrics.append(_by_name(spec, path, value, keras.metrics, keras.metrics.Metric, keras.metrics.get, "metric"))
    return metrics


def monitor_mode(monitor: str, directions: dict | None = None) -> str:
    """'min' or 'max': whether a logged figure improves downwards. The one rule, for best.keras and
    every callback. Keras' own: a loss goes down; a metric declares its direction (`_direction`,
    given in `directions` by name); for one that does not, cnntrain's guess by the name, where
    Keras would raise at fit time."""
    name = metric_of(monitor)
    if name == "loss" or name.endswith("_loss"):
        return "min"
    direction = (directions or {}).get(name)
    if direction in ("up", "down"):
        return "max" if direction == "up" else "min"
    return "min" if ("loss" in name or "error" in name) else "max"


def build_callbacks(spec: Spec, run_dir=None, directions: dict | None = None) -> list:
    """The spec's callbacks: allowed by the policy (model/policy.py), their argument types checked,
    the paths they write resolved inside `run_dir` (left as written for `check`, which has none).
    Those that watch a figure get fit.monitor unless they name one, and a mode by `monitor_mode`
    unless they give one."""
    built = []
    for i, name, args in layer_entries(spec["fit"]["callbacks"]):
        path = ("fit", "callbacks", i)
        cls = lookup_class(spec, path + (name,), name, keras.callbacks, keras.callbacks.Callback, "callback")
        kwargs = policy.callback(spec, path, name, _as_kwargs(spec, path, cls, name, args), run_dir)
        params = _allowed_kwargs(cls, keras.callbacks.Callback)
        if "monitor" in params and "monitor" not in kwargs:
            kwargs["monitor"] = spec["fit"]["monitor"]
        if "mode" in params and "mode" not in kwargs and isinstance(kwargs.get("monitor"), str):
            kwargs["mode"] = monitor_mode(kwargs["monitor"], directions)
        arguments.check(spec, path, cls, name, kwargs, module="callbacks")
        built.append(construct(spec, path, name, kwargs, keras.callbacks, keras.callbacks.Callback, "callback"))
    return built


def _as_kwargs(spec, path, cls, name, args) -> dict:
    """`- Name: value` and `- Name: [values]` as the keyword arguments they stand for."""
    if args is None or isinstance(args, dict):
        return dict(args or {})
    try:
        bound = inspect.signature(cls.__init__).bind_partial(None, *(args if isinstance(args, list) else [args]))
    except TypeError as exc:
        raise spec.error(path, f"{name}: {exc}", f"see the arguments of keras.callbacks.{name}") from None
    return {k: v for k, v in list(bound.arguments.items())[1:]}


def build_all(spec: Spec):
    """Everything a fit will build, before any data: what `cnntrain check` proves about a spec.

    The normalization layer gets placeholder statistics; the real ones come from the
    training split at fit time.
    """
    import numpy as np

    front = []
    normalize = spec["preprocess"]["normalize"]
    if normalize != "none":
        front = [normalization_layer(normalize, np.zeros((1, *input_shape(spec)), np.uint8))]
    policy.check_spec(spec)
    model = build_model(spec, front=front, pretrained=False)
    check_output(spec, model, None)
    build_layers(spec, ("augment",))
    build_callbacks(spec)
    build_optimizer(spec, steps_per_epoch=1)
    build_loss(spec)
    build_metrics(spec)
    return model

