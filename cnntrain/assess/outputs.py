"""Class probabilities from any classifier: its softmax output with the logits beside it, a
softmax applied to a model that outputs scores (and a note saying so), or a refusal.

A model whose output is not a distribution over its classes (see cnntrain.model.outputs)
would print "probabilities" such as -0.07, and evaluate's crossentropy would be meaningless.
"""
from __future__ import annotations

from dataclasses import dataclass

from cnntrain.errors import CnntrainError
from cnntrain.model.outputs import final_output, problem


@dataclass
class Scored:
    model: object        # outputs [probabilities, logits] when `logits`, else probabilities
    logits: bool
    note: str | None     # what was applied, for the user; None when the model's own softmax is used


def probability_model(model, classes: int) -> Scored:
    """The model as a source of class probabilities; CnntrainError when its output cannot be one."""
    if getattr(model, "exported", False):   # a .tflite / .onnx / SavedModel runner: its outputs say
        return Scored(model, False, model.scores_note())
    from cnntrain.backend import keras

    out = final_output(model)
    if out.kind == "softmax":
        both = _with_logits(model)
        return Scored(both, True, None) if both is not None else Scored(model, False, None)
    why = problem(model, classes)
    if out.kind == "other":
        raise CnntrainError(f"{why}; a softmax of them would not be the probabilities the model was "
                            "trained to give", hint="end the model with activation: softmax and train it again")
    # Scores (logits) are what a softmax over the classes takes: the model's output when its last
    # layer is linear, the input of a softmax over the wrong axis.
    scores = model.outputs[0] if out.kind == "logits" else out.layer.input
    probs = keras.layers.Softmax(axis=-1, name="cnntrain_softmax")(scores)
    taken = "its outputs" if out.kind == "logits" else f"the input of '{out.name}'"
    return Scored(keras.Model(model.inputs, [probs, scores]), True,
                  f"{why}: {taken} are taken as scores (logits) and a softmax over the classes applied")


def _with_logits(model):
    """The model with a second output, the logits its final softmax takes, or None.

    Keras' model.evaluate computes the crossentropy of a softmax output from these
    logits (not from the probabilities, whose log is clipped at 1e-7), so a
    confidently wrong answer can cost far more than -log(1e-7) = 16.1. Taking the
    same logits here makes the loss agree with model.evaluate for every answer.
    Returns None when the last layer is not a recognisable softmax (Keras then
    clips too, as sparse_crossentropy does).
    """
    from cnntrain.backend import keras

    try:
        last = model.layers[-1]
        act = getattr(last, "activation", None)
        is_softmax = getattr(act, "__name__", "") == "softmax"
        if isinstance(last, keras.layers.Softmax) and last.axis in (-1, [-1], (-1,)):
            logits = last.input
        elif isinstance(last, keras.layers.Activation) and is_softmax:
            logits = last.input
        elif is_softmax and last.weights:
            # Dense / Conv with activation="softmax": the same layer without the activation.
            linear = type(last).from_config({**last.get_config(), "activation": "linear",
                                                 "name": f"{last.name}_logits"})
            logits = linear(last.input)
            linear.set_weights(last.get_weights())
        else:
            return None
        return keras.Model(model.inputs, [model.outputs[0], logits])
    except Exception:  # any model we cannot take apart: Keras clips, so do we
        return None
