"""Grad-CAM: where in an image the model looked for a class (Selvaraju et al., 2017).

The class score's gradient with respect to the last feature maps (the last layer whose output
is height x width x channels), averaged over each map, weighs the maps; their weighted sum
through a ReLU is the class activation map, one value per map cell. The score is the class's
logit, before the softmax, as in the paper: the gradient of a probability (or of its log)
also carries the other classes' evidence, and a class told by the absence of the others'
features then gets a map of everywhere but the object.

A nested backbone (a keras.applications model inside the Sequential model) keeps its feature
maps inside its own graph: a Keras model from the outer input to an inner layer's output is
"Graph disconnected" (tensorflow#44462). So the model is run here layer by layer, and the
backbone as one model of its own graph that returns its inner maps beside its output.
"""
from __future__ import annotations

import numpy as np

from cnntrain.backend import keras, tf
from cnntrain.errors import CnntrainError
from cnntrain.figures.gradcam import draw_cam
from cnntrain.model import outputs


def _nested(layer) -> bool:
    return isinstance(layer, keras.Model)


def _rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return 0


def target(model) -> tuple[int, str | None, str]:
    """(index of the top-level layer, name of the layer inside it or None, label) of the last
    feature maps: the layer Grad-CAM differentiates against."""
    found = None
    for i, layer in enumerate(model.layers):
        if _nested(layer) and _rank(layer) != 4:
            inner = [sub for sub in layer.layers if _rank(sub) == 4]
            if inner:
                found = (i, inner[-1].name, f"{layer.name}/{inner[-1].name}")
        elif _rank(layer) == 4:
            found = (i, None, layer.name)
    if found is None:
        raise CnntrainError("the model has no layer with 2-D feature maps, so there is no map to draw",
                            hint="Grad-CAM needs a convolution or pooling layer (or a backbone)")
    return found


def _logits(layer, h):
    """The final layer's output before its softmax."""
    if type(layer).__name__ == "Softmax":
        return h
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(h, training=False)
    finally:
        layer.activation = activation


def _forward(model, x, where, final):
    index, inner, _ = where
    maps, h = None, x
    for i, layer in enumerate(model.layers):
        if layer is final and i != index:
            h = _logits(layer, h)
        elif i == index and inner is not None:
            both = keras.Model(layer.inputs, [layer.get_layer(inner).output, layer.outputs[0]])
            maps, h = both(h, training=False)
        else:
            h = layer(h, training=False)
            if i == index:
                maps = h
    return maps, h


def class_map(model, image: np.ndarray, class_index: int | None = None) -> dict:
    """The Grad-CAM of `image` (as the model is fed it) for `class_index` (default: the predicted
    class): {"map": cells in [0, 1], "probabilities", "class", "layer", "peak": (row, col) of the
    strongest cell's centre in image pixels}."""
    x = tf.convert_to_tensor(np.asarray(image, np.float32)[None])
    where = target(model)
    final = outputs.final_output(model)
    # A softmax inside a nested model (a backbone with its own top) stays: its log-probability then.
    softmax_kept = final.kind == "softmax" and not any(final.layer is layer for layer in model.layers)
    with tf.GradientTape() as tape:
        tape.watch(x)
        maps, out = _forward(model, x, where, final.layer if final.kind == "softmax" else None)
        out = tf.cast(out, tf.float32)
        probabilities = out if softmax_kept else tf.nn.softmax(out)
        chosen = int(tf.argmax(probabilities[0])) if class_index is None else class_index
        score = tf.math.log(probabilities[0, chosen] + 1e-12) if softmax_kept else out[0, chosen]
    grads = tape.gradient(score, maps)
    if grads is None:
        raise CnntrainError(f"the class score does not depend on {where[2]}", hint="a model that ignores its "
                            "feature maps cannot be explained this way")
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(tf.cast(maps, tf.float32) * weights[:, None, None, :], axis=-1))[0].numpy()
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
    height, width = np.asarray(image).shape[:2]
    peak = ((r + 0.5) * height / cam.shape[0], (c + 0.5) * width / cam.shape[1])
    return {"map": cam, "probabilities": probabilities[0].numpy(), "class": chosen, "layer": where[2],
            "peak": (float(peak[0]), float(peak[1]))}


def explain_figure(model, image: np.ndarray, class_names: list, out_path, *, class_index=None, top_k=3) -> dict:
    """The map of `class_map` over the image, the top classes written on it, saved to `out_path`."""
    found = class_map(model, image, class_index)
    p = found["probabilities"]
    order = np.argsort(-p, kind="stable")[:top_k]
    top = [(class_names[i], float(p[i])) for i in order]
    path = draw_cam(np.asarray(image), found["map"], top, class_names[found["class"]], found["layer"], out_path)
    return {"path": path, "class": class_names[found["class"]], "layer": found["layer"],
            "peak": [round(v, 2) for v in found["peak"]], "map_shape": list(found["map"].shape),
            "top": [{"class": name, "probability": prob} for name, prob in top]}
