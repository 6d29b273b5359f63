"""compile.gradient_scale: some variables' gradients multiplied before the optimizer sees them.

airbench (KellerJordan/cifar10-airbench) trains BatchNorm's shift 64 times faster than the rest of
its network (`bias_scaler: 64`). Keras optimizers have one learning rate for every variable, but
for SGD, with or without (Nesterov) momentum, a gradient multiplied by k moves its variable exactly
as a k times higher learning rate would, and decoupled weight decay (`weight_decay`) stays as it
was, as in airbench. In a spec:

    compile:
      gradient_scale: {beta: 64}      # BatchNormalization's shift

A key is a variable's name (`beta`, `gamma`, `kernel`, `bias`), or a layer's and its name
(`head/kernel`, for a layer given `name: head`), with shell wildcards (`*kernel`); each must match a
trainable variable of the model. (Keras' own layer names, `conv2d_3`, depend on how many models the
process has built, so name a layer to address it alone.) Adaptive
optimizers (Adam, RMSprop ...) divide the scale out again, so there it does next to nothing.
The spec check (spec/validate.py) sees the mapping's types; here each key meets the model.
The scaling is set on the optimizer instance only: its class and its saved config are Keras' own.
"""
from __future__ import annotations

import fnmatch
import types

PATH = ("compile", "gradient_scale")


def factors(spec, variables) -> list[float] | None:
    """One multiplier per variable (None: no gradient_scale); a key matching none is a SpecError."""
    value = spec["compile"]["gradient_scale"]
    if not value:
        return None
    variables = list(variables)
    out = [1.0] * len(variables)
    for key, scale in value.items():
        hits = [i for i, v in enumerate(variables) if fnmatch.fnmatchcase(v.name, key)
                or fnmatch.fnmatchcase(v.path, key) or fnmatch.fnmatchcase(v.path, "*/" + key)]
        if not hits:
            names = ", ".join(sorted({v.name for v in variables})) or "none"
            raise spec.error(PATH + (key,), f"'{key}' matches no trainable variable of the model",
                             f"its trainable variables are named {names}; one layer's are LAYER/NAME, "
                             "LAYER being the name: argument of that layer", key=True)
        for i in hits:
            out[i] *= float(scale)
    return out


def attach(spec, optimizer, variables) -> None:
    """Make `optimizer` multiply the gradients of `variables` (the model's trainable ones, in the
    order the model passes them) by the spec's factors before each step."""
    scales = factors(spec, variables)
    if scales is None:
        return
    by_variable = {id(v): s for v, s in zip(variables, scales) if s != 1.0}
    plain_apply = optimizer.apply

    def apply(self, grads, trainable_variables=None):
        known = list(trainable_variables) if trainable_variables is not None else list(self._trainable_variables)
        grads = [g if g is None or id(v) not in by_variable else g * by_variable[id(v)]
                 for g, v in zip(grads, known)]
        return plain_apply(grads, trainable_variables)

    optimizer.apply = types.MethodType(apply, optimizer)
