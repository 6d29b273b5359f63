"""Test-time augmentation: each image's class probabilities averaged over a few views of it.

`flip` is airbench's test-time flip: the model sees each image and the image flipped left-right,
and the two outputs are averaged. It helps where the classes are mirror-symmetric in distribution
(CIFAR-10's animals and vehicles) and hurts where they are not (a mirrored 2 is no digit).
`flip_translate` is airbench's next level: the flip's mean weighs half, the other half is the flip's
mean of two copies shifted one pixel diagonally (up-left and down-right, the edge reflected), so
six views; it pays where training translated the images. `translate` is the test-time shift without
the mirror, for classes a mirror changes (digits, text): the mean of the image and its four one-pixel
axis shifts (up, down, left, right), five views of equal weight. The views of a split are made a batch (a
Keras model) or a block (an exported runner) of images at a time, never K copies of a streamed split
in memory, and each view predicted in the batches fit's figure feeds its averaged model.
"""
from __future__ import annotations

import numpy as np

from cnntrain.data import rows
from cnntrain.errors import CnntrainError
from cnntrain.spec.schema import TTA_CHOICES

NONE = "none"


def checked(tta: str) -> str:
    """`tta` if it is a choice, else a CnntrainError naming the choices."""
    if tta not in TTA_CHOICES:
        raise CnntrainError(f"unknown test-time augmentation {tta!r}",
                            hint=f"--tta (or fit.tta) is one of: {', '.join(TTA_CHOICES)}")
    return tta


def of_model(tta: str | None, metadata: dict) -> str:
    """The TTA to use: the one asked for, else the one the model's run was fit with, else none."""
    return checked(tta if tta is not None else (metadata or {}).get("tta") or NONE)


def label(tta: str) -> str:
    """How the output lines name it: ' (test-time flip)', ' (test-time flip + translate)', ' (test-time
    translate)', or '' for none."""
    return "" if tta == NONE else f" (test-time {tta.replace('_', ' + ')})"


# Each choice's views, as (dy, dx, mirrored), and the weight of each view's output in the mean.
VIEWS = {"none": ((0, 0, False),),
         "flip": ((0, 0, False), (0, 0, True)),
         "flip_translate": ((0, 0, False), (0, 0, True), (-1, -1, False), (-1, -1, True),
                            (1, 1, False), (1, 1, True)),
         "translate": ((0, 0, False), (-1, 0, False), (1, 0, False), (0, -1, False), (0, 1, False))}
WEIGHTS = {"none": (1.0,), "flip": (0.5, 0.5), "flip_translate": (0.25, 0.25, 0.125, 0.125, 0.125, 0.125),
           "translate": (0.2, 0.2, 0.2, 0.2, 0.2)}


def shifted(x, dy: int, dx: int, mirrored: bool, ops=np):
    """(N, H, W, C) images moved dy rows down and dx columns right (by at most one pixel), the edge they
    leave reflected in, then mirrored left-right if asked: NumPy's arrays or (ops=keras.ops) tensors."""
    if dy or dx:
        h, w = x.shape[1], x.shape[2]
        padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        x = padded[:, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
    return ops.flip(x, axis=2) if mirrored else x


def with_views(x, tta: str) -> np.ndarray:
    """The N images (N, H, W, C) followed by each further view of them: K x N images, view by view.
    Without further views the images are returned as given (images on disk stay unread)."""
    views = VIEWS[checked(tta)]
    if len(views) == 1:
        return x
    x = np.asarray(x)
    return np.concatenate([shifted(x, *view) for view in views])


def view_outputs(predict, x, tta: str, batch_size: int) -> np.ndarray:
    """`predict`'s outputs for the images of `with_views(x, tta)`, K x N rows view by view, made a
    block of x at a time (x an array or images read when indexed): an exported runner's way. Each
    view of a block is predicted alone, so its batches hold the images fit's figure puts in one."""
    views = VIEWS[checked(tta)]
    parts = [[] for _ in views]
    for block in rows.blocks(x, int(batch_size)):
        for part, view in zip(parts, views):
            part.append(np.asarray(predict(shifted(block, *view))))
    return np.concatenate([np.concatenate(part) for part in parts])


def view_dataset(x, y, tta: str, batch_size: int):
    """eval_dataset's batches of x, each followed by its further views (batch 1, its flip, batch 2,
    ...): a Keras model's way, one predict over one pipeline (a predict a block would trace a new
    pipeline each time, and TensorFlow keeps every one). `view_major` orders the outputs."""
    from cnntrain.backend import keras, tf
    from cnntrain.feed.pipeline import eval_dataset

    views = VIEWS[checked(tta)]
    batches = eval_dataset(x, y, batch_size=int(batch_size))
    if len(views) == 1:
        return batches

    def each_view(images, labels):
        seen = tf.stack([shifted(images, *view, ops=keras.ops) for view in views])
        return tf.data.Dataset.from_tensor_slices((seen, tf.stack([labels] * len(views))))
    # flat_map's length is unknown to tf.data, and Keras warns at the end of a pipeline of unknown length.
    return batches.flat_map(each_view).apply(tf.data.experimental.assert_cardinality(
        len(views) * int(batches.cardinality())))


def view_major(outputs, tta: str, batch_size: int) -> np.ndarray:
    """view_dataset's outputs (each batch's views in turn) in with_views' order: view by view."""
    k = len(VIEWS[checked(tta)])
    outputs = np.asarray(outputs)
    if k == 1:
        return outputs
    n, batch = len(outputs) // k, int(batch_size)
    order = [np.arange(k * lo + v * size, k * lo + (v + 1) * size)
             for v in range(k) for lo, size in ((lo, min(batch, n - lo)) for lo in range(0, n, batch))]
    return outputs[np.concatenate(order)]


def mean_of_views(outputs, tta: str) -> np.ndarray:
    """(N, classes) from the K x N outputs of `with_views` images: each image's weighted mean over its
    views in the order fit's figure sums them (flip: in the outputs' own float type)."""
    out = np.asarray(outputs)
    weights = WEIGHTS[checked(tta)]
    if len(weights) == 1:
        return out
    n = len(out) // len(weights)
    if tta == "flip":   # (a + b) / 2, as keras.layers.Average computes it
        return (out[:n] + out[n:]) / out.dtype.type(2)
    out = out.astype(np.float32)   # fit's figure casts each view's output to float32 before the sum
    total = out[:n] * np.float32(weights[0])
    for i, weight in enumerate(weights[1:], start=1):
        total = total + out[i * n:(i + 1) * n] * np.float32(weight)
    return total


def test_figures(model, dataset, tta: str, *, metrics, strategy=None) -> dict:
    """fit's test figures: model.evaluate's loss and compiled metrics on `dataset`, with a TTA on the
    weighted mean of the model's outputs over each image's views (with "tta": its name among them).

    `metrics` are fresh ones of the spec (the model's own hold the state of its training)."""
    import contextlib

    from cnntrain.backend import keras

    if checked(tta) == NONE:
        figures = model.evaluate(dataset, verbose=0, return_dict=True)
        return {k: float(v) for k, v in figures.items()}
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        inputs = keras.Input(model.input_shape[1:])
        outputs = [model(shifted(inputs, *view, ops=keras.ops)) for view in VIEWS[tta]]
        # float32 whatever the global policy: the mean of softmaxes, as the loss takes it.
        if tta == "flip":
            mean = keras.layers.Average(dtype="float32")(outputs)
        else:
            outputs = [keras.ops.cast(o, "float32") for o in outputs]
            mean = outputs[0] * WEIGHTS[tta][0]
            for output, weight in zip(outputs[1:], WEIGHTS[tta][1:]):
                mean = mean + output * weight
        averaged = keras.Model(inputs, mean)
        averaged.compile(loss=model.loss, metrics=metrics, jit_compile=bool(getattr(model, "jit_compile", False)))
    figures = averaged.evaluate(dataset, verbose=0, return_dict=True)
    return {**{k: float(v) for k, v in figures.items()}, "tta": tta}
