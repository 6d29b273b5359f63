"""The moving average of the weights (an optimizer's `use_ema: true`) as the model every epoch ends with.

Keras keeps the average inside the optimizer and puts it into the model only when fit ends
(`finalize_variable_values`): validation, best.keras and the epoch's callbacks would otherwise see
the trained weights, and the final model something no epoch was judged on.
"""
from __future__ import annotations

import contextlib

from cnntrain.backend import keras


def uses_ema(model) -> bool:
    """Whether the model's optimizer keeps a moving average of the weights."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)   # a LossScaleOptimizer wraps the real one
    return bool(getattr(optimizer, "use_ema", False))


def put_average(model):
    """Put the optimizer's moving average into the model's trainable weights (no-op without EMA)."""
    if uses_ema(model):
        model.optimizer.finalize_variable_values(model.trainable_variables)


class EmaWeights(keras.callbacks.Callback):
    """From validation to the next epoch's first step the model holds the moving average; the
    trained weights are kept aside and put back before training goes on.

    Must come before RunState and the user's callbacks: they all see the average, as the final
    model will be. RunState writes the resume state inside `trained()`, so a resumed fit goes on
    from the trained weights with the average in the optimizer's state.
    """

    def __init__(self):
        super().__init__()
        self.kept = None

    def _swap_in(self):
        if self.kept is None and uses_ema(self.model):
            # Kept with their variables: fine-tuning's phase two has more trainable ones by the time
            # they are put back.
            self.kept = [(v, v.numpy()) for v in self.model.trainable_variables]
            put_average(self.model)

    def _swap_out(self):
        if self.kept is not None:
            for variable, value in self.kept:
                variable.assign(value)
            self.kept = None

    def on_test_begin(self, logs=None):
        self._swap_in()   # only Keras' validation inside fit calls this callback's on_test_begin

    def on_epoch_end(self, epoch, logs=None):
        self._swap_in()   # no validation data: best.keras still gets the average

    def on_epoch_begin(self, epoch, logs=None):
        self._swap_out()

    # No on_train_end: Keras has put the average in for good (finalize_variable_values), but the
    # trained weights stay kept, so a fit in phases (fit.fine_tune) goes on from them at the next
    # phase's first epoch, as that fit resumed from its state would; after the last phase nothing
    # puts them back.

    @contextlib.contextmanager
    def trained(self):
        """The trained weights in the model for the block's duration (the resume state's)."""
        if self.kept is None:
            yield
            return
        self._swap_out()
        try:
            yield
        finally:
            self._swap_in()   # the optimizer's average is untouched: the same values come back
