"""Narrow work-arounds for known gaps in the pinned Keras when it runs under MultiWorkerMirroredStrategy.

Keras 3.15 reduces each step's scalar logs with ``strategy.reduce("MEAN", v, axis=0)`` under a multi-worker
collective strategy, which fails on rank-0 values, and its symbolic build reduces a whole PerReplica batch.
Both are patched here, only for multi-worker runs, and only in those two places.
"""

from __future__ import annotations

_patched = False


def patch_keras_for_multi_worker() -> None:
    global _patched
    if _patched:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if tf_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            def _reduce(v):
                inner = v.values[0] if hasattr(v, "values") else v
                rank = getattr(getattr(inner, "shape", None), "rank", 0) or 0
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tree.map_structure(_reduce, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    _patched = True
