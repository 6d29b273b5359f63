"""`cnntrain augment`: what the spec's augmentation does to real training images, as a picture."""
from __future__ import annotations

import numpy as np

from cnntrain.backend import tf
from cnntrain.data import splits
from cnntrain.feed import mix
from cnntrain.feed.augment import build_augmenter
from cnntrain.figures.grid import augment_grid_png
from cnntrain.model import build
from cnntrain.spec import Spec


def augment_grid(spec: Spec, out, *, data_dir=None, offline=False, images=6, versions=7) -> tuple[str, int]:
    """Write a picture of training images and `versions` augmented versions of each; return its path
    and how many versions a mix (MixUp, CutMix) drew, each drawn as fit draws it for a batch: the
    images shown are the batch, so a mixed image's partner is another row."""
    layers = build.build_layers(spec, ("augment",))
    if not layers:
        raise spec.error(("augment",), "the spec has no augment layers to show",
                         "add layers such as '- RandomFlip: {mode: horizontal}' under augment:")
    data = splits.load(spec, data_dir=data_dir, offline=offline)
    rng = np.random.default_rng(spec["seed"])
    picks = rng.choice(len(data.x_train), size=min(images, len(data.x_train)), replace=False)
    originals = data.x_train[picks].astype(np.float32)
    names = data.class_names
    one_hot = np.eye(len(names), dtype=np.float32)[data.y_train[picks].astype(int)]
    image_layers, mixes = mix.split(layers)
    augmenter = build_augmenter(image_layers, spec["seed"]) if image_layers else None
    mixer = mix.build_mixer(mixes)
    columns, captions, mixed = [originals], [None], 0
    for v in range(versions):
        batch, labels = tf.constant(originals), tf.constant(one_hot)
        if augmenter is not None:
            batch = augmenter(batch, seed=tf.constant([spec["seed"], v + 1], dtype=tf.int32))
        if mixer is not None:
            batch, labels = mixer(batch, labels, tf.constant([spec["seed"] + 1, v + 1], dtype=tf.int64))
        labels = np.asarray(labels)
        columns.append(np.asarray(batch))
        captions.append([_caption(row, names) for row in labels] if mixer is not None else None)
        mixed += int(not np.array_equal(labels, one_hot))
    path = augment_grid_png(columns, [names[int(data.y_train[i])] for i in picks], out, spec["name"], captions)
    return path, mixed


def _caption(row, names) -> str:
    """A label's shares, largest first: '7 62% + 3 38%'; empty for a one-hot label."""
    shares = [(share, names[k]) for k, share in enumerate(row) if share > 0]
    if len(shares) < 2:
        return ""
    return " + ".join(f"{name} {_percent(share)}" for share, name in sorted(shares, reverse=True))


def _percent(share) -> str:
    # A mix is never all of one image: a share that rounds to 0% or 100% says so.
    return "<1%" if share < 0.005 else ">99%" if share > 0.995 else f"{share:.0%}"
