"""Training-time augmentation: Keras preprocessing layers, with the geometric ones fused.

Chaining RandomRotation, RandomTranslation, RandomFlip... as Keras layers resamples
the whole batch once per layer. Every one of those layers is a per-image 3x3
projective matrix mapping output pixel coordinates to input coordinates, so a run of
them composes into ONE matrix per image and ONE `ImageProjectiveTransformV3` call per
batch: about twice the throughput of the chained layers on CPU for the chapter's
rotation + shift + flip (benchmarks/input_pipeline.py), and less blur (bilinear
sampling happens once, not once per layer; the fill is applied once, at the end).

Each fused layer samples its parameters per image with the distributions of its
Keras source (keras/src/layers/preprocessing/image_preprocessing/random_*.py) and
reads its factors, fill_mode, interpolation and fill_value from the constructed
layer, so spec arguments mean what Keras' documentation says they mean. What cannot
be fused (RandomContrast, RandomCrop, any other layer, a channels_first layer, a
subclass that may behave differently) runs as the Keras layer itself.

Randomness comes from a per-batch stateless seed (see build_augmenter), for fused
runs and for the Keras image layers we call ourselves, so an epoch is reproducible for
a seed; a layer's own `seed` argument is not used. Layers that override `call`
(RandAugment, RandomColorJitter...) or are not image layers keep Keras' randomness.

Set CNNTRAIN_FUSE_AUGMENT=0 to chain the Keras layers exactly as they are instead.
"""
from __future__ import annotations

import math
import os
from typing import Callable

from cnntrain.backend import keras, tf

try:  # Private paths: used only to seed the layers we do not fuse.
    from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (
        BaseImagePreprocessingLayer as _BaseImageLayer,
    )
    from keras.src.random.seed_generator import SeedGenerator as _SeedGenerator
except ImportError:  # pragma: no cover - a Keras that moved them
    _BaseImageLayer = None
    _SeedGenerator = None

Augmenter = Callable[..., tf.Tensor]


def fusion_enabled() -> bool:
    return os.environ.get("CNNTRAIN_FUSE_AUGMENT", "1").strip().lower() not in ("0", "false", "no", "off")


# --- per-layer transforms ------------------------------------------------------------
# A fused run costs one ImageProjectiveTransformV3 call plus the matrix arithmetic, and
# on small images that arithmetic is not free: each TF op costs microseconds per batch.
# So all of a run's random numbers come from ONE uniform draw, and matrices are kept as
# six affine entries (a0 a1 a2 / b0 b1 b2, mapping output (x, y) to input coordinates
# as ImageProjectiveTransformV3 and Keras do) that are Python floats where constant,
# so composing with a translation or a flip costs a few ops, not a 3x3 matmul.
#
# Each layer has `ranges(layer, h, w)`: the (a, b) of each random value it needs,
# drawn as a + (b - a) * u with u ~ U[0, 1) per image (Keras' own formula), and
# `affine(layer, values, h, w)`: its six entries from those values.

def _is(v, c) -> bool:
    return isinstance(v, float) and v == c


def _mul(a, b):
    if _is(a, 0.0) or _is(b, 0.0):
        return 0.0
    if _is(a, 1.0):
        return b
    if _is(b, 1.0):
        return a
    return a * b


def _add(*terms):
    terms = [t for t in terms if not _is(t, 0.0)]
    if not terms:
        return 0.0
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _compose(p, q):
    """Entries of P @ Q: Q's layer runs after P's, so out(x) = in(P Q x)."""
    p0, p1, p2, p3, p4, p5 = p
    q0, q1, q2, q3, q4, q5 = q
    return (_add(_mul(p0, q0), _mul(p1, q3)), _add(_mul(p0, q1), _mul(p1, q4)),
            _add(_mul(p0, q2), _mul(p1, q5), p2),
            _add(_mul(p3, q0), _mul(p4, q3)), _add(_mul(p3, q1), _mul(p4, q4)),
            _add(_mul(p3, q2), _mul(p4, q5), p5))


class _Rotation:
    # Keras: degrees in [lower*360, upper*360] (a fraction of a full turn), positive =
    # counter-clockwise on screen, about the centre ((w-1)/2, (h-1)/2).
    @staticmethod
    def ranges(layer, h, w):
        lower, upper = (float(f) for f in layer.factor)
        return [(math.radians(lower * 360.0), math.radians(upper * 360.0))]

    @staticmethod
    def affine(layer, values, h, w):
        cos, sin = tf.cos(values[0]), tf.sin(values[0])
        cx, cy = (w - 1.0) * 0.5, (h - 1.0) * 0.5
        return (cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)


class _Translation:
    # Keras: a fraction of the height / width; the content moves by +t, so the
    # matrix holds -t, drawn directly as a + (b - a) u with a = -lower * side.
    @staticmethod
    def ranges(layer, h, w):
        return [(-float(layer.height_lower) * h, -float(layer.height_upper) * h),
                (-float(layer.width_lower) * w, -float(layer.width_upper) * w)]

    @staticmethod
    def affine(layer, values, h, w):
        minus_ty, minus_tx = values
        return (1.0, 0.0, minus_tx, 0.0, 1.0, minus_ty)


class _Zoom:
    # Keras samples 1 + factor as the input/output scale about the centre: a
    # positive factor zooms OUT. No width_factor keeps the aspect ratio.
    @staticmethod
    def ranges(layer, h, w):
        out = [(1.0 + float(layer.height_lower), 1.0 + float(layer.height_upper))]
        if layer.width_factor is not None:
            out.append((1.0 + float(layer.width_lower), 1.0 + float(layer.width_upper)))
        return out

    @staticmethod
    def affine(layer, values, h, w):
        zy = values[0]
        zx = values[1] if len(values) > 1 else zy
        cx, cy = (w - 1.0) * 0.5, (h - 1.0) * 0.5
        return (zx, 0.0, cx - cx * zx, 0.0, zy, cy - cy * zy)


class _Shear:
    # Keras: one random sign per image for both shears, and the shear is about the
    # origin (top-left corner), not the centre.
    @staticmethod
    def ranges(layer, h, w):
        return [(0.0, 1.0), (float(layer.y_factor[0]), float(layer.y_factor[1])),
                (float(layer.x_factor[0]), float(layer.x_factor[1]))]

    @staticmethod
    def affine(layer, values, h, w):
        sign = tf.where(values[0] > 0.5, -1.0, 1.0)
        return (1.0, values[2] * sign, 0.0, values[1] * sign, 1.0, 0.0)


class _Flip:
    # Keras draws ONE coin per image; "horizontal_and_vertical" flips both axes or
    # neither (a 180 degree turn), not each axis independently. x_in = (w-1) - x_out:
    # pixel centres land on pixel centres, so a flip never interpolates or fills.
    @staticmethod
    def ranges(layer, h, w):
        return [(0.0, 1.0)]

    @staticmethod
    def affine(layer, values, h, w):
        flip = values[0] <= 0.5
        sign = tf.where(flip, -1.0, 1.0)
        entries = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        if layer.mode in ("horizontal", "horizontal_and_vertical"):
            entries[0], entries[2] = sign, tf.where(flip, w - 1.0, 0.0)
        if layer.mode in ("vertical", "horizontal_and_vertical"):
            entries[4], entries[5] = sign, tf.where(flip, h - 1.0, 0.0)
        return tuple(entries)


_GEOMETRIC = {
    keras.layers.RandomRotation: _Rotation,
    keras.layers.RandomTranslation: _Translation,
    keras.layers.RandomZoom: _Zoom,
    keras.layers.RandomShear: _Shear,
    keras.layers.RandomFlip: _Flip,
}


def _sampling_key(layer) -> tuple | None:
    """How a layer samples its input; None for a flip, which fits any run."""
    if type(layer) is keras.layers.RandomFlip:
        return None
    return (layer.fill_mode, layer.interpolation, float(layer.fill_value))


def _fusable(layer) -> bool:
    # Exact type: a subclass may override how it transforms.
    if type(layer) not in _GEOMETRIC:
        return False
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if type(layer) is keras.layers.RandomFlip:
        return layer.mode in ("horizontal", "vertical", "horizontal_and_vertical")
    return True


class _FusedGeometry:
    """A run of consecutive geometric layers that sample the input the same way."""

    def __init__(self, layers: list):
        self.layers = layers
        keys = [k for k in map(_sampling_key, layers) if k is not None]
        # Only flips: exact at integer coordinates, so nearest sampling is lossless.
        self.fill_mode, self.interpolation, self.fill_value = keys[0] if keys else ("reflect", "nearest", 0.0)

    def __call__(self, images, seed):
        shape = tf.shape(images)
        # Static sizes stay Python floats, so the size arithmetic folds away.
        h = float(images.shape[1]) if images.shape[1] is not None else tf.cast(shape[1], tf.float32)
        w = float(images.shape[2]) if images.shape[2] is not None else tf.cast(shape[2], tf.float32)
        kinds = [_GEOMETRIC[type(layer)] for layer in self.layers]
        ranges = [kind.ranges(layer, h, w) for kind, layer in zip(kinds, self.layers)]
        flat = [r for rs in ranges for r in rs]
        u = tf.random.stateless_uniform([shape[0], len(flat)], seed=seed, dtype=tf.float32)
        low = tf.cast(tf.stack([a for a, _ in flat]), tf.float32)
        span = tf.cast(tf.stack([b - a for a, b in flat]), tf.float32)
        values = tf.unstack(u * span + low, num=len(flat), axis=1)
        matrix = _IDENTITY
        for kind, layer, rs in zip(kinds, self.layers, ranges):
            mine, values = values[:len(rs)], values[len(rs):]
            matrix = _compose(matrix, kind.affine(layer, mine, h, w))
        zeros = tf.zeros([shape[0]], tf.float32)
        transforms = tf.stack([e + zeros if isinstance(e, float) else e for e in matrix]
                              + [zeros, zeros], axis=1)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=shape[1:3],
            fill_value=tf.constant(self.fill_value, tf.float32),
            interpolation=self.interpolation.upper(), fill_mode=self.fill_mode.upper())
        return tf.ensure_shape(out, images.shape)

    def __repr__(self):
        names = "+".join(type(layer).__name__ for layer in self.layers)
        return f"fused({names}; {self.fill_mode}, {self.interpolation})"


if _SeedGenerator is not None:
    class TensorSeed(_SeedGenerator):
        """Stands in for a layer's SeedGenerator so Keras' own random ops draw from
        our stateless per-batch seed (no variable, nothing shared between parallel
        map calls): reproducible for a seed, different each batch and epoch."""

        def __init__(self, seed):  # deliberately no variable
            self._seed = seed
            self._draws = 0

        def next(self, ordered=True):
            self._draws += 1
            return tf.random.experimental.stateless_fold_in(self._seed, self._draws)
else:  # pragma: no cover - a Keras that moved SeedGenerator
    TensorSeed = None


class _KerasLayer:
    """A layer we do not fuse: Keras' own code, fed our seed where Keras allows it."""

    def __init__(self, layer):
        self.layer = layer
        self.seedable = (_BaseImageLayer is not None and isinstance(layer, _BaseImageLayer)
                         and type(layer).call is _BaseImageLayer.call)

    def __call__(self, images, seed):
        layer = self.layer
        if not self.seedable:
            return layer(images, training=True)
        # What BaseImagePreprocessingLayer.call does for a batch, with our seed.
        layer.backend.set_backend("tensorflow")
        try:
            transformation = layer.get_random_transformation(images, training=True, seed=TensorSeed(seed))
            out = layer.transform_images(images, transformation=transformation, training=True)
        finally:
            layer.backend.reset()
        return tf.cast(out, tf.float32)

    def __repr__(self):
        return type(self.layer).__name__


def plan(layers: list) -> list:
    """The steps build_augmenter runs: fused geometric runs and plain Keras layers."""
    steps: list = []
    run: list = []
    key = None
    for layer in layers:
        if not _fusable(layer):
            if run:
                steps.append(_FusedGeometry(run))
                run, key = [], None
            steps.append(_KerasLayer(layer))
            continue
        k = _sampling_key(layer)
        if run and k is not None and key is not None and k != key:
            # Different fill or interpolation: fusing would change what this layer does.
            steps.append(_FusedGeometry(run))
            run, key = [], None
        run.append(layer)
        key = key if k is None else k
    if run:
        steps.append(_FusedGeometry(run))
    return steps


def build_augmenter(layers: list, seed: int) -> Augmenter:
    """A function `augment(images, seed=None)` for float32 0-255 (B, H, W, C) batches.

    `seed` (a shape-[2] integer tensor) makes a call stateless; train_dataset passes
    one per batch, drawn from the run seed. Without it, draws come from a generator
    seeded with `seed`, so a sequence of calls is still reproducible.
    """
    layers = list(layers)
    if not layers:
        return lambda images, seed=None: images
    if not fusion_enabled():
        def chained(images, seed=None):  # seed: Keras' own randomness
            for layer in layers:
                images = layer(images, training=True)
            return tf.cast(images, tf.float32)  # a mixed-precision policy may differ

        chained.steps = [_KerasLayer(layer) for layer in layers]
        return chained

    steps = plan(layers)
    generator = tf.random.Generator.from_seed(int(seed))

    def augment(images, seed=None):
        images = tf.cast(images, tf.float32)
        if seed is None:
            seed = generator.make_seeds(1)[:, 0]
        seed = tf.cast(seed, tf.int64)
        for i, step in enumerate(steps):
            images = step(images, tf.random.experimental.stateless_fold_in(seed, i))
        return images

    augment.steps = steps
    return augment
