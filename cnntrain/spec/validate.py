"""Checking a spec's values after the defaults are filled in: types, ranges, choices, layer lists.

The layer names are checked here against Keras' own files (spec.keras_names), before TensorFlow is
imported; the layers' arguments are checked by the model builder against Keras.
"""
from __future__ import annotations

import difflib
import math
import re

from cnntrain.spec import keras_names
from cnntrain.spec.schema import CHOICES, FINE_TUNE_DEFAULTS, MAX_SEED, MIX_DEFAULTS, MIXES, REQUIRED, dotted
from cnntrain.spec.yamlmarks import show


def _int(spec, path, value, minimum=None, optional=False, maximum=None):
    if optional and value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        need = f"an integer >= {minimum}" if minimum is not None else "an integer"
        if maximum is not None:
            need = f"an integer in [{minimum}, {maximum}]"
        raise spec.error(path, f"'{dotted(path)}' must be {need}, received: {show(value)}")


def _number(spec, path, value, low, high, *, high_open=True):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise spec.error(path, f"'{dotted(path)}' must be a number in [{low}, {high}{bracket}, received: {show(value)}")


def validate(spec):
    """Raise the SpecError of the first wrong value of `spec` (a Spec with defaults filled in)."""
    v = spec.values
    if not isinstance(v["name"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v["name"]):
        raise spec.error(("name",), f"'name' must be a simple name (letters, digits, . _ -), received: {show(v['name'])}",
                         "it names the run folder runs/<name>/")
    _int(spec, ("seed",), v["seed"], 0, maximum=MAX_SEED)
    for path, choices in CHOICES.items():
        value = v[path[0]][path[1]]
        if value is None and path == ("data", "color_mode"):
            continue
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise spec.error(path, f"'{dotted(path)}' must be one of {', '.join(choices)}, received: {show(value)}", hint)
    data = v["data"]
    for key in ("path", "labels"):
        if data[key] is not None and (not isinstance(data[key], str) or not data[key]):
            raise spec.error(("data", key), f"'data.{key}' must be a path, received: {show(data[key])}")
    _number(spec, ("data", "validation_split"), data["validation_split"], 0.0, 1.0)
    if data["validation"] == "split" and data["validation_split"] == 0:
        raise spec.error(("data", "validation_split"), "'data.validation_split' is 0 but data.validation is 'split'",
                         "set a fraction such as 0.1, or data.validation: test or none")
    for key in ("limit_train", "limit_test"):
        _int(spec, ("data", key), data[key], 1, optional=True)
    _shape(spec, ("data", "image_size"), data["image_size"], 2)
    if data["dataset"] == "image_folder" and data["path"] is None and data["labels"] is None:
        raise spec.error(("data", "dataset"), "data.dataset 'image_folder' needs data.path or data.labels",
                         "set data.path to a folder with one subfolder of images per class, or data.labels "
                         "to a CSV of filename,label rows")
    if data["labels"] is not None and data["dataset"] != "image_folder":
        raise spec.error(("data", "labels"), f"data.labels is for data.dataset: image_folder, received dataset "
                         f"'{data['dataset']}'", "set data.dataset: image_folder, or leave data.labels out")
    _shape(spec, ("model", "input_shape"), v["model"]["input_shape"], 3)
    if "layers" not in v["model"]:
        raise spec.error(("model",), "the spec has no model.layers",
                         "list the model's layers under model.layers, e.g. '- Conv2D: {filters: 32, kernel_size: 3}'")
    _layer_list(spec, ("model", "layers"), v["model"]["layers"], allow_empty=False)
    _layer_list(spec, ("augment",), v["augment"], allow_empty=True)
    _mixes(spec, v["augment"])
    _layer_list(spec, ("fit", "callbacks"), v["fit"]["callbacks"], allow_empty=True)
    comp = v["compile"]
    _object_ref(spec, ("compile", "optimizer"), comp["optimizer"])
    if isinstance(comp["optimizer"], dict):
        (name, args), = comp["optimizer"].items()
        if isinstance(args, dict) and isinstance(args.get("learning_rate"), dict):
            # A schedule, built by the builder as {ClassName: {arguments}} like the optimizer itself.
            _object_ref(spec, ("compile", "optimizer", name, "learning_rate"), args["learning_rate"])
    _object_ref(spec, ("compile", "loss"), comp["loss"])
    if not isinstance(comp["metrics"], list):
        raise spec.error(("compile", "metrics"), f"'compile.metrics' must be a list, received: {show(comp['metrics'])}",
                         "e.g. metrics: [accuracy]")
    for i, metric in enumerate(comp["metrics"]):
        _object_ref(spec, ("compile", "metrics", i), metric)
    _number(spec, ("compile", "label_smoothing"), comp["label_smoothing"], 0.0, 1.0)
    _gradient_scale(spec, comp["gradient_scale"])
    fit = v["fit"]
    _class_weight(spec, fit["class_weight"])
    _int(spec, ("fit", "batch_size"), fit["batch_size"], 1)
    _int(spec, ("fit", "epochs"), fit["epochs"], 1)
    if not isinstance(fit["monitor"], str):
        raise spec.error(("fit", "monitor"), f"'fit.monitor' must be a metric name, received: {show(fit['monitor'])}",
                         "e.g. val_accuracy or val_loss")
    if not isinstance(fit["tensorboard"], bool):
        raise spec.error(("fit", "tensorboard"), f"'fit.tensorboard' must be true or false, received: {show(fit['tensorboard'])}")
    if fit["tracking_uri"] is not None and not isinstance(fit["tracking_uri"], str):
        raise spec.error(("fit", "tracking_uri"), f"'fit.tracking_uri' must be a URI, received: "
                         f"{show(fit['tracking_uri'])}", "e.g. sqlite:///runs/mlflow.db")
    _fine_tune(spec, fit)
    if not isinstance(v["output"]["dir"], str) or not v["output"]["dir"]:
        raise spec.error(("output", "dir"), f"'output.dir' must be a folder path, received: {show(v['output']['dir'])}")
    _layer_names(spec, v["model"]["layers"], v["augment"])


def _layer_names(spec, layers, augment):
    """Each layer's name is a keras.layers class, or in model.layers a keras.applications model:
    read from Keras' files, so a misspelt name is reported before TensorFlow is imported (if they
    cannot be read, the model builder reports it)."""
    classes, applications = keras_names.layer_names(), keras_names.application_names()
    if classes is None or applications is None:
        return
    for path, items, known in ((("model", "layers"), layers, classes + applications), (("augment",), augment, classes)):
        for i, name, _ in layer_entries(items):
            if name not in known:
                raise keras_names.unknown_name(spec, path + (i, name), name, known, "layer", "keras.layers",
                                               applications=path == ("model", "layers"))


_WEIGHT_PATH = ("fit", "class_weight")


def _class_weight(spec, value) -> None:
    """balanced, or class names to finite numbers >= 0; data/balance.py matches the names to the data."""
    if value is None or value == "balanced":
        return
    if not isinstance(value, dict) or not value:
        raise spec.error(_WEIGHT_PATH, f"'{dotted(_WEIGHT_PATH)}' must be balanced or map class names to weights, "
                         f"received: {show(value)}", "e.g. class_weight: balanced, or class_weight: {cat: 1, dog: 4}")
    for key, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise spec.error(_WEIGHT_PATH + (key,), f"'{dotted(_WEIGHT_PATH + (key,))}' must be a number >= 0, "
                             f"received: {show(weight)}", "1 weighs a class as usual, 2 twice as much")
    if not any(value.values()):
        raise spec.error(_WEIGHT_PATH, f"'{dotted(_WEIGHT_PATH)}' weighs every class 0, so nothing would be learned",
                         "give at least one class a weight above 0")


_TUNE = ("fit", "fine_tune")
_TUNE_EXAMPLE = "e.g. fine_tune: {at_epoch: 5, learning_rate: 0.00001, layers: all}"


def _fine_tune(spec, fit) -> None:
    """{at_epoch, learning_rate, layers}, each checked; the defaults filled in."""
    value = fit["fine_tune"]
    if value is None:
        return
    if not isinstance(value, dict):
        raise spec.error(_TUNE, f"'fit.fine_tune' must be a mapping, received: {show(value)}", _TUNE_EXAMPLE)
    for key in value:
        if key not in FINE_TUNE_DEFAULTS:
            close = difflib.get_close_matches(str(key), list(FINE_TUNE_DEFAULTS), n=1)
            raise spec.error(_TUNE + (key,), f"'fit.fine_tune' has no key '{key}'",
                             (f"did you mean '{close[0]}'? " if close else "") + _TUNE_EXAMPLE, key=True)
    for key, default in FINE_TUNE_DEFAULTS.items():
        if key not in value and default is REQUIRED:
            raise spec.error(_TUNE, f"'fit.fine_tune' needs '{key}'", _TUNE_EXAMPLE)
        value.setdefault(key, default)
    _int(spec, _TUNE + ("at_epoch",), value["at_epoch"], 1)
    rate = value["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise spec.error(_TUNE + ("learning_rate",), f"'fit.fine_tune.learning_rate' must be a number above 0, "
                         f"received: {show(rate)}", "a tenth to a hundredth of the first phase's, e.g. 0.00001")
    layers = value["layers"]
    if layers != "all" and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
        raise spec.error(_TUNE + ("layers",), f"'fit.fine_tune.layers' must be all or a number of layers >= 1, "
                         f"received: {show(layers)}", "all unfreezes whole backbones; K their last K layers")
    _phase_bound_callbacks(spec, fit)


# Callbacks whose counters Keras resets in on_train_begin, which fine-tuning's second model.fit
# calls again: their patience would not span the phase change (and a resumed fit's would).
_PHASE_BOUND = {
    "EarlyStopping": ("a stop in phase one only skips to phase two; restore_best_weights puts phase one's best "
                      "weights back before phase two", "leave it out: best.keras keeps the best epoch of either phase "
                      "(fit.monitor), and fit.epochs sets the length"),
    "ReduceLROnPlateau": ("phase two's new optimizer starts at fit.fine_tune.learning_rate whatever it lowered",
                          "leave it out: phase two lowers the rate itself, to fit.fine_tune.learning_rate"),
}


def _phase_bound_callbacks(spec, fit) -> None:
    for i, name, _ in layer_entries(fit["callbacks"]):
        if name in _PHASE_BOUND:
            why, hint = _PHASE_BOUND[name]
            raise spec.error(("fit", "callbacks", i, name), f"{name} does not work with fit.fine_tune: Keras starts "
                             f"it afresh (its patience and best value) when phase two begins, and {why}", hint, key=True)


_SCALE_PATH = ("compile", "gradient_scale")


def _gradient_scale(spec, value) -> None:
    """Names to positive finite numbers; model/gradient_scale.py matches the names to the model."""
    if value is None:
        return
    if not isinstance(value, dict) or not value:
        raise spec.error(_SCALE_PATH, f"'{dotted(_SCALE_PATH)}' must map variable names to numbers, "
                         f"received: {show(value)}", "e.g. gradient_scale: {beta: 64}, or leave it out")
    for key, scale in value.items():
        if not isinstance(key, str) or not key:
            raise spec.error(_SCALE_PATH + (key,), f"'{dotted(_SCALE_PATH)}' keys must be variable names, "
                             f"received: {show(key)}", "e.g. beta, kernel, dense/kernel, conv2d*/kernel", key=True)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise spec.error(_SCALE_PATH + (key,), f"'{dotted(_SCALE_PATH + (key,))}' must be a number above 0, "
                             f"received: {show(scale)}", "1 leaves the gradient as it is")


def _shape(spec, path, value, length):
    if value is None:
        return
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)):
        example = "[28, 28, 1]" if length == 3 else "[32, 32]"
        raise spec.error(path, f"'{dotted(path)}' must be a list of {length} positive integers, received: {show(value)}",
                         f"e.g. {example}")


def _object_ref(spec, path, value):
    """A Keras object by name ('adam') or as {ClassName: {arguments}}."""
    if isinstance(value, str) and value:
        return
    if isinstance(value, dict) and len(value) == 1:
        (name, args), = value.items()
        if isinstance(name, str) and (args is None or isinstance(args, dict)):
            return
    raise spec.error(path, f"'{dotted(path)}' must be a name or {{ClassName: {{arguments}}}}, received: {show(value)}",
                     "e.g. adam, or {Adam: {learning_rate: 0.001}}")


def layer_entries(items):
    """(index, name, args) for a layer list in the spec's syntax; args is None, a scalar, a list or a dict."""
    for i, item in enumerate(items):
        if isinstance(item, str):
            yield i, item, None
        else:
            (name, args), = item.items()
            yield i, name, args


def mix_entries(items):
    """(index, name, probability) of each label-mixing entry (schema.MIXES) of an augment list."""
    found = []
    for i, name, args in layer_entries(items or []):
        if name in MIXES:
            given = args if isinstance(args, dict) else {}
            found.append((i, name, given.get("probability", MIX_DEFAULTS["probability"])))
    return found


def _mixes(spec, items):
    mixes = mix_entries(items)
    entries = list(layer_entries(items))
    for i, name, probability in mixes:
        path = ("augment", i, name, "probability")
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise spec.error(path, f"{name}'s probability must be a number in [0, 1], received: {show(probability)}",
                             "the fraction of training batches mixed, e.g. probability: 0.5")
        images = [other for _, other, _ in entries[i + 1:] if other not in MIXES]
        if images:
            raise spec.error(("augment", i), f"{name} is listed before {images[0]}, but it mixes whole batches "
                             "after the image augmentations", f"move {name} below {images[-1]}, to the end of augment:")
    total = sum(probability for _, _, probability in mixes)
    if total > 1 + 1e-9:
        parts = " + ".join(f"{name} {probability:g}" for _, name, probability in mixes)
        i, name, _ = mixes[-1]
        raise spec.error(("augment", i, name, "probability"), f"the mixes' probabilities sum to {total:g} ({parts}); "
                         "each batch gets at most one mix, so they must sum to at most 1",
                         "give each a probability, e.g. probability: 0.5 on both (a mix without one has 1.0)")


def _layer_list(spec, path, items, *, allow_empty):
    if items is None and allow_empty:
        _set(spec.values, path, [])
        return
    if not isinstance(items, list) or (not items and not allow_empty):
        raise spec.error(path, f"'{dotted(path)}' must be a list of layers, received: {show(items)}",
                         "write one '- ClassName: {arguments}' per line, e.g. '- Conv2D: {filters: 32, kernel_size: 3}'")
    for i, item in enumerate(items):
        if isinstance(item, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item):
            continue
        if isinstance(item, dict) and len(item) == 1:
            (name, _args), = item.items()
            if isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                continue
        raise spec.error(path + (i,), f"item {i + 1} of '{dotted(path)}' must be a class name or "
                         f"{{ClassName: arguments}}, received: {show(item)}",
                         "e.g. '- Flatten' or '- Dense: {units: 10, activation: softmax}'; "
                         "check the indentation of the arguments")


def _set(values, path, value):
    for part in path[:-1]:
        values = values[part]
    values[path[-1]] = value
