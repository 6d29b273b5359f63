"""tf.data for training and evaluation: indices shuffled, batches gathered, augmented, prefetched.

Images stay uint8 in memory until a batch is gathered; normalization is NOT done here but by a
layer at the front of the model (cnntrain.model.normalization), so that `predict` and `evaluate`
on a saved model apply exactly what training applied.
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import tf
from cnntrain.data.rows import Lazy
from cnntrain.data.splits import as_images, as_labels
from cnntrain.errors import CnntrainError
from cnntrain.feed import mix
from cnntrain.feed.augment import build_augmenter


def _checked(x, y, batch_size, num_classes):
    x = as_images(x)
    y = as_labels(y, len(x))
    if int(batch_size) < 1:
        raise CnntrainError(f"batch_size must be at least 1, got {batch_size}")
    if len(x) == 0:
        raise CnntrainError("no examples to feed")
    # tf.one_hot turns an out-of-range label into a row of zeros without a word.
    if num_classes is not None and (y.min() < 0 or y.max() >= int(num_classes)):
        raise CnntrainError(f"labels run from {y.min()} to {y.max()}, outside 0..{int(num_classes) - 1}",
                            hint="the number of classes must cover every label in the data")
    return x, y.astype(np.int32 if y.max() < 2**31 else np.int64)


def _gatherer(x: np.ndarray, y: np.ndarray, num_classes: int | None, class_weight=None, streamed=False):
    # The arrays become two eager tensors captured by the map function (not graph
    # constants), and the pipeline moves only indices until a batch is gathered: the
    # shuffle buffer holds N integers, not N images. Images read when indexed (rows.Lazy: the
    # decoded-image cache file, or data.cache: none's files decoded again) are `streamed` instead:
    # each batch's rows are read when it is gathered, so the images never all sit in memory.
    images = None if streamed else tf.constant(x)
    labels = tf.constant(y)

    def rows(idx):
        if images is not None:
            return tf.gather(images, idx)
        batch = tf.numpy_function(lambda i: x[i], [idx], tf.uint8, stateful=False)
        batch.set_shape((None, *x.shape[1:]))
        return batch
    # Each image's weight is its class's, as a third element Keras takes as the sample weight: the
    # loss itself is weighted, whatever the strategy (model.fit's class_weight is not applied to
    # every tf.data input, TF #33550).
    weights = None if class_weight is None else tf.constant(np.asarray(class_weight, np.float32))

    def gather(idx):
        batch = tf.cast(rows(idx), tf.float32)
        label = tf.gather(labels, idx)
        target = label if num_classes is None else tf.one_hot(label, int(num_classes), dtype=tf.float32)
        if weights is None:
            return batch, target
        return batch, target, tf.gather(weights, label)

    return gather


def train_dataset(x, y, *, batch_size: int, augment: list, seed: int, num_classes: int | None = None,
                  first_epoch: int = 0, epochs: int | None = 1, class_weight=None, shard=None) -> tf.data.Dataset:
    """Shuffled, batched, augmented (images, labels) batches of `epochs` epochs (None: without
    end), counted from `first_epoch` (0-based, as Keras counts).

    Epoch e's order and augmentation depend on (seed, e) alone, not on how many epochs this
    process has already run: a fit resumed at epoch e feeds what an uninterrupted fit feeds.
    Images come out float32 in 0-255 (the model normalizes); each epoch's last partial batch
    is kept; labels are one-hot float32 when `num_classes` is given. `augment` may end in mixes
    (MixUp, CutMix: see feed/mix.py), which need `num_classes`. `class_weight`, one weight per
    class, adds each image's class weight as a third element, the sample weight of the loss (a
    mixed image keeps its own, unmixed class's weight). `shard` (workers, this worker's index), for
    a multi-worker fit, keeps batch i where i % workers is the index, tf.data's AutoShardPolicy.DATA
    rule, applied to the batches of indices: each worker gathers (reads) only its own batches.
    """
    streamed = isinstance(x, Lazy)
    x, y = _checked(x, y, batch_size, num_classes)
    n, batch = len(x), int(batch_size)
    gather = _gatherer(x, y, num_classes, class_weight, streamed)
    image_layers, mixes = mix.split(augment or [])
    augmenter = build_augmenter(image_layers, seed) if image_layers else None
    mixer = mix.build_mixer(mixes)
    if mixer is not None and num_classes is None:
        raise CnntrainError(f"{type(mixes[0][0]).__name__} mixes the labels, which needs one-hot labels",
                            hint="pass num_classes (build.uses_one_hot says so for a spec with a mix)")
    order_seed = tf.constant([seed, 0], tf.int64)
    augment_seed = tf.constant([seed, 1], tf.int64)
    mix_seed = tf.constant([seed, 2], tf.int64)   # its own stream: a mix leaves the image augmentation as it was

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.random.experimental.stateless_fold_in(order_seed, epoch))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch).enumerate()
        return batches.map(lambda step, idx: (epoch, step, idx))

    if epochs is None:
        epoch_numbers = tf.data.Dataset.counter(int(first_epoch))
    else:
        epoch_numbers = tf.data.Dataset.range(int(first_epoch), int(first_epoch) + int(epochs))
    batches = _sharded(epoch_numbers.flat_map(epoch_batches), shard)
    if augmenter is None and mixer is None:
        ds = batches.map(lambda epoch, step, idx: gather(idx), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        def batch_seed(base, epoch, step):
            # One stateless seed per (epoch, batch): reproducible although batches are mapped in parallel.
            return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(base, epoch), step)

        def gather_and_augment(epoch, step, idx):
            images, target, *weight = gather(idx)
            if augmenter is not None:
                images = augmenter(images, seed=batch_seed(augment_seed, epoch, step))
            if mixer is not None:
                images, target = mixer(images, target, batch_seed(mix_seed, epoch, step))
            return (images, target, *weight)

        ds = batches.map(gather_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _sharded(batches, shard):
    return batches if shard is None else batches.shard(*shard)


def eval_dataset(x, y, *, batch_size: int, num_classes: int | None = None, shard=None) -> tf.data.Dataset:
    """(images, labels) batches in order, float32 0-255, no augmentation; `shard` as train_dataset's."""
    streamed = isinstance(x, Lazy)
    x, y = _checked(x, y, batch_size, num_classes)
    gather = _gatherer(x, y, num_classes, streamed=streamed)
    ds = _sharded(tf.data.Dataset.range(len(x)).batch(int(batch_size)), shard).map(
        gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
