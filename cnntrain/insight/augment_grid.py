"""`cnntrain augment`: what the spec's augmentation does to real training images, as a picture."""
from __future__ import annotations

import numpy as np

from cnntrain.backend import tf
from cnntrain.data import splits
from cnntrain.feed.augment import build_augmenter
from cnntrain.figures.grid import augment_grid_png
from cnntrain.model import build
from cnntrain.spec import Spec


def augment_grid(spec: Spec, out, *, data_dir=None, offline=False, images=6, versions=7) -> str:
    """Write a picture of training images and `versions` augmented versions of each; return its path."""
    layers = build.build_layers(spec, ("augment",))
    if not layers:
        raise spec.error(("augment",), "the spec has no augment layers to show",
                         "add layers such as '- RandomFlip: {mode: horizontal}' under augment:")
    data = splits.load(spec, data_dir=data_dir, offline=offline)
    rng = np.random.default_rng(spec["seed"])
    picks = rng.choice(len(data.x_train), size=min(images, len(data.x_train)), replace=False)
    originals = data.x_train[picks].astype(np.float32)
    augmenter = build_augmenter(layers, spec["seed"])
    columns = [originals]
    for v in range(versions):
        seed = tf.constant([spec["seed"], v + 1], dtype=tf.int32)
        columns.append(np.asarray(augmenter(tf.constant(originals), seed=seed)))
    return augment_grid_png(columns, [data.class_names[int(data.y_train[i])] for i in picks], out, spec["name"])
