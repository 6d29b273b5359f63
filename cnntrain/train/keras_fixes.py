"""Workarounds for Keras 3 bugs under tf.distribute.MultiWorkerMirroredStrategy.

Keras 3.15 reduces every per-replica log value with `strategy.reduce("MEAN", v, axis=0)`
under a multi-worker strategy, which fails for the scalar loss and metrics
("Invalid reduction dimension 0 for input with 0 dimensions"), and it reduces a whole
input batch the same way before the first step (keras-team/keras#20585,
tensorflow/tensorflow#72388). The patch lives only inside `multi_worker_fixes(...)`, around
a multi-worker fit, and is taken off again on the way out.
"""
from __future__ import annotations

import contextlib

from cnntrain.backend import keras
from cnntrain.errors import CnntrainError

WRITTEN_FOR = (3, 15)   # the Keras version these fixes were written and tested against


def _version() -> tuple[int, int]:
    major, minor = keras.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


@contextlib.contextmanager
def multi_worker_fixes(model, dataset, strategy):
    """Patch Keras' per-replica reduction and prebuild `model` from one local batch, for the
    duration of the block."""
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer

        original = tf_trainer.reduce_per_replica
        is_multi_worker = tf_trainer._collective_all_reduce_multi_worker
    except (ImportError, AttributeError):
        raise CnntrainError(f"multi-worker training needs Keras internals that Keras {keras.__version__} no "
                            f"longer has (the workaround was written for Keras {'.'.join(map(str, WRITTEN_FOR))})",
                            hint="use Keras 3.15 for multi-worker training, or --strategy mirrored on one machine") from None
    if _version()[0] != WRITTEN_FOR[0]:
        raise CnntrainError(f"multi-worker training was tested with Keras {WRITTEN_FOR[0]}.x, not {keras.__version__}",
                            hint="install keras 3 for multi-worker training")

    def reduce_per_replica(values, strategy_, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy_):
            return tree.map_structure(lambda v: strategy_.reduce("MEAN", v, axis=None), values)
        return original(values, strategy_, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        _prebuild(model, dataset, strategy)
        yield
    finally:
        tf_trainer.reduce_per_replica = original


def _prebuild(model, dataset, strategy):
    """Build the model's metrics from one local batch, then skip Keras' own build step
    that would reduce a distributed batch across workers."""
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
