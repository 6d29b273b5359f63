"""`cnntrain augment`: what the spec's augmentation does to real training images, as a picture."""
from __future__ import annotations

import numpy as np

from cnntrain import builder, inputs, runs
from cnntrain.errors import CnntrainError
from cnntrain.spec import Spec


def augment_grid(spec: Spec, out, *, data_dir=None, offline=False, images=6, versions=7) -> str:
    from cnntrain.augment import build_augmenter
    from cnntrain.backend import tf

    layers = builder.build_layers(spec, ("augment",))
    if not layers:
        raise spec.error(("augment",), "the spec has no augment layers to show",
                         "add layers such as '- RandomFlip: {mode: horizontal}' under augment:")
    data = inputs.load(spec, data_dir=data_dir, offline=offline)
    rng = np.random.default_rng(spec["seed"])
    picks = rng.choice(len(data.x_train), size=min(images, len(data.x_train)), replace=False)
    originals = data.x_train[picks].astype(np.float32)
    augmenter = build_augmenter(layers, spec["seed"])
    columns = [originals]
    for v in range(versions):
        seed = tf.constant([spec["seed"], v + 1], dtype=tf.int32)
        columns.append(np.asarray(augmenter(tf.constant(originals), seed=seed)))
    return _draw(columns, [data.class_names[int(data.y_train[i])] for i in picks], out, spec["name"])


def _draw(columns, labels, out, title) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(labels), len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5), squeeze=False)
    for c, batch in enumerate(columns):
        for r in range(rows):
            ax = axes[r][c]
            image = np.clip(batch[r], 0, 255).astype(np.uint8)
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"#{c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=8)
    fig.suptitle(f"{title}: augmentation during fit (training batches only)", fontsize=9)
    fig.tight_layout()
    try:
        with runs.atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    except OSError as exc:
        raise CnntrainError(f"cannot write: {exc.strerror}", file=str(out)) from None
    finally:
        plt.close(fig)
    return str(out)
