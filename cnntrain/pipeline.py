"""The input side of training: validation split, normalization statistics, tf.data.

Images stay uint8 in memory until a batch is gathered; normalization is NOT done
here but by a layer at the front of the model (`normalization_layer`), so that
`predict` and `evaluate` on a saved model apply exactly what training applied.
"""
from __future__ import annotations

import numpy as np

from cnntrain.augment import build_augmenter
from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError

NORMALIZE_CHOICES = ("none", "scale", "standardize")

# Bytes of 8-byte temporaries per chunk when computing statistics: bounded memory
# whatever the size of the training set.
_STATS_CHUNK_BYTES = 32 * 2**20


def _as_images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) greyscale, as MNIST ships
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise CnntrainError(f"expected images shaped (N, height, width, channels), got {x.shape}")
    return x


def _as_labels(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # CIFAR ships (N, 1)
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise CnntrainError(f"expected {n} integer labels, got an array shaped {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise CnntrainError("labels must be integer class indices")
        y = y.astype(np.int64)
    return y


# --- validation split ----------------------------------------------------------------

def split_validation(x, y, fraction: float, seed: int):
    """(x_train, y_train, x_val, y_val): a seeded split, stratified per class.

    The validation set holds floor(fraction * N + 0.5) examples, spread over the classes in
    proportion to their sizes (largest remainders), and every class keeps at least one
    training example. Both parts keep the original order of the examples.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CnntrainError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}",
                            hint="data.validation_split: 0.1 holds out 10% of the training data")
    x = np.asarray(x)
    y_flat = _as_labels(y, len(x))
    n = len(y_flat)
    classes, inverse, counts = np.unique(y_flat, return_inverse=True, return_counts=True)

    ideal = fraction * counts
    take = np.minimum(np.floor(ideal).astype(np.int64), counts - 1)
    room = (counts - 1) - take
    short = int(np.floor(fraction * n + 0.5)) - int(take.sum())
    if short > 0:
        # Largest remainder first; ties go to the lower class, so it is deterministic.
        remainder = np.where(room > 0, ideal - take, -np.inf)
        order = np.lexsort((np.arange(len(classes)), -remainder))
        for c in order[:short]:
            if room[c] > 0:
                take[c] += 1
    if take.sum() == 0:
        raise CnntrainError(
            f"a validation fraction of {fraction} leaves no validation examples out of {n}",
            hint="use a larger validation_split or more data")

    rng = np.random.default_rng(seed)
    val_mask = np.zeros(n, dtype=bool)
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        val_mask[rng.permutation(members)[:take[c]]] = True
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    y = np.asarray(y)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


# --- normalization -------------------------------------------------------------------

def channel_stats(x_train) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) variance of images, in bounded-size chunks.

    uint8 images (the normal case) are counted into a 256-bin histogram per channel:
    the sums are then exact integers, the result is rounded once, and it is ~2.5x
    faster than float64 arithmetic. Other dtypes go through float64 chunks. Neither
    makes the 4x float copy of the whole set that `x.astype("float32").mean()` would.
    """
    x = _as_images(x_train)
    if len(x) == 0:
        raise CnntrainError("cannot compute normalization statistics of an empty training set")
    channels = x.shape[-1]
    per_image = int(np.prod(x.shape[1:]))
    step = max(1, _STATS_CHUNK_BYTES // (8 * per_image))
    count = len(x) * per_image // channels
    if x.dtype == np.uint8:
        hist = np.zeros(256 * channels, dtype=np.int64)
        offsets = (np.arange(channels) * 256).astype(np.uint16)
        for start in range(0, len(x), step):
            chunk = x[start:start + step].reshape(-1, channels)
            hist += np.bincount((chunk + offsets).ravel(), minlength=256 * channels)
        values = np.arange(256, dtype=np.int64)
        # Python integers from here: count * sum(x^2) overflows int64 for big sets.
        total = [int(h @ values) for h in hist.reshape(channels, 256)]
        total_sq = [int(h @ (values * values)) for h in hist.reshape(channels, 256)]
        mean = np.array([t / count for t in total])
        var = np.array([(count * q - t * t) / (count * count) for t, q in zip(total, total_sq)])
        return mean, var
    total = np.zeros(channels)
    for start in range(0, len(x), step):
        total += x[start:start + step].reshape(-1, channels).astype(np.float64).sum(axis=0)
    mean = total / count
    # Second pass around the mean: no cancellation for float data far from zero.
    total_sq = np.zeros(channels)
    for start in range(0, len(x), step):
        centred = x[start:start + step].reshape(-1, channels).astype(np.float64) - mean
        total_sq += np.einsum("ij,ij->j", centred, centred)
    return mean, total_sq / count


def normalization_layer(normalize: str, x_train: np.ndarray):
    """The layer at the front of the model that normalizes 0-255 float images.

    "none" -> None; "scale" -> Rescaling(1/255); "standardize" -> Normalization with
    the per-channel mean and variance of `x_train` (the training split only).
    """
    if normalize == "none":
        return None
    if normalize == "scale":
        return keras.layers.Rescaling(1.0 / 255.0, name="scale")
    if normalize == "standardize":
        mean, var = channel_stats(x_train)
        layer = keras.layers.Normalization(axis=-1, mean=mean.tolist(), variance=var.tolist(),
                                           name="standardize")
        # Built now, eagerly: built on first call inside a tf.data map or tf.function,
        # its mean/variance would be that graph's tensors and unusable anywhere else.
        layer.build((None,) + _as_images(x_train).shape[1:])
        return layer
    raise CnntrainError(f"unknown normalization {normalize!r}",
                        hint=f"preprocess.normalize is one of {', '.join(NORMALIZE_CHOICES)}")


# --- tf.data -------------------------------------------------------------------------

def _checked(x, y, batch_size, num_classes):
    x = _as_images(x)
    y = _as_labels(y, len(x))
    if int(batch_size) < 1:
        raise CnntrainError(f"batch_size must be at least 1, got {batch_size}")
    if len(x) == 0:
        raise CnntrainError("no examples to feed")
    # tf.one_hot turns an out-of-range label into a row of zeros without a word.
    if num_classes is not None and (y.min() < 0 or y.max() >= int(num_classes)):
        raise CnntrainError(f"labels run from {y.min()} to {y.max()}, outside 0..{int(num_classes) - 1}",
                            hint="the number of classes must cover every label in the data")
    return x, y.astype(np.int32 if y.max() < 2**31 else np.int64)


def _gatherer(x: np.ndarray, y: np.ndarray, num_classes: int | None):
    # The arrays become two eager tensors captured by the map function (not graph
    # constants), and the pipeline moves only indices until a batch is gathered: the
    # shuffle buffer holds N integers, not N images.
    images = tf.constant(x)
    labels = tf.constant(y)

    def gather(idx):
        batch = tf.cast(tf.gather(images, idx), tf.float32)
        target = tf.gather(labels, idx)
        if num_classes is not None:
            target = tf.one_hot(target, int(num_classes), dtype=tf.float32)
        return batch, target

    return gather


def train_dataset(x, y, *, batch_size: int, augment: list, seed: int,
                  num_classes: int | None = None) -> tf.data.Dataset:
    """Shuffled (anew each epoch), batched, augmented (images, labels) batches.

    Images come out float32 in 0-255 (the model normalizes); the last partial batch
    is kept; labels are one-hot float32 when `num_classes` is given.
    """
    x, y = _checked(x, y, batch_size, num_classes)
    n = len(x)
    gather = _gatherer(x, y, num_classes)
    augmenter = build_augmenter(augment, seed) if augment else None

    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    batches = order.batch(int(batch_size), drop_remainder=False)
    if augmenter is None:
        ds = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # One stateless seed per batch, different every epoch yet fixed by `seed`:
        # augmentation is reproducible even though batches are mapped in parallel.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)

        def gather_and_augment(idx, batch_seed):
            images, target = gather(idx)
            return augmenter(images, seed=batch_seed), target

        ds = tf.data.Dataset.zip(batches, seeds).map(gather_and_augment,
                                                     num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, y, *, batch_size: int, num_classes: int | None = None) -> tf.data.Dataset:
    """(images, labels) batches in order, float32 0-255, no augmentation."""
    x, y = _checked(x, y, batch_size, num_classes)
    gather = _gatherer(x, y, num_classes)
    ds = tf.data.Dataset.range(len(x)).batch(int(batch_size)).map(
        gather, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
