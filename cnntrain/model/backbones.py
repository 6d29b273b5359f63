"""Backbones: a keras.applications model as one entry of model.layers.

`- MobileNetV2: {include_top: false, weights: imagenet, pooling: avg}` is
`keras.applications.MobileNetV2(...)` with those arguments: Keras is the catalogue, as for
layers. The input the backbone expects is made part of the model in front of it, from plain
Keras layers so the .keras file loads anywhere: a Resizing up to the family's minimum size
where the images are smaller, and one frozen 1x1 Conv2D that turns grayscale into three
channels and applies the family's `preprocess_input` (every family's is affine per pixel:
x / 127.5 - 1, BGR less the ImageNet mean, or the torch mean and deviation), read off the
function itself rather than from a table. Families whose constructor takes
`include_preprocessing` preprocess inside the backbone.
"""
from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from cnntrain.backend import keras
from cnntrain.data.lookup import keras_home
from cnntrain.errors import SpecError, first_lines_of, plural

# Arguments cnntrain sets itself: the input comes from the layers above.
_OWN = ("input_shape", "input_tensor")
# Every keras.applications family halves the image five times; the few that need more say so
# in their call to imagenet_utils.obtain_input_shape(min_size=...).
_DEFAULT_MIN = 32
_offline = contextvars.ContextVar("cnntrain_backbones_offline", default=False)


@dataclass
class Entry:
    """A backbone of model.layers, built once the shape of its input is known."""
    index: int
    name: str
    args: dict

    @property
    def function(self):
        return getattr(keras.applications, self.name)


def names() -> list[str]:
    """The model names of keras.applications (MobileNetV2, ResNet50, ...)."""
    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(getattr(keras.applications, n)))


def is_backbone(name: str) -> bool:
    return isinstance(name, str) and name in names()


def entry(spec, path, name: str, args, *_) -> Entry:
    """The spec entry at `path` as an Entry, its argument names checked against the constructor (called
    as build.construct is, whose last arguments it does not need)."""
    index = path[-1]
    if args is not None and not isinstance(args, dict):
        raise spec.error(path, f"{name} takes its arguments as a mapping, received: {args!r}",
                         f"e.g. '- {name}: {{include_top: false, weights: imagenet, pooling: avg}}'")
    args = dict(args or {})
    allowed = [p for p in inspect.signature(getattr(keras.applications, name)).parameters if p not in _OWN]
    for key in args:
        if key in _OWN:
            raise spec.error(path + (name, key), f"{name}: cnntrain sets '{key}' from the layers above it",
                             "leave it out: the images are resized up to the backbone's minimum size "
                             "where they are smaller", key=True)
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise spec.error(path + (name, key), f"{name} has no argument '{key}'",
                             hint + f"See the arguments of keras.applications.{name}.", key=True)
    item = Entry(index, name, args)
    check_normalize(spec, item)
    return item


def _family(function):
    return importlib.import_module(function.__module__.replace("keras.src.", "keras."))


def min_size(function) -> int:
    """The smallest height and width the backbone accepts."""
    source = inspect.getsource(importlib.import_module(function.__module__))
    found = re.findall(r"min_size\s*=\s*(\d+)", source)
    return max([_DEFAULT_MIN, *map(int, found)])


def _affine(function):
    """The family's preprocess_input as (kernel [3, 3], bias [3]) of a 1x1 convolution."""
    preprocess = _family(function).preprocess_input
    zero = np.asarray(preprocess(np.zeros((1, 1, 1, 3), "float32")), "float64").reshape(3)
    kernel = np.asarray(preprocess(np.eye(3, dtype="float32").reshape(3, 1, 1, 3)), "float64").reshape(3, 3) - zero
    probe = np.random.default_rng(0).uniform(0, 255, (1, 2, 2, 3)).astype("float32")
    if not np.allclose(np.asarray(preprocess(probe.copy())), probe @ kernel + zero, atol=1e-3):
        raise AssertionError(f"{function.__name__}'s preprocess_input is not affine per pixel")
    return kernel, zero


def own_preprocessing(item: Entry) -> str | None:
    """What the backbone does to 0-255 images itself, or None when it expects them normalized."""
    params = inspect.signature(item.function).parameters
    if "include_preprocessing" in params:
        return "its include_preprocessing" if item.args.get("include_preprocessing", True) else None
    kernel, bias = _affine(item.function)
    if np.allclose(kernel, np.eye(3)) and np.allclose(bias, 0):
        return "its built-in rescaling"   # EfficientNet (v1) preprocesses inside the model
    return f"keras.applications.{_family(item.function).__name__.split('.')[-1]}.preprocess_input"


@contextlib.contextmanager
def offline(on: bool = True):
    """Within it, `weights: imagenet` never downloads: a file not in Keras' cache is an error."""
    token = _offline.set(on)
    try:
        yield
    finally:
        _offline.reset(token)


def add(spec, model, item: Entry, incoming: tuple, *, first: bool, load: bool):
    """Add the backbone to `model` after the layers that give it the input it expects. `first`: the
    model's input so far is the images; `load`: imagenet weights are loaded (check and the
    preflight need only the architecture)."""
    for layer in front(spec, item, incoming, first, load):
        model.add(layer)


def front(spec, item: Entry, incoming: tuple, first: bool, load: bool) -> list:
    """The layers that give the backbone the input it expects, then the backbone, built; `incoming`
    is the shape (without the batch) of what the layers above give it."""
    path = ("model", "layers", item.index)
    if len(incoming) != 3:
        raise spec.error(path, f"{item.name} takes images (height, width, channels) but receives "
                         f"{_shape(incoming)} from the layers above",
                         f"move {item.name} above Flatten; end it with pooling: avg (or a "
                         "GlobalAveragePooling2D after it) before the Dense layers")
    height, width, channels = incoming
    if channels not in (1, 3):
        raise spec.error(path, f"{item.name} takes 1 or 3 channels, receives {channels}",
                         "give it the images themselves, or a layer with 3 filters above it")
    layers = []
    smallest = min_size(item.function)
    if height < smallest or width < smallest:
        if not first:
            raise spec.error(path, f"{item.name} needs an input of at least {smallest}x{smallest}, receives "
                             f"{height}x{width} from the layers above",
                             f"list it first in model.layers (the images are then resized up to "
                             f"{smallest}x{smallest}), or put '- Resizing: {{height: {max(height, smallest)}, "
                             f"width: {max(width, smallest)}}}' right above it")
        height, width = max(height, smallest), max(width, smallest)
        layers.append(keras.layers.Resizing(height, width, name=f"{item.name.lower()}_resize"))
    kernel, bias = np.eye(3), np.zeros(3)
    if own_preprocessing(item) and "include_preprocessing" not in inspect.signature(item.function).parameters:
        kernel, bias = _affine(item.function)
    if channels == 1:
        kernel = kernel.sum(axis=0, keepdims=True)   # the gray value in all three channels
    if channels == 1 or not np.allclose(kernel, np.eye(3)) or not np.allclose(bias, 0):
        conv = keras.layers.Conv2D(3, 1, trainable=False, name=f"{item.name.lower()}_input")
        conv.build((None, height, width, channels))
        conv.set_weights([kernel.reshape(1, 1, channels, 3).astype("float32"), bias.astype("float32")])
        layers.append(conv)
    layers.append(backbone(spec, item, (height, width, 3), load))
    return layers


def _shape(shape) -> str:
    return "(" + ", ".join(["batch", *map(str, shape)]) + ")"


def backbone(spec, item: Entry, shape: tuple, load: bool):
    """keras.applications.<name> on inputs of `shape`; `load`: its imagenet weights too (a weights
    file is always loaded: reading it is cheap, and a file that does not fit is best found early)."""
    path = ("model", "layers", item.index, item.name)
    weights = item.args.get("weights", inspect.signature(item.function).parameters["weights"].default)
    local = isinstance(weights, str) and weights != "imagenet"
    if local and not os.path.isfile(weights):
        raise spec.error(path + ("weights",), f"{item.name}: no weights file {weights}",
                         "weights is imagenet, null (random) or the path of a .weights.h5 or .h5 file")
    args = {**item.args, "input_shape": shape, "weights": weights if load and not local else None}
    try:
        with _guarded_download(spec, item), warnings.catch_warnings():
            # Keras warns that the 224x224 weights are loaded for any other input size: that is
            # what a backbone on small images is for, and the warning is no action for the user.
            warnings.simplefilter("ignore", UserWarning)
            model = item.function(**args)
    except SpecError:
        raise
    except Exception as exc:  # Keras raises ValueError for bad arguments
        raise spec.error(path, f"{item.name}: {first_lines_of(exc)}",
                         f"see the arguments of keras.applications.{item.name}") from None
    if local:
        _load_file(spec, item, model, weights, shape)
    return model


def _load_file(spec, item: Entry, model, weights: str, shape):
    # Keras loads a .weights.h5 by layer path and skips what the model lacks: a file saved with
    # the top loads "fine" into a model without one. The arrays' shapes are compared first.
    found = _file_shapes(weights)
    wanted = sorted(tuple(w.shape) for w in model.weights)
    problem = None
    if found is None:
        problem = "no HDF5 weights (it is not a .weights.h5 or .h5 file)"
    elif sorted(found) != wanted:
        dense = [s for s in found if len(s) == 2]
        if dense and not any(len(s) == 2 for s in wanted):
            problem = f"the weights of a model with its top (include_top: true, classes: {dense[-1][-1]})"
        elif not dense and any(len(s) == 2 for s in wanted):
            problem = "the weights of a model without its top (include_top: false)"
        else:
            problem = f"{len(found)} weight arrays of other shapes (this one has {len(wanted)})"
    if problem is None:
        try:
            model.load_weights(weights)
        except Exception as exc:  # Keras' own mismatch errors
            problem = f"weights Keras cannot load into it ({first_lines_of(exc)})"
    if problem is not None:
        raise spec.error(("model", "layers", item.index, item.name, "weights"), f"{item.name}: the weights in "
                         f"{weights} do not fit this {item.name} ({_variant(item, shape)}); the file holds {problem}",
                         "use the file saved from the same constructor arguments and input size")


def _variant(item: Entry, shape) -> str:
    top = item.args.get("include_top", True)
    return (f"include_top: {str(top).lower()}" + (f", classes: {item.args.get('classes', 1000)}" if top else "")
            + f", input {shape[0]}x{shape[1]}x{shape[2]}")


def _file_shapes(path) -> list | None:
    """The shapes of the arrays in an HDF5 weights file, or None when it is not one."""
    import h5py

    shapes = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: shapes.append(tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    except OSError:
        return None
    return shapes


@contextlib.contextmanager
def _guarded_download(spec, item: Entry):
    """Keras' own download and hash check into its cache, unless offline or it fails: then one
    error naming the file Keras wants and where to put it."""
    from keras.src.utils import file_utils

    real = file_utils.get_file

    def get_file(fname=None, origin=None, *args, cache_subdir="datasets", cache_dir=None, **kwargs):
        cache_dir = cache_dir or keras_home()   # Keras reads $KERAS_HOME once, at import
        where = os.path.join(cache_dir, cache_subdir, fname or os.path.basename(origin))
        if not os.path.exists(where):
            if _offline.get():
                raise _missing(spec, item, where, origin, "offline mode is on, so nothing was downloaded")
            try:
                os.makedirs(os.path.dirname(where), exist_ok=True)
            except OSError:
                pass   # unwritable: Keras' own error says so
        try:
            return real(fname, origin, *args, cache_subdir=cache_subdir, cache_dir=cache_dir, **kwargs)
        except Exception as exc:  # urllib, hash and OS errors alike
            raise _missing(spec, item, where, origin, f"the download failed ({type(exc).__name__}: "
                           f"{first_lines_of(exc)})") from None

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = real


def _missing(spec, item: Entry, where: str, origin: str, why: str) -> SpecError:
    return spec.error(("model", "layers", item.index, item.name, "weights"),
                      f"{item.name}: the imagenet weights are not in Keras' cache and {why}",
                      f"download {origin} and put it at {where} (or set weights: null, or the path of a "
                      "weights file)")


def check_top(spec, model, num_classes: int | None):
    """`include_top: true` ends the model in the backbone's own classifier: its class count must be
    the data's."""
    for i, item in entries(spec):
        if item.args.get("include_top", True) is not True or num_classes is None:
            continue
        classes = item.args.get("classes", 1000)
        if classes != num_classes:
            raise spec.error(("model", "layers", i, item.name, "include_top"),
                             f"{item.name}: include_top: true gives its own classifier of {classes} classes, "
                             f"but the data has {num_classes}",
                             f"set include_top: false, pooling: avg and end with Dense: {{units: {num_classes}, "
                             f"activation: softmax}}; or classes: {num_classes} with weights: null")


# Keras' default BatchNormalization momentum: the moving averages keep 0.99 of themselves a step
# (MobileNet's 0.999 still holds 37% of its starting 0 and 1 after 1,000 steps). Training
# normalizes by each batch's own statistics, so its figures look fine; evaluate and predict
# normalize by the averages, which in a short fit from random weights are far from them.
SLOW_MOMENTUM = 0.99
FEW_STEPS = 1000


def unsettled_statistics(spec, model, steps: int) -> list[str]:
    """A warning per backbone of `model` started from random weights (weights: null) whose
    BatchNormalization layers keep their moving averages with a momentum of 0.99 or more, when the
    fit has fewer than FEW_STEPS training `steps` in all: the momentum is read from the built layers."""
    found = []
    for (i, item), inner in zip(entries(spec), in_model(model)):
        if item.args.get("weights", "imagenet") is not None:
            continue
        slow = [layer.momentum for layer in _all_layers(inner)
                if isinstance(layer, keras.layers.BatchNormalization) and layer.momentum >= SLOW_MOMENTUM]
        if not slow or steps >= FEW_STEPS:
            continue
        momentum = min(slow)
        where = spec.error(("model", "layers", i, item.name, "weights"), "").location
        found.append(f"{where}: {item.name} starts from random weights (weights: null), and its "
                     f"{len(slow)} BatchNormalization layers move their moving averages {1 - momentum:.1%} of "
                     f"the way to each batch's statistics (momentum {momentum:g}): in {plural(steps, 'training step')} "
                     "they do not settle, and evaluate and predict, which normalize by them, may find the model "
                     f"at chance; start from pretrained weights (weights: imagenet or a weights file), or train "
                     f"for {FEW_STEPS:,} steps or more")
    return found


def _all_layers(model) -> list:
    return [layer for inner in model.layers
            for layer in (_all_layers(inner) if isinstance(inner, keras.Model) else [inner])]


def entries(spec) -> list[tuple[int, Entry]]:
    """The backbones of the spec's model.layers."""
    from cnntrain.spec import layer_entries

    return [(i, Entry(i, name, dict(args or {}))) for i, name, args in layer_entries(spec["model"]["layers"])
            if is_backbone(name)]


def check_normalize(spec, item: Entry):
    """A backbone that preprocesses 0-255 images itself after preprocess.normalize: twice normalized."""
    normalize = spec["preprocess"]["normalize"]
    own = own_preprocessing(item) if normalize != "none" else None
    if own is not None:
        raise spec.error(("preprocess", "normalize"), f"preprocess.normalize: {normalize} and "
                         f"{item.name} (model.layers item {item.index + 1}) would both normalize the images: "
                         f"{item.name} takes 0-255 pixels and applies {own}", "set preprocess.normalize: none")


def in_model(model) -> list:
    """The backbone models nested in a built model (Functional models among its layers)."""
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def input_adapters(model) -> list:
    """The frozen 1x1 Conv2D layers `front` put right before a backbone: fixed preprocessing, not
    learned kernels."""
    layers = list(model.layers)
    return [layer for layer, after in zip(layers, layers[1:]) if isinstance(after, keras.Model)
            and type(layer).__name__ == "Conv2D" and not layer.trainable and tuple(layer.kernel_size) == (1, 1)
            and layer.filters == 3]
