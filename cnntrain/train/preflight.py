"""One real training step before any real one: what Keras would reject at fit time, rejected now.

Some spec combinations pass every construction check and fail only inside `model.fit`: a loss
that needs other labels (`binary_crossentropy` on 10 softmax scores), a metric that does (AUC,
top-k on integer labels), an augmentation layer that changes the image's shape, a schedule whose
step count TensorFlow cannot hold. `preflight` runs the real input pipeline (augmentation
included) on two random images of the input shape, then one real forward and backward step with
the spec's loss, metrics and optimizer, on a model of its own: the fit's model, its weights and
its random streams are untouched. On failure it finds the entry at fault by trying the parts one
by one and raises a SpecError at its line, with Keras' own message. It returns what the model
logs, for the monitor check and build.monitor_mode: `{figure: "up" | "down" | None}`.
"""
from __future__ import annotations

import difflib
import re

import numpy as np

from cnntrain.backend import keras
from cnntrain.feed import mix, pipeline
from cnntrain.model import build, gradient_scale, normalization
from cnntrain.spec import Spec, layer_entries
from cnntrain.runs.numbers import is_validation, metric_of, validation_name

_BATCH = 2   # enough for every batch statistic; small enough for any input size


def preflight(spec: Spec, *, shape=None, num_classes=None, steps_per_epoch=1) -> dict:
    """Raise a SpecError for what `model.fit` would reject; return {logged figure: its direction}."""
    shape = build.input_shape(spec, shape)
    rng = np.random.default_rng(spec["seed"])
    x = rng.integers(0, 256, (_BATCH, *shape), dtype=np.uint8)
    norm = normalization.normalization_layer(spec["preprocess"]["normalize"], x)
    model = build.build_model(spec, shape=shape, front=[norm] if norm is not None else [], pretrained=False)
    build.check_output(spec, model, num_classes)
    classes = int(num_classes or model.output_shape[-1])
    y = np.arange(_BATCH) % classes
    one_hot = classes if build.uses_one_hot(spec) else None
    xb, yb = _augmented_batch(spec, x, y, shape, one_hot)
    weights = model.get_weights()
    optimizer = build.build_optimizer(spec, steps_per_epoch)
    gradient_scale.attach(spec, optimizer, model.trainable_variables)   # a key matching no variable: its line
    logs = _step(model, xb, yb, optimizer, build.build_loss(spec), build.build_metrics(spec))
    if isinstance(logs, Exception):
        _blame(spec, model, weights, xb, yb, classes, one_hot, steps_per_epoch, logs)
    directions = _directions(model)
    return {name: directions.get(name) for name in logs}


def _step(model, xb, yb, optimizer, loss, metrics):
    """The logs of one training step, or the exception that Keras raised."""
    # Eagerly first: one step needs no graph, and tracing one costs seconds (10 s of `check` on the
    # chapter's CIFAR-10 model). A step that fails is judged as fit runs it, in a graph, whose
    # errors also read better ("Shape must be rank 1" where eager names a kernel).
    for eagerly in (True, False):
        try:
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, run_eagerly=eagerly)
            return model.train_on_batch(xb, yb, return_dict=True)
        except Exception as exc:  # Keras and TensorFlow raise ValueError, TypeError, InvalidArgumentError ...
            failed = exc
    return failed


def _augmented_batch(spec, x, y, shape, one_hot):
    """One batch through the real training pipeline; an augmentation layer at fault is named. Each
    mix (MixUp, CutMix) is tried on its own for sure, after the image layers: a mix drawn for only
    some batches, or never when another is drawn, would otherwise go untried."""
    items = spec["augment"]
    built = build.build_layers(spec, ("augment",))
    images, mixes = mix.split(built)
    try:
        batches = [_one_batch(x, y, images + [(layer, 1.0)], spec["seed"], one_hot) for layer, _ in mixes]
        batches = batches or [_one_batch(x, y, images, spec["seed"], one_hot)]
    except Exception:  # the layer at fault is found below, by running the layers one at a time
        batches = None
    for (i, name, _), (_, yb) in zip([e for e in layer_entries(items) if mix.is_mix(built[e[0]])], batches or []):
        if not np.all(np.isfinite(yb)):   # Keras takes any alpha; Beta(0, 0) is 0 / 0
            raise spec.error(("augment", i), f"{name} gives labels that are not numbers: {np.asarray(yb)[0].tolist()}",
                             f"see the documentation of keras.layers.{name} (MixUp's alpha: a number above 0)")
    if batches and all(tuple(xb.shape[1:]) == tuple(shape) for xb, _ in batches):
        return batches[-1]
    for i, name, _ in layer_entries(items):
        layers = images + [(built[i][0], 1.0)] if mix.is_mix(built[i]) else built[:i + 1]
        try:
            out, _ = _one_batch(x, y, layers, spec["seed"], one_hot)
        except Exception as exc:
            raise spec.error(("augment", i), f"{name} fails on a batch of {_shape(shape)} images: "
                             f"{keras_message(exc)}", f"see the documentation of keras.layers.{name}") from None
        if tuple(out.shape[1:]) != tuple(shape):
            raise spec.error(("augment", i), f"{name} turns {_shape(shape)} images into {_shape(out.shape[1:])}; "
                             "augmentation must keep the model's input shape",
                             f"give it the input size (height: {shape[0]}, width: {shape[1]}), or remove it; "
                             "to change the input size, set model.input_shape (and data.image_size)")
    raise spec.error(("augment",), "the augmentation fails on a batch of images",
                     "remove the augmentation layers one by one to find the one at fault")


def _one_batch(x, y, layers, seed, one_hot):
    ds = pipeline.train_dataset(x, y, batch_size=len(x), augment=layers, seed=seed, num_classes=one_hot)
    return next(iter(ds))


def _blame(spec, model, weights, xb, yb, classes, one_hot, steps_per_epoch, error):
    """The step failed: try the loss alone, then each metric, then the optimizer; raise at the first at fault."""
    labels = f"one-hot labels of {classes} classes" if one_hot else f"integer class labels (0..{classes - 1})"
    loss_name, _ = build.ref_name(spec["compile"]["loss"])

    def retry(optimizer, metrics):
        model.set_weights(weights)   # the failed step may have moved them
        return _step(model, xb, yb, optimizer, build.build_loss(spec), metrics)

    _blame_layers(spec, model, xb)
    failed = retry(keras.optimizers.SGD(), [])
    if isinstance(failed, Exception):
        raise spec.error(("compile", "loss"), f"loss {loss_name} cannot train this model: {keras_message(failed)}",
                         f"the model gives {classes} class scores and the data {labels}: use "
                         "sparse_categorical_crossentropy (integer labels) or categorical_crossentropy "
                         "(one-hot labels)") from None
    metrics = build.build_metrics(spec)
    for i, metric in enumerate(metrics):
        failed = retry(keras.optimizers.SGD(), [metric])
        if isinstance(failed, Exception):
            name, _ = build.ref_name(spec["compile"]["metrics"][i])
            raise spec.error(("compile", "metrics", i), f"metric {name} cannot follow this model: "
                             f"{keras_message(failed)}",
                             f"metrics get what the loss gets: {labels} and {classes} scores per image; "
                             "e.g. accuracy, or SparseTopKCategoricalAccuracy for integer labels") from None
    name, args = build.ref_name(spec["compile"]["optimizer"])
    path = ("compile", "optimizer")
    if isinstance(args, dict) and isinstance(args.get("learning_rate"), dict):
        path += (name, "learning_rate")
        schedule, _ = build.ref_name(args["learning_rate"])
        raise spec.error(path, f"the learning-rate schedule {schedule} fails in a training step: "
                         f"{keras_message(error)}", f"check its arguments ('N epochs' is N x {steps_per_epoch} "
                         "steps here); see keras.optimizers.schedules." + schedule) from None
    raise spec.error(path, f"the optimizer {name} fails in a training step: {keras_message(error)}",
                     f"see the arguments of keras.optimizers.{name}") from None


def _blame_layers(spec, model, xb):
    """Some layers fail only in training mode (AlphaDropout with rate 1): the first that does is named."""
    entries = list(layer_entries(spec["model"]["layers"]))
    front = len(model.layers) - len(entries)   # the normalization layer, if any
    h = xb
    for k, layer in enumerate(model.layers):
        try:
            h = layer(h, training=True)
        except Exception as exc:  # whatever the layer raises, it is the one at fault
            if k < front:
                raise
            i, name, _ = entries[k - front]
            raise spec.error(("model", "layers", i), f"{name} fails on a training batch: {keras_message(exc)}",
                             f"see the documentation of keras.layers.{name}") from None


def _directions(model) -> dict:
    """{metric name: 'up' | 'down'} of the compiled metrics that declare it (Keras' own attribute)."""
    found = {}
    for metric in model.metrics:
        for inner in getattr(metric, "metrics", None) or [metric]:
            direction = getattr(inner, "_direction", None)
            if direction in ("up", "down"):
                found[inner.name] = direction
    return found


def check_monitors(spec: Spec, logged: dict, validation: bool):
    """fit.monitor and each callback's monitor must be a figure the model logs; a did-you-mean otherwise."""
    names = sorted(logged, key=lambda name: name != "loss")   # loss first, then compile.metrics' order
    names += [validation_name(name) for name in names] if validation else []
    entries = [(("fit", "monitor"), spec["fit"]["monitor"], "fit.monitor")]
    for i, name, args in layer_entries(spec["fit"]["callbacks"]):
        if isinstance(args, dict) and isinstance(args.get("monitor"), str):
            entries.append((("fit", "callbacks", i, name, "monitor"), args["monitor"], f"{name}'s monitor"))
    for path, monitor, what in entries:
        # Without validation data fit follows the training figure of a val_ monitor, and says so.
        if monitor in names or (not validation and is_validation(monitor) and metric_of(monitor) in logged):
            continue
        close = difflib.get_close_matches(monitor, names, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        hint += "The names are those of compile.metrics, with val_ for the validation figures."
        raise spec.error(path, f"{what} '{monitor}' is not a figure this model logs; it logs: "
                         f"{', '.join(names)}", hint)


def _shape(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def keras_message(exc) -> str:
    """The part of a Keras or TensorFlow error a user can act on, on one line.

    Graph errors come with the Python frames that built the node and the node's name; a layer's
    error is wrapped in "Exception encountered when calling ..." and its arguments.
    """
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines()]
    kept = []
    for line in lines:
        if (not line or line.startswith(("File ", "Detected at node", "Exception encountered when calling",
                                          "Arguments received by", "•", "Graph execution error"))
                or line.endswith("defined at (most recent call last):")):
            if line.startswith("Arguments received by"):
                break
            continue
        kept.append(line)
    message = " ".join(kept) if kept else lines[0]
    message = re.sub(r" for '\{\{node .*?' with", " with", message)   # the node's name: internal
    message = re.sub(r"\s*\[\[\{\{node [^\]]*\]\]", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", message)
    return build.first_lines_of(message)
