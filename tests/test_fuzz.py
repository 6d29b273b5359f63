"""Hostile and broken specs: every generated or mutated spec ends in a Spec or a clean CnntrainError.

Two levels, both with hypothesis (derandomize=True: the same examples on every run, so CI is stable):
- the spec level, no TensorFlow: random YAML texts, random nested structures dumped to YAML,
  mutations of the real configs/ (delete, duplicate, retype and rename keys, deep nesting, huge
  numbers, unicode, truncation), binary files, --set overrides. Thousands of examples, fast.
- the builder level: specs that pass the spec level with mutated layer, augmentation, optimizer,
  schedule, loss, metric and callback arguments, built with Keras. Fewer examples: each builds a model.

Anything else than CnntrainError (a ValueError, a KeyError, a RecursionError...) is a crash: it would
reach the user as "internal error". Every example also runs under a time limit (SIGALRM), so a hang
fails the test instead of stalling CI, and a hypothesis deadline catches the merely slow ones.
A spec that loads must also survive the round trip through spec.yaml (what `fit --resume` reads back).
"""
from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnntrain.errors import CnntrainError, SpecError
from cnntrain.spec import DEFAULTS, load_spec, spec_from_text

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CONFIG_TEXTS = [p.read_text(encoding="utf-8") for p in sorted(CONFIGS.rglob("*.yaml"))]
CONFIG_TREES = [yaml.safe_load(text) for text in CONFIG_TEXTS]
MAX_MESSAGE = 2000     # an error message is read by a person: bounded whatever the input
# The counts below are the full size (2,700 spec-level and 100 builder examples, plus the explicit
# ones); CI runs half of them, to keep the suite under 4 minutes, and the slow job's
# CNNTRAIN_FUZZ=10 ten times the full size.
SCALE = float(os.environ.get("CNNTRAIN_FUZZ", "0.5"))
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)   # only to write test inputs: libyaml is faster


def fuzz_settings(n, deadline_s=2.0):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=timedelta(seconds=deadline_s), derandomize=True,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so no `except Exception` in the code under test hides it."""


@contextlib.contextmanager
def time_limit(seconds):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean(exc: CnntrainError):
    text = str(exc)
    assert isinstance(exc, SpecError), f"a spec problem should be a SpecError: {exc!r}"
    assert exc.message and len(text) < MAX_MESSAGE, text[:300]
    assert exc.line is None or exc.line >= 1
    assert exc.column is None or exc.column >= 1


def check_text(text, overrides=()):
    """spec_from_text either gives a spec that survives its spec.yaml round trip, or a clean SpecError."""
    with time_limit(10):
        try:
            spec = spec_from_text(text, file="fuzz.yaml", overrides=overrides)
        except CnntrainError as exc:
            assert_clean(exc)
            return None
        saved = spec.to_yaml()
        again = spec_from_text(saved, file="spec.yaml")
        assert again.to_yaml() == saved
        return spec


# ---------------------------------------------------------------- building blocks

# Pieces of YAML syntax and values known to be awkward, to put random texts closer to the edges.
TOKENS = [
    "model:", "layers:", "fit:", "epochs:", "seed:", "data:", "compile:", "optimizer:", "name:", "augment:",
    "\n", "\n  ", "\n    - ", "- ", ": ", ", ", "Conv2D", "Dense", "Flatten", "{filters: 3}", "{units: 10}",
    "[28, 28, 1]", "&a ", "*a", "&b [*a, *a, *a]", "<<: *a", "<<: ", "? ", "---\n", "...\n", "%YAML 1.1\n",
    "%TAG !x! tag:x,2000:\n", "!x!y ", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
    "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!!pairs ", "!!str ",
    "!!null ", "!local ", "null", "~", ".nan", "-.inf", "1e400", "0x1F", "0o17", "0b101", "1_000", "1:30:00",
    "2020-99-99", "2001-12-14t21:59:43.10-05:00", "9" * 5000, ":".join(["59"] * 2500), "yes", "Off", "'", '"',
    "\\x00", "\\ud800", "|\n  ", ">-\n  ", "\t", "\x00", "\x85", "\u2028", "\ufeff", "é", "\U0001F600", "#",
    "[" * 60, "]" * 60, "{" * 60, "- " * 60,
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2 ** 80, max_value=2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "relu", "Conv2D", "mnist", "image_folder", "split", "same", "adam", "1e3", "10 epochs",
                     "yes", "null", "~", "-", "?", "*a", "!!int x", "a: b", "\u202e", "x" * 300]),
)
KEYS = st.one_of(
    st.sampled_from(sorted({k for section in DEFAULTS.values() if isinstance(section, dict) for k in section}
                           | set(DEFAULTS) | {"Conv2D", "Dense", "Adam", "filters", "units", "learning_rate"})),
    st.text(max_size=12), st.integers(min_value=-5, max_value=5), st.booleans(),
)


def trees(leaves=SCALARS):
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(KEYS, inner, max_size=4)),
                        max_leaves=24)


def dump(value, unicode=True, flow=None) -> str:
    return yaml.dump(value, Dumper=DUMPER, sort_keys=False, allow_unicode=unicode, default_flow_style=flow)


def nodes(tree, path=()):
    """Every path in a loaded YAML tree, the root included."""
    yield path
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from nodes(value, path + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from nodes(value, path + (i,))


def replace(tree, path, value):
    if not path:
        return value
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return tree


def delete(tree, path):
    if not path:
        return None
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return tree


HUGE = [2 ** 31, 2 ** 32, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30, 10 ** 4000, -10 ** 4000, 1e308, -1e308,
        float("inf"), float("-inf"), float("nan"), 5e-324, -1, 0]


@st.composite
def mutated_configs(draw):
    """A real config, loaded, changed 1-3 times at random places, dumped again."""
    tree = copy.deepcopy(draw(st.sampled_from(CONFIG_TREES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(nodes(tree))))
        op = draw(st.sampled_from(["delete", "retype", "nest", "huge", "unicode", "rename", "add", "empty"]))
        if op == "delete":
            tree = delete(tree, path)
        elif op == "retype":
            tree = replace(tree, path, draw(trees()))
        elif op == "nest":
            value = _get(tree, path)
            for _ in range(draw(st.integers(1, 120))):
                value = [value] if draw(st.booleans()) else {"k": value}
            tree = replace(tree, path, value)
        elif op == "huge":
            tree = replace(tree, path, draw(st.sampled_from(HUGE)))
        elif op == "unicode":
            tree = replace(tree, path, draw(st.text(min_size=1, max_size=30)))
        elif op == "rename" and path and isinstance(_get(tree, path[:-1]), dict):
            parent = _get(tree, path[:-1])
            key = path[-1]
            new = draw(st.one_of(st.just(str(key).upper()), st.just(str(key)[:-1]), KEYS))
            parent[new] = parent.pop(key)
        elif op == "add" and isinstance(_get(tree, path), dict):
            _get(tree, path)[draw(KEYS)] = draw(trees())
        elif op == "empty":
            tree = replace(tree, path, draw(st.sampled_from([None, "", [], {}])))
    return dump(tree, unicode=draw(st.booleans()), flow=draw(st.sampled_from([None, False, True])))


def _get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


@st.composite
def text_mutations(draw):
    """A real config's text, changed 1-4 times line- or character-wise: the mistakes of an editor."""
    lines = draw(st.sampled_from(CONFIG_TEXTS)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "tab", "insert", "token",
                                   "truncate", "char"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":            # duplicate keys, or a layer listed twice
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 6)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip(" ")
        elif op == "tab":
            lines[i] = "\t" + lines[i]
        elif op in ("insert", "token", "char"):
            at = draw(st.integers(0, len(lines[i])))
            piece = draw(st.text(min_size=1, max_size=4)) if op != "token" else draw(st.sampled_from(TOKENS))
            cut = at + (1 if op == "char" else 0)
            lines[i] = lines[i][:at] + piece + lines[i][cut:]
        elif op == "truncate":
            at = draw(st.integers(0, len(lines[i])))
            lines = lines[:i] + [lines[i][:at]]
    return "".join(lines)


TINY = """\
name: tiny
model:
  input_shape: [28, 28, 1]
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, strides: 2}
    - Activation: relu
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""
KNOWN_PATHS = sorted([k for k, v in DEFAULTS.items() if not isinstance(v, dict)]
                     + [f"{k}.{s}" for k, v in DEFAULTS.items() if isinstance(v, dict) for s in v]
                     + ["model.layers.0", "model.layers.0.Conv2D.filters", "model.layers.9", "augment.0",
                        "compile.optimizer.Adam.learning_rate", "fit.callbacks.0.EarlyStopping", "data.x.y.z"])


# ---------------------------------------------------------------- spec level

@fuzz_settings(800)
@given(st.text(max_size=200))
@example("")
@example("   \n# only a comment\n")
@example("\x00")
@example("\ufeffmodel: {layers: [Flatten]}")
@example("[" * 5000)
@example("- " * 5000)
@example("a: " * 3000)
def test_random_text(text):
    check_text(text)


@fuzz_settings(800)
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.characters(codec="utf-8")), max_size=40).map("".join))
# The crashes this fuzzing found (each was a ValueError, KeyError or AttributeError, or a hang):
@example(TINY + "seed: !!int abc\n")
@example(TINY + "seed: !!float abc\n")
@example(TINY + "seed: !!bool abc\n")
@example(TINY + "seed: !!timestamp abc\n")
@example(TINY + "seed: 2020-99-99\n")
@example(TINY + "seed: " + "9" * 5000 + "\n")
@example(TINY + "name: " + ":".join(["59"] * 2500) + "\n")
@example(TINY + "!!int abc: 1\n")
@example(TINY + "? [&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a], "
                "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c], "
                "&e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d], &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e], "
                "&g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f], [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]]\n: 1\n")
@example(TINY + "seed: 4294967296\n")
@example(TINY + "compile: {optimizer: {Adam: {learning_rate: {a: 1, b: 2}}}}\n")
@example(TINY + "compile: {optimizer: {Adam: {learning_rate: {}}}}\n")
@example(TINY + "compile: {optimizer: {Adam: {learning_rate: {CosineDecay: 5}}}}\n")
@example(TINY + "compile: {optimizer: {Adam: {learning_rate: {5: {decay_steps: 1}}}}}\n")
@example(TINY + "name: " + "x" * 100_000 + "\n")
@example(TINY + "x" * 100_000 + ": 1\n")
@example(TINY + "seed: &a [*a]\n")
@example(TINY + "data: &a {<<: *a}\n")
@example("model:\n  layers:\n    - Conv2D: &c {filters: 8, kernel_size: 3}\n    - Conv2D: {<<: *c, filters: 16}\n"
         "    - Flatten\n    - Dense: {units: 10}\n")
@example(TINY + "<<: {seed: 3}\n")
@example(TINY + "<<: 3\n")
@example(TINY + "seed: !!python/object/apply:os.system ['echo hacked']\n")
def test_yaml_like_text(text):
    check_text(text)


@fuzz_settings(150)
@given(st.dictionaries(st.one_of(st.sampled_from(list(DEFAULTS)), KEYS), trees(), max_size=8),
       st.booleans(), st.sampled_from([None, False, True]))
def test_random_structures(tree, unicode, flow):
    check_text(dump(tree, unicode, flow))


@fuzz_settings(250)
@given(mutated_configs())
def test_mutated_configs(text):
    check_text(text)


@fuzz_settings(300)
@given(text_mutations())
def test_mutated_config_texts(text):
    check_text(text)


@fuzz_settings(150)
@given(st.one_of(st.binary(max_size=300),
                 st.tuples(st.sampled_from(CONFIG_TEXTS), st.binary(min_size=1, max_size=8), st.integers(0, 2000))
                 .map(lambda t: t[0].encode()[:t[2]] + t[1] + t[0].encode()[t[2]:]),
                 st.sampled_from([b"", b"\xff\xfe" + "model: x".encode("utf-16-le"), b"\x00" * 50,
                                  b"\xef\xbb\xbfmodel: {layers: [Flatten]}\n", b"\x80abc"])))
def test_binary_files(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(data)
        with time_limit(10):
            try:
                load_spec(path)
            except CnntrainError as exc:
                assert_clean(exc)


@fuzz_settings(250)
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KNOWN_PATHS), st.text(max_size=15)),
                          st.one_of(st.sampled_from(TOKENS), st.text(max_size=30), trees().map(dump))),
                min_size=1, max_size=3),
       st.one_of(st.none(), st.text(max_size=20)))
@example([("seed", "9" * 5000)], None)
@example([("seed", "!!int x")], None)
@example([("seed", "2020-99-99")], None)
@example([("seed", "!!python/object/apply:os.system ['true']")], None)
@example([("seed", "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,"
                   "*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,"
                   "*e,*e,*e,*e,*e,*e,*e], &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f], [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]]")],
         None)
@example([("model.layers.0.Conv2D", "[" * 3000)], None)
def test_overrides(pairs, raw):
    overrides = [f"{key}={value}" for key, value in pairs] + ([raw] if raw is not None else [])
    check_text(TINY, overrides)


# ---------------------------------------------------------------- builder level

# Argument values for the builder: small numbers only where Keras would allocate with them
# (units, filters...), so a fuzzed model never needs gigabytes; the huge ones go elsewhere.
ALLOCATING = {"units", "filters", "kernel_size", "size", "depth_multiplier", "input_dim", "output_dim", "num_heads",
              "key_dim", "value_dim", "max_tokens", "num_tokens", "num_bins", "cropping", "padding", "height",
              "width", "target_shape", "dims", "output_sequence_length", "sequence_length", "n", "groups",
              "pool_size", "vocabulary_size", "max_value", "repeats", "units_", "output_mode"}
SMALL = st.one_of(st.integers(-2, 6), st.sampled_from([0.0, 0.5, -0.5, 1.5, float("nan"), float("inf")]),
                  st.sampled_from(["same", "valid", "causal", "relu", "softmax", "linear", "", "x", "glorot_uniform",
                                   "l2", "channels_first", "channels_last", "constant", "reflect", "horizontal",
                                   "10 epochs"]),
                  st.none(), st.booleans())
BIG = st.sampled_from([2 ** 31, 2 ** 63 - 1, 10 ** 20, -10 ** 20, 1e308, -1e308])
ARG_VALUES = st.one_of(SMALL, st.lists(SMALL, max_size=3),
                       st.fixed_dictionaries({}, optional={"L2": st.fixed_dictionaries({"l2": SMALL}),
                                                           "Constant": st.none(), "Bogus": st.none()}),
                       st.dictionaries(st.text(max_size=4), SMALL, max_size=2))
BUILDER_SPEC = TINY + """\
augment:
  - RandomFlip: {mode: horizontal}
  - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  callbacks:
    - EarlyStopping: {patience: 2}
"""


def _keras_names():
    from cnntrain.backend import keras

    def public(module, base):
        return sorted(n for n in dir(module) if n[:1].isupper() and isinstance(getattr(module, n), type)
                      and issubclass(getattr(module, n), base))
    return {
        "layers": public(keras.layers, keras.layers.Layer),
        "optimizers": public(keras.optimizers, keras.optimizers.Optimizer),
        "schedules": public(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "losses": sorted(n for n in dir(keras.losses) if not n.startswith("_")),
        "metrics": sorted(n for n in dir(keras.metrics) if not n.startswith("_")),
        "callbacks": public(keras.callbacks, keras.callbacks.Callback),
    }


# Layers that read files or hold big tables whatever their arguments: left to the spec's author.
SKIP_LAYERS = {"TFSMLayer", "Lambda", "InputLayer", "TextVectorization"}

# Crashes of cnntrain/model/build.py this fuzzing found (exceptions other than CnntrainError), fixed
# since; test_builder_crashes_found_by_fuzzing keeps them fixed.
BUILDER_CRASHES_FOUND = {
    # keras.optimizers.get() raises KeyError for these names; build._by_name catches only
    # ValueError and TypeError.
    "optimizer: lossscaleoptimizer": "compile: {optimizer: lossscaleoptimizer}",
    "optimizer: LossScaleOptimizer": "compile: {optimizer: LossScaleOptimizer}",
    "optimizer: multioptimizer": "compile: {optimizer: multioptimizer}",
    "optimizer: optimizermap": "compile: {optimizer: optimizermap}",
    # keras.layers.Layer itself is accepted as a layer; the Sequential model then has no output
    # shape and build.build_model/check_output raise AttributeError.
    "layer: Layer": "augment: []\nfit: {epochs: 1}\nmodel:\n  input_shape: [8, 8, 1]\n  layers: [Flatten, Layer, "
                    "{Dense: {units: 10}}]\n",
}


@st.composite
def builder_specs(draw, names):
    tree = yaml.safe_load(BUILDER_SPEC)

    def args_for(values, cls_name, module):
        import inspect

        cls = getattr(module, cls_name, None)
        try:
            params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
        except (TypeError, ValueError):
            params = []
        key = draw(st.one_of(st.sampled_from(params), st.text(max_size=6)) if params else st.text(max_size=6))
        value = draw(ARG_VALUES if key in ALLOCATING else st.one_of(ARG_VALUES, BIG))
        values = dict(values) if isinstance(values, dict) else {}
        values[key] = value
        return values

    from cnntrain.backend import keras

    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["layer", "new_layer", "augment", "optimizer", "optimizer_name", "schedule",
                                      "loss", "loss_class", "metric", "metric_class", "callback", "input_shape"]))
        if where in ("layer", "augment"):
            items = tree["model"]["layers"] if where == "layer" else tree["augment"]
            i = draw(st.integers(0, len(items) - 1))
            item = items[i]
            name, args = (item, None) if isinstance(item, str) else next(iter(item.items()))
            if draw(st.integers(0, 4)) == 0:
                args = draw(SMALL)                      # `Name: scalar`, or a list of positional arguments
            else:
                args = args_for(args, name, keras.layers)
            items[i] = {name: args}
        elif where == "new_layer":
            name = draw(st.sampled_from([n for n in names["layers"] if n not in SKIP_LAYERS | {"Layer"}]))
            kind = draw(st.sampled_from(["none", "scalar", "list", "dict", "dict"]))
            args = {"none": lambda: None, "scalar": lambda: draw(SMALL),
                    "list": lambda: draw(st.lists(SMALL, max_size=2)),
                    "dict": lambda: args_for({}, name, keras.layers)}[kind]()  # noqa: B023 - called at once
            items = tree["model"]["layers"]
            items.insert(draw(st.integers(0, len(items))), {name: args} if args is not None else name)
        elif where == "optimizer":
            name = draw(st.sampled_from(names["optimizers"]))     # the {Class: {args}} form does not crash
            tree["compile"]["optimizer"] = {name: args_for({}, name, keras.optimizers)}
        elif where == "optimizer_name":
            tree["compile"]["optimizer"] = draw(st.one_of(
                st.sampled_from(names["optimizers"]).map(str.lower), st.text(min_size=1, max_size=8)))
        elif where == "loss_class":
            name = draw(st.sampled_from([n for n in names["losses"] if n[:1].isupper()]))
            tree["compile"]["loss"] = {name: args_for({}, name, keras.losses)}
            tree["compile"]["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.2]))
        elif where == "metric_class":
            name = draw(st.sampled_from([n for n in names["metrics"] if n[:1].isupper()]))
            tree["compile"]["metrics"].append({name: args_for({}, name, keras.metrics)})
        elif where == "schedule":
            name = draw(st.sampled_from(names["schedules"]))
            tree["compile"]["optimizer"] = {"Adam": {"learning_rate": {name: args_for({}, name,
                                                                                  keras.optimizers.schedules)}}}
        elif where == "loss":
            tree["compile"]["loss"] = draw(st.one_of(st.sampled_from(names["losses"]), st.text(max_size=8)))
            tree["compile"]["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1]))
        elif where == "metric":
            tree["compile"]["metrics"].append(draw(st.one_of(st.sampled_from(names["metrics"]),
                                                             st.text(min_size=1, max_size=8))))
        elif where == "callback":
            name = draw(st.sampled_from(["EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN", "History",
                                         "LearningRateScheduler", "RemoteMonitor", "SwapEMAWeights"]))
            tree["fit"]["callbacks"].append({name: args_for({}, name, keras.callbacks)})
        elif where == "input_shape":
            tree["model"]["input_shape"] = [draw(st.integers(1, 40)), draw(st.integers(1, 40)),
                                            draw(st.integers(1, 4))]
    return dump(tree)


def build_everything(spec):
    from cnntrain.model import build

    return build.build_all(spec)


@pytest.fixture(scope="module")
def keras_names():
    return _keras_names()


def test_builder_mutations(keras_names):
    from cnntrain.backend import keras

    built = []

    keras.backend.clear_session()

    @fuzz_settings(100, deadline_s=20)
    @given(builder_specs(keras_names))
    def run(text):
        spec = check_text(text)       # the spec level first: only specs it accepts reach the builder
        if spec is None:
            return
        if len(built) % 20 == 19:
            keras.backend.clear_session()
        with time_limit(30):
            try:
                build_everything(spec)
            except CnntrainError as exc:
                assert_clean(exc)
        built.append(text)

    run()
    assert len(built) >= 50 * SCALE   # most of the 100 x SCALE mutations must reach Keras, or this proves little


# Layer is not one of keras.layers' layer classes that spec.keras_names reads from Keras' files: the
# spec is refused as it is read, before the builder sees it.
REFUSED_WHEN_READ = {"layer: Layer"}


@pytest.mark.parametrize("name", sorted(BUILDER_CRASHES_FOUND))
def test_builder_crashes_found_by_fuzzing(name):
    text = BUILDER_CRASHES_FOUND[name]
    if not text.startswith("augment"):
        text = TINY + text + "\n"
    spec = check_text(text)
    if name in REFUSED_WHEN_READ:
        assert spec is None   # refused cleanly by check_text, before the builder
        return
    assert spec is not None
    try:
        build_everything(spec)
    except CnntrainError as exc:
        assert_clean(exc)


# ---------------------------------------------------------------- the crashes found, with their messages

FOUND = [
    # (what, spec text after TINY, the exact message) -- each was a crash (or a hang) before spec.py's fixes
    ("!!int tag", "seed: !!int abc\n",
     "fuzz.yaml:9:7: 'abc' is not a valid YAML int (invalid literal for int() with base 10: 'abc')\n"
     "  hint: quote it to keep it as text"),
    ("!!bool tag", "seed: !!bool abc\n",
     "fuzz.yaml:9:7: 'abc' is not a valid YAML bool (YAML 1.2 booleans are true and false, received: 'abc')\n"
     "  hint: quote it to keep it as text"),
    ("!!timestamp tag", "seed: !!timestamp abc\n",
     "fuzz.yaml:9:7: 'abc' is not a valid YAML timestamp\n  hint: quote it to keep it as text"),
    ("impossible date", "seed: 2020-99-99\n",   # YAML 1.2 has no implicit timestamps: a string
     "fuzz.yaml:9:7: 'seed' must be an integer in [0, 4294967295], received: '2020-99-99' (str)"),
    ("5,000 digits", "seed: " + "9" * 5000 + "\n",
     "fuzz.yaml:9:7: '" + "9" * 57 + "...' is not a valid YAML int (Exceeds the limit (4300 digits) for "
     "integer string conversion)\n  hint: quote it to keep it as text"),
    ("huge hex number", "seed: !!int 0x" + "f" * 2500 + "\n",   # YAML 1.2 has no sexagesimal; hex is as long
     "fuzz.yaml:9:7: number too large: integers in a spec are at most 2**63 - 1\n"
     "  hint: no setting needs more; quote it if it is meant as text"),
    ("tag on a key", "!!int abc: 1\n",
     "fuzz.yaml:9:1: 'abc' is not a valid YAML int (invalid literal for int() with base 10: 'abc')\n"
     "  hint: quote it to keep it as text"),
    ("aliases in a key", "? [&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]]\n: 1\n",
     "fuzz.yaml:9:3: a mapping key must be a plain name, received: a list\n"
     "  hint: keys are names such as 'fit' or 'filters'; check for a stray '?' or brackets"),
    ("NUL character", "seed: \x00\n",
     "fuzz.yaml:9:7: the spec holds a character #x0000, which YAML does not allow (special characters are not "
     "allowed)\n  hint: remove control characters; save the spec as plain UTF-8 text"),
    ("seed beyond NumPy's range", "seed: 4294967296\n",
     "fuzz.yaml:9:7: 'seed' must be an integer in [0, 4294967295], received: 4294967296 (int)"),
    ("schedule with two names", "compile: {optimizer: {Adam: {learning_rate: {a: 1, b: 2}}}}\n",
     "fuzz.yaml:9:45: 'compile.optimizer.Adam.learning_rate' must be a name or {ClassName: {arguments}}, received: "
     "{'a': 1, 'b': 2} (dict)\n  hint: e.g. adam, or {Adam: {learning_rate: 0.001}}"),
    ("'[' 2,000 deep", "seed: " + "[" * 2000 + "\n",
     "fuzz.yaml: the spec is nested too deeply\n  hint: a spec needs at most 50 levels of '[' and '{'"),
]


@pytest.mark.parametrize("what,text,message", FOUND, ids=[f[0] for f in FOUND])
def test_crashes_found_by_fuzzing(what, text, message):
    with time_limit(10), pytest.raises(SpecError) as info:
        spec_from_text(TINY + text, file="fuzz.yaml")
    assert str(info.value) == message


def test_merge_keys_override_and_stay_bounded():
    """`<<: *anchor` merges keys that the mapping may override (was: 'duplicate key'), and a merge-key
    bomb (each level merging the one below ten times: 2.7 s for 485 bytes before, 5x more a level)
    is refused within the MAX_NODES budget."""
    spec = spec_from_text("model:\n  layers:\n    - Conv2D: &c {filters: 8, kernel_size: 3}\n"
                          "    - Conv2D: {<<: *c, filters: 16}\n    - Flatten\n")
    assert spec["model"]["layers"][1] == {"Conv2D": {"filters": 16, "kernel_size": 3}}
    levels = ["&l0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    levels += [f"&l{j} {{<<: [" + ", ".join([f"*l{j - 1}"] * 10) + "]}" for j in range(1, 12)]
    started = time.perf_counter()
    with time_limit(10), pytest.raises(SpecError) as info:
        spec_from_text("model: {layers: [Flatten]}\naugment: [{<<: [" + ", ".join(levels) + "]}]\n")
    assert "nested too deeply or too large" in info.value.message
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_the_fuzzers_at_ten_times_the_size():
    """Every fuzzer above with ten times as many examples (about 27,000), in a fresh process: the run
    docs/reliability.md's table quotes. About 15 minutes on 2 cores; `python -m pytest -m slow`."""
    env = {**os.environ, "CNNTRAIN_FUZZ": "10"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", __file__],
                          env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:]


# ---------------------------------------------------------------- through the command line

# The same mutations, run as a user runs them: `cnntrain check` of mutated specs (the spec level, the
# builder and the preflight step), and damaged run folders given to `runs`, `fit --resume` and
# `predict`. None may end in "internal error" (exit 70) or show a traceback.
CLI_SPECS = 12
CLI_RUN_FOLDERS = 40


def assert_no_internal_error(result, what):
    text = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (what, repr(result.exception))
    assert result.exit_code in (0, 1), (what, text[-2000:])
    assert "internal error" not in text and "Traceback" not in text, (what, text[-2000:])


# What the issue found ending in "internal error" (each now a SpecError: tests/test_preflight.py).
CLI_SPEC_EXAMPLES = [
    TINY + "compile: {loss: binary_crossentropy}\n",
    TINY + "compile: {metrics: [AUC]}\n",
    TINY + "compile: {metrics: [{TopKCategoricalAccuracy: {k: 3}}]}\n",
    TINY + "augment: [{RandomCrop: {height: 40, width: 40}}]\n",
    TINY + "augment: [{Resizing: {height: 20, width: 20}}]\n",
    TINY + "compile: {optimizer: {Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.1, "
           "decay_steps: 100000000000000000000 epochs}}}}}\n",
    TINY + "fit: {monitor: val_acuracy}\n",
]


def test_mutated_specs_through_the_cli(keras_names, tmp_path):
    from helpers.cli import run_cli

    spec = tmp_path / "fuzz.yaml"
    tried = []

    @fuzz_settings(CLI_SPECS, deadline_s=60)
    @given(builder_specs(keras_names))
    def run(text):
        spec.write_text(text, encoding="utf-8")
        with time_limit(60):
            assert_no_internal_error(run_cli("check", spec), text)
        tried.append(text)

    for text in CLI_SPEC_EXAMPLES:
        spec.write_text(text, encoding="utf-8")
        result = run_cli("check", spec)
        assert_no_internal_error(result, text)
        assert result.exit_code == 1, text
    run()
    assert len(tried) >= CLI_SPECS * SCALE * 0.9


# The files a run folder holds that cnntrain reads back; "model.keras:cnntrain.json" is the member.
# A finished run's damaged copy is also compared, carded and evaluated.
READ_BACK = {"backup/state.json": ("unfinished", ["fit", "--resume"]), "metrics.json": ("finished", ["runs"]),
             "eval.json": ("finished", ["runs"]), "env.json": ("finished", ["runs"]),
             "model.keras:cnntrain.json": ("finished", ["predict"])}
GARBAGE = [b"", b"{", b"[" * 100_000, b"\xff\xfe\x00", b"null", b"NaN", b'{"epochs_done": 1e999}', b"9" * 5000]


@st.composite
def run_folder_mutations(draw, contents):
    name = draw(st.sampled_from(sorted(READ_BACK)))
    tree = copy.deepcopy(contents[name])
    op = draw(st.sampled_from(["delete", "retype", "huge", "empty", "garbage"]))
    if op == "garbage":
        return name, draw(st.sampled_from(GARBAGE))
    path = draw(st.sampled_from(list(nodes(tree))))
    if op == "delete":
        tree = delete(tree, path)
    elif op == "retype":
        tree = replace(tree, path, draw(trees()))
    elif op == "huge":
        tree = replace(tree, path, draw(st.sampled_from(HUGE)))
    else:
        tree = replace(tree, path, draw(st.sampled_from([None, "", [], {}])))
    return name, _json_bytes(tree)


def _json_bytes(tree) -> bytes:
    import json

    try:
        return json.dumps(tree).encode()
    except (TypeError, ValueError):   # keys that JSON cannot hold: the file as a broken writer leaves it
        return repr(tree).encode()[:10_000]


def _read_back(run, name):
    import json
    import zipfile

    if name.startswith("model.keras:"):
        with zipfile.ZipFile(run / "model.keras") as archive:
            return json.loads(archive.read("cnntrain.json"))
    return json.loads((run / name).read_text())


def _write_back(run, name, data: bytes):
    import zipfile

    if not name.startswith("model.keras:"):
        (run / name).write_bytes(data)
        return
    with zipfile.ZipFile(run / "model.keras") as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    members["cnntrain.json"] = data
    with zipfile.ZipFile(run / "model.keras", "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory):
    from helpers.runs import make_runs

    return make_runs(tmp_path_factory.mktemp("fuzzed-runs"))


def test_damaged_run_folders_through_the_cli(made_runs, tmp_path):
    import shutil

    from PIL import Image

    from helpers.cli import run_cli

    contents = {name: _read_back(made_runs / which, name) for name, (which, _) in READ_BACK.items()}
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    tried = []

    @fuzz_settings(CLI_RUN_FOLDERS, deadline_s=60)
    @given(run_folder_mutations(contents))
    def run(mutation):
        name, data = mutation
        which, command = READ_BACK[name]
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        run_dir = root / which
        shutil.copytree(made_runs / which, run_dir)
        _write_back(run_dir, name, data)
        with time_limit(60):
            assert_no_internal_error(run_cli("runs", "--runs", root, "--json"), mutation)
            if command == ["fit", "--resume"]:
                assert_no_internal_error(run_cli("fit", "--resume", run_dir, "--data-dir", made_runs / "data",
                                                 "--quiet"), mutation)
            elif command == ["predict"]:
                assert_no_internal_error(run_cli("predict", image, "--model", run_dir / "model.keras"), mutation)
            if which == "finished":
                assert_no_internal_error(run_cli("runs", "--compare", run_dir, made_runs / "finished", "--json",
                                                 "--out", root / "compare.png"), mutation)
                assert_no_internal_error(run_cli("card", run_dir, "--data-dir", made_runs / "data"), mutation)
                assert_no_internal_error(run_cli("evaluate", run_dir, "--data-dir", made_runs / "data"), mutation)
        shutil.rmtree(root)
        tried.append(mutation)

    run()
    assert len(tried) >= CLI_RUN_FOLDERS * SCALE * 0.9
