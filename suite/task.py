"""The task contract: what a plugin provides, and the generic behaviour it inherits.

A plugin subclasses :class:`Task` (or :class:`ClassificationTask`) and declares only what is specific to its
task: its config dataclass, how to load data, the model's raw-input preprocessing and backbone, and how user
input becomes a model input. Training, evaluation, saving, export and the UI live in the core and drive every
task through this interface (the TF Model Garden ``build_model / build_inputs / metrics`` contract, with
KerasHub's split of a generic base class that owns graph building from concrete parts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from suite.config import TaskConfig
from suite.task_appearance import Appearance, Drawing, Example, quoted
from suite.task_learning import Learning
from suite.task_serving import Explanation, Serving

if TYPE_CHECKING:
    from suite.data import DataBundle

__all__ = ["INPUT_KINDS", "OUTPUT_KINDS", "Appearance", "ClassificationTask", "Drawing", "Example", "Explanation", "Learning",
           "Serving", "Task", "low_confidence", "quoted"]

INPUT_KINDS = ("image", "text", "audio", "table")
# Hooks of contract 0.1 that the core stopped calling, with what replaced them. Results under 0.1's text key
# ("translation") still read (suite.outputs); a custom ``page`` callable still replaces the generic page.
RETIRED_PARTS = {
    "predict_encoded": "no longer called since 0.2: decode_input serves every input (the in-graph fast paths "
                       "measured 1.03-1.04x, docs/BENCHMARKS.md)",
}
OUTPUT_KINDS = ("classes", "text")


class Task(Learning, Serving, Appearance):
    """Base class of every task plugin: what it is (below), how it learns (``Learning``), how it serves
    (``Serving``) and how it appears in the app (``Appearance``). Class attributes describe it; methods
    implement it; docs/PLUGINS.md lists every part with its role, type and default."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    # Modules that register the plugin's serializable Keras objects (layers, losses, schedules). The core
    # imports them right before it loads a saved model, not when the plugin registers: listing plugins, the
    # CLI's help and the app's first paint then never import TensorFlow, and a fresh process that loads a
    # ``model.keras`` finds every class however lazily the plugin imports them itself.
    keras_modules: ClassVar[tuple[str, ...]] = ()

    REQUIRED_METHODS: ClassVar[tuple[str, ...]] = ("load_data", "build_model", "decode_input")

    def import_keras_objects(self) -> None:
        """Import ``keras_modules`` so that their ``register_keras_serializable`` classes are known."""
        for module in self.keras_modules:
            importlib.import_module(module)

    # ---- helpers -------------------------------------------------------------------------------
    @classmethod
    def missing_parts(cls) -> list[str]:
        """Names of required attributes or methods the subclass does not provide (for the registry)."""
        missing = [attr for attr in ("name", "title", "input_kind") if not getattr(cls, attr, "")]
        if getattr(cls, "input_kind", "") and cls.input_kind not in INPUT_KINDS:
            missing.append(f"input_kind (one of {', '.join(INPUT_KINDS)})")
        if cls.output_kind not in OUTPUT_KINDS:
            missing.append(f"output_kind (one of {', '.join(OUTPUT_KINDS)})")
        if not (isinstance(cls.config_class, type) and issubclass(cls.config_class, TaskConfig)):
            missing.append("config_class (a TaskConfig subclass)")
        placeholders = _placeholders()
        for method in cls.REQUIRED_METHODS:
            impl = getattr(cls, method, None)
            if impl is None or impl in placeholders:  # still the base classes' NotImplementedError
                missing.append(method)
        return missing

    @classmethod
    def retired_parts(cls) -> list[str]:
        """One line per hook the plugin defines that this version of the contract no longer calls (a plugin
        written against an older contract still loads and works; ``suite plugins`` says what it can drop)."""
        return [f"{name}: {why}" for name, why in RETIRED_PARTS.items()
                if any(name in vars(klass) for klass in cls.__mro__ if klass not in _CORE_BASES)]

    def make_config(self, overrides: dict | None = None) -> TaskConfig:
        return self.config_class.from_dict(overrides or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _placeholders() -> set:
    """The base classes' required methods that only raise NotImplementedError."""
    return {Learning.load_data, Learning.build_model, Serving.decode_input, ClassificationTask.build_inputs,
            ClassificationTask.build_backbone}


def low_confidence(n_classes: int) -> float:
    """The top-class probability under which a prediction is called unsure: 0.75 for 2 classes, 0.67 for 3,
    0.55 for 10, never under 0.5."""
    return 0.5 + 0.5 / max(2, n_classes)


class ClassificationTask(Task):
    """A task that maps one raw input to one of N classes.

    Concrete plugins declare ``build_inputs`` (the raw ``keras.Input``), ``build_preprocessor`` (registered
    layers from raw input to features) and ``build_backbone``; this class adds the head, the loss, metrics,
    post-processing and a full evaluation report.
    """

    REQUIRED_METHODS = ("load_data", "decode_input", "build_inputs", "build_backbone")

    def build_inputs(self, config: TaskConfig, meta: dict):
        raise NotImplementedError

    def build_preprocessor(self, config: TaskConfig, data: DataBundle):
        """Layers from raw input to the backbone's input. Returns a callable on tensors (or None)."""
        return None

    def build_backbone(self, config: TaskConfig, meta: dict):
        """A callable from preprocessed tensors to a feature vector (or to logits' input)."""
        raise NotImplementedError

    def head_dropout(self, config: TaskConfig) -> float:
        return float(getattr(config, "dropout", 0.0))

    def build_model(self, config: TaskConfig, data: DataBundle):
        import keras

        meta = data.meta
        inputs = self.build_inputs(config, meta)
        x = inputs
        preprocessor = self.build_preprocessor(config, data)
        if preprocessor is not None:
            x = preprocessor(x)
        x = self.build_backbone(config, meta)(x)
        if self.head_dropout(config) > 0:
            x = keras.layers.Dropout(self.head_dropout(config), name="head_dropout")(x)
        logits = keras.layers.Dense(len(meta["class_names"]), name="logits")(x)
        # Probabilities stay float32 under mixed precision.
        probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
        return keras.Model(inputs, probs, name=self.name)

    def batch(self, ds, batch_size: int, *, training: bool, config: TaskConfig, meta: dict):
        import tensorflow as tf

        n = len(meta["class_names"])
        ds = ds.batch(batch_size, drop_remainder=False, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), n)), num_parallel_calls=tf.data.AUTOTUNE)

    def loss(self, config: TaskConfig, meta: dict):
        import keras

        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)

    def metrics(self, config: TaskConfig, meta: dict) -> list:
        import keras

        metrics: list = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if len(meta["class_names"]) > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
        return metrics

    def postprocess(self, outputs: Any, meta: dict, top_k: int = 5) -> list[dict]:
        names = meta["class_names"]
        probs = np.asarray(outputs, dtype=np.float32)
        k = max(1, min(top_k, len(names)))
        results = []
        for row in probs:
            values = row.tolist()
            # Ties keep class order both ways. Plain Python for the usual handful of classes: a third of
            # argsort's cost there, which counts in single-example serving.
            if len(values) <= 64:
                order = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:k]
            else:
                order = np.argsort(-row, kind="stable")[:k].tolist()
            top = [{"label": names[i], "score": values[i]} for i in order]
            results.append({"label": top[0]["label"], "score": top[0]["score"], "top": top})
        return results

    def output_notes(self, result: dict, meta: dict) -> list[str]:
        """Low confidence: the top class scores under ``low_confidence(n)``, halfway between a uniform guess and
        certainty for two classes (0.75) and towards 0.5 for many; such inputs are often unlike the training data."""
        n = len(meta.get("class_names") or []) or 2
        score = float(result.get("score", 1.0))
        if score < low_confidence(n):
            return [f"Low confidence ({score:.0%}): the model is unsure; the input may be unlike what it was "
                    "trained on."]
        return []

    def evaluate(self, model, ds, config: TaskConfig, meta: dict, *, limit: int = 0) -> dict[str, Any]:
        from suite.evaluation import classification_report

        return classification_report(self, model, ds, config, meta, limit=limit)


# The contract's own classes: a retired hook counts only where a plugin's class defines it.
_CORE_BASES = (Task, ClassificationTask, Learning, Serving, Appearance, object)
