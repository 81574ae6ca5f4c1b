"""How a task learns: its data, its model, its loss and metrics, and how it is evaluated (one role of the task
contract; ``suite.task.Task`` joins the three roles). Every part has a default, or is one of the few a plugin
must define (``load_data``, and ``build_model`` or the ``ClassificationTask`` parts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from suite.budget import TrainingPlan
    from suite.config import TaskConfig
    from suite.data import DataBundle, DataSource


class Learning:
    """Data in, a trained model out: what the trainer, ``suite eval`` and ``suite distill`` call."""

    data_formats: ClassVar[str] = ""  # one paragraph: the local path layouts load_data accepts
    tfds_examples: ClassVar[tuple[str, ...]] = ()  # e.g. ("tfds:mnist",)
    sample_synthetic: ClassVar[bool] = False  # the built-in sample is generated, not real data
    # Config overrides that train a usable model on the built-in sample in well under a minute on 2 CPU
    # cores: the app's one-click "train on the built-in sample" and its first-start sample models use it.
    sample_overrides: ClassVar[dict[str, Any]] = {}
    monitor: ClassVar[str] = "val_accuracy"  # metric that picks the best checkpoint
    monitor_mode: ClassVar[str] = "max"
    # Config overrides that make a good small student for `suite distill` (the first is the default).
    distill_students: ClassVar[dict[str, dict]] = {}

    def load_data(self, source: DataSource, config: TaskConfig) -> DataBundle:
        """Read ``source`` into unbatched ``(raw_input, label)`` datasets plus metadata."""
        raise NotImplementedError

    def batch(self, ds: tf.data.Dataset, batch_size: int, *, training: bool, config: TaskConfig, meta: dict):
        """Batch a split. Override to bucket by length or to pad; labels may be transformed here."""
        return ds.batch(batch_size, drop_remainder=False)

    def plan(self, config: TaskConfig, data: DataBundle, explicit: frozenset[str]) -> TrainingPlan | None:
        """Choose what the user left open from the loaded data (model size, epochs, batch, input size).

        Called once per run after ``load_data``; ``explicit`` names the config fields the user set, which a
        plan must leave alone (the trainer ignores any value it returns for them). ``suite.budget`` holds the
        budget-aware choice. The default plans nothing.
        """
        return None

    def build_model(self, config: TaskConfig, data: DataBundle) -> keras.Model:
        """A Keras model whose inputs are raw inputs (preprocessing inside, registered layers only)."""
        raise NotImplementedError

    def loss(self, config: TaskConfig, meta: dict):
        raise NotImplementedError

    def metrics(self, config: TaskConfig, meta: dict) -> list:
        return []

    def optimizer(self, config: TaskConfig, steps_per_epoch: int):
        """AdamW with the config's schedule; tasks with special needs override it."""
        import keras

        from suite.schedules import make_learning_rate

        lr = make_learning_rate(config, steps_per_epoch)
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, clipnorm=1.0)

    def evaluate(self, model: keras.Model, ds: tf.data.Dataset, config: TaskConfig, meta: dict,
                 *, limit: int = 0) -> dict[str, Any]:
        """Task metrics on an unbatched split. Classification tasks inherit a full report."""
        raise NotImplementedError

    def distill_sources(self, data: DataBundle) -> list[Any]:
        """The training inputs a sequence-level teacher decodes for ``suite distill`` (text-output tasks): by
        default the first element of each training example, strings decoded from UTF-8."""
        sources = []
        for example in data.train.as_numpy_iterator():
            x = example[0]
            sources.append(x.decode("utf-8") if isinstance(x, bytes) else x)
        return sources

    def with_train_targets(self, data: DataBundle, sources: list[Any], targets: list[Any]) -> DataBundle:
        """``data`` with its training split replaced by (source, teacher output) pairs, what a sequence-level
        student trains on; validation and test keep their real references."""
        import dataclasses

        import tensorflow as tf

        train = tf.data.Dataset.from_tensor_slices((list(sources), [str(t) for t in targets]))
        counts = {**data.counts, "train": len(sources)}
        return dataclasses.replace(data, train=train, counts=counts, shard_train=None)
