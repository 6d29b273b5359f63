"""Label-aware mixing of training batches: Keras' MixUp and CutMix, after the image augmentations.

An augment list may end in mixes (spec.schema.MIXES), each given as a (layer, probability) pair
(a bare layer has probability 1). A mix pairs every image of a batch with another image of the
same batch and blends the two one-hot labels by how much of each image it kept, so it runs on
whole batches, with the labels, after the per-image layers. Each batch gets at most one mix: one
uniform draw u per batch picks the first mix whose cumulative probability exceeds u, or none
(timm's switch), so the probabilities sum to at most 1.

The mixes are Keras' own layers (their sampling, their arguments), driven by a stateless
per-batch seed as the image layers are (augment.TensorSeed), so a batch depends on (seed, epoch,
step) alone. One correction: Keras' CutMix weights the labels by the area of its real-valued box,
but pastes the pixels whose centres fall inside it, which can be a row or a column more or less;
here the labels follow the pixels actually pasted.
"""
from __future__ import annotations

from typing import Callable

from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError
from cnntrain.feed.augment import TensorSeed
from cnntrain.spec.schema import MIXES

Mixer = Callable[..., tuple]
_MIX_TYPES = tuple(getattr(keras.layers, name) for name in MIXES)


def is_mix(item) -> bool:
    layer = item[0] if isinstance(item, tuple) else item
    return isinstance(layer, _MIX_TYPES)


def split(items: list) -> tuple[list, list]:
    """(the image layers, the mixes as (layer, probability) pairs) of an augment list."""
    images = [item for item in items if not is_mix(item)]
    mixes = [item if isinstance(item, tuple) else (item, 1.0) for item in items if is_mix(item)]
    return images, mixes


def choice(probabilities: list, seed) -> tf.Tensor:
    """The index of the mix a batch gets (len(probabilities): none), from one stateless draw."""
    u = tf.random.stateless_uniform([], seed=tf.random.experimental.stateless_fold_in(seed, 0))
    bounds = tf.constant([sum(probabilities[:k + 1]) for k in range(len(probabilities))], tf.float32)
    return tf.reduce_sum(tf.cast(u >= bounds, tf.int32))


def _mixed(layer, images, labels, seed):
    layer.backend.set_backend("tensorflow")
    try:
        transformation = layer.get_random_transformation({"images": images, "labels": labels}, training=True,
                                                         seed=TensorSeed(seed))
        if "batch_masks" in transformation:   # CutMix: the share of pixels each image kept
            pasted = tf.reduce_mean(tf.cast(transformation["batch_masks"][..., 0], tf.float32), axis=[1, 2])
            transformation = {**transformation, "mix_weight": 1.0 - pasted}
        out = layer.transform_images(images, transformation=transformation, training=True)
        mixed = layer.transform_labels(labels, transformation=transformation, training=True)
    finally:
        layer.backend.reset()
    return tf.cast(out, tf.float32), tf.cast(mixed, tf.float32)


def build_mixer(mixes: list) -> Mixer | None:
    """`mix(images, labels, seed)` -> (images, labels) for float32 batches with one-hot labels and a
    shape-[2] integer seed; None without mixes."""
    if not mixes:
        return None
    if TensorSeed is None:  # pragma: no cover - a Keras that moved SeedGenerator
        raise CnntrainError("this Keras version's MixUp and CutMix cannot be seeded per batch",
                            hint="remove MixUp and CutMix from augment:, or use Keras 3.15")
    probabilities = [float(p) for _, p in mixes]

    def mix(images, labels, seed):
        seed = tf.cast(seed, tf.int64)
        images, labels = tf.cast(images, tf.float32), tf.cast(labels, tf.float32)
        branches = [lambda layer=layer, k=k: _mixed(layer, images, labels,
                                                    tf.random.experimental.stateless_fold_in(seed, k + 1))
                    for k, (layer, _) in enumerate(mixes)]
        out, mixed = tf.switch_case(choice(probabilities, seed), branches + [lambda: (images, labels)])
        return tf.ensure_shape(out, images.shape), tf.ensure_shape(mixed, labels.shape)

    mix.mixes = mixes
    return mix
