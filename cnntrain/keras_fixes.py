"""Workarounds for Keras 3 bugs under tf.distribute.MultiWorkerMirroredStrategy.

Keras 3.15 reduces every per-replica log value with `strategy.reduce("MEAN", v, axis=0)`
under a multi-worker strategy, which fails for the scalar loss and metrics
("Invalid reduction dimension 0 for input with 0 dimensions"), and it reduces a whole
input batch the same way before the first step (keras-team/keras#20585,
tensorflow/tensorflow#72388). Applied only when a multi-worker strategy is in use.
"""
from __future__ import annotations

_applied = False


def apply_multi_worker_fixes():
    global _applied
    if _applied:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from keras.src import tree

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _applied = True


def prebuild(model, dataset, strategy):
    """Build the model's metrics from one local batch, then skip Keras' own build step
    that would reduce a distributed batch across workers."""
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
