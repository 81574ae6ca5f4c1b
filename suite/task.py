"""The task contract: what a plugin provides, and the generic behaviour it inherits.

A plugin subclasses :class:`Task` (or :class:`ClassificationTask`) and declares only what is specific to its
task: its config dataclass, how to load data, the model's raw-input preprocessing and backbone, and how user
input becomes a model input. Training, evaluation, saving, export and the UI live in the core and drive every
task through this interface (the TF Model Garden ``build_model / build_inputs / metrics`` contract, with
KerasHub's split of a generic base class that owns graph building from concrete parts).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from suite.config import TaskConfig
from suite.errors import InputError
from suite.outputs import text_of

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from suite.budget import TrainingPlan
    from suite.data import DataBundle, DataSource
    from suite.export.signatures import PortableGraph
    from suite.views import View

INPUT_KINDS = ("image", "text", "audio", "table")
_ABSTRACT = ("load_data", "build_model", "decode_input", "build_inputs", "build_backbone")
OUTPUT_KINDS = ("classes", "text")


@dataclasses.dataclass
class Example:
    """An example input shown in the app and used by tests: ``value`` is what a user would give."""

    name: str
    value: bytes | str
    expected: str | None = None  # the label a good model should predict, when known


@dataclasses.dataclass
class Explanation:
    """A task-specific explanation the app knows how to draw.

    kind ``heatmap``: data = {"image": HxWx3 uint8, "heatmap": HxW float in [0, 1]}
    kind ``tokens``: data = {"tokens": [str], "scores": [float]} (positive pushes toward the prediction)
    kind ``attention``: data = {"source": [str], "target": [str], "weights": target x source floats}
    """

    kind: str
    data: dict[str, Any]
    caption: str = ""


class Task:
    """Base class of every task plugin. Class attributes describe it; methods implement it."""

    # ---- identity and UI metadata ---------------------------------------------------------------
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_kind: ClassVar[str] = ""  # one of INPUT_KINDS: picks the app's input widgets
    output_kind: ClassVar[str] = "classes"  # one of OUTPUT_KINDS; result schemas in suite.outputs
    output_title: ClassVar[str] = "Output"  # heading over a text result in the app, e.g. "Translation"
    # Config overrides that make a good small student for `suite distill` (the first is the default).
    distill_students: ClassVar[dict[str, dict]] = {}
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    data_formats: ClassVar[str] = ""  # one paragraph: the local path layouts load_data accepts
    tfds_examples: ClassVar[tuple[str, ...]] = ()  # e.g. ("tfds:mnist",)
    upload_types: ClassVar[tuple[str, ...]] = ()  # file extensions the app's uploader offers
    sample_synthetic: ClassVar[bool] = False  # the built-in sample is generated, not real data
    # What the built-in sample is and what a model trained on it can be expected to do, in one plain sentence
    # (shown beside sample models on the page and in their model card).
    sample_description: ClassVar[str] = ""
    # Rough seconds the sample model takes to train on a quiet 2-core machine (0 = unknown): the app balances
    # its background lanes and its first "ready in ~N s" with it.
    sample_seconds: ClassVar[float] = 0.0
    # Modules that register the plugin's serializable Keras objects (layers, losses, schedules). The core
    # imports them right before it loads a saved model, not when the plugin registers: listing plugins, the
    # CLI's help and the app's first paint then never import TensorFlow, and a fresh process that loads a
    # ``model.keras`` finds every class however lazily the plugin imports them itself.
    keras_modules: ClassVar[tuple[str, ...]] = ()
    monitor: ClassVar[str] = "val_accuracy"  # metric that picks the best checkpoint
    monitor_mode: ClassVar[str] = "max"
    page: ClassVar[Any] = None  # optional callable(task) drawing a custom Streamlit page
    # Config overrides that train a usable model on the built-in sample in well under a minute on 2 CPU
    # cores: the app's one-click "train on the built-in sample" and its first-start sample models use it.
    sample_overrides: ClassVar[dict[str, Any]] = {}

    REQUIRED_METHODS: ClassVar[tuple[str, ...]] = ("load_data", "build_model", "decode_input")

    def import_keras_objects(self) -> None:
        """Import ``keras_modules`` so that their ``register_keras_serializable`` classes are known."""
        for module in self.keras_modules:
            importlib.import_module(module)

    # ---- data ------------------------------------------------------------------------------------
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

    # ---- model -----------------------------------------------------------------------------------
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

    # ---- prediction --------------------------------------------------------------------------------
    def decode_input(self, raw: bytes | str, meta: dict) -> np.ndarray:
        """Turn user input (file bytes or text) into one raw model input; raise InputError if it can't be."""
        raise NotImplementedError

    def stack_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Stack decoded inputs into a batch. Override when inputs vary in shape (pad them)."""
        if len(inputs) == 1 and isinstance(inputs[0], np.ndarray):
            return inputs[0][None]  # one example, the common serving case: a view, no copy
        try:
            return np.stack(inputs)
        except ValueError:
            raise InputError("inputs of different shapes cannot be predicted in one batch") from None

    def predict_batch(self, forward, batch: np.ndarray, meta: dict) -> Any:
        """Run the model on a batch of decoded inputs. ``forward`` is the compiled model call."""
        return np.asarray(forward(batch))

    def predict_encoded(self, forward, raw: Any, meta: dict) -> Any | None:
        """Outputs for one raw input decoded inside a compiled graph, or None to take the Python decode path.

        For inputs whose in-graph decoding gives exactly what ``decode_input`` would (image: a plain 8-bit
        PNG), one graph call instead of Python decoding; anything unusual, bad or failing returns None, and
        ``decode_input`` then decodes it or raises the one-line error.
        """
        return None

    def postprocess(self, outputs: Any, meta: dict, top_k: int = 5) -> list[dict]:
        """Turn a batch of outputs into one human-readable dict per input.

        Classification: ``{"label": str, "score": float, "top": [{"label", "score"}, ...]}``.
        Text output (``output_kind == "text"``): ``{"text": str, ...}``. The schemas: ``suite.outputs``.
        """
        raise NotImplementedError

    def explain(self, model: keras.Model, x: np.ndarray, meta: dict) -> Explanation | None:
        """An optional explanation of the prediction for one decoded input."""
        return None

    def input_notes(self, raw: Any, meta: dict) -> list[str]:
        """One plain line per change made to the input on its way in (cropped, resampled, converted to
        grayscale...), shown beside the prediction. Cheap (headers, not a second decode); never raises."""
        return []

    def output_notes(self, result: dict, meta: dict) -> list[str]:
        """One plain line per reason to doubt this prediction (low confidence, a cut input, an empty answer)."""
        if self.output_kind == "text":
            notes = []
            if result.get("truncated"):
                notes.append("The input was longer than the model reads: only its beginning was used.")
            if not (text_of(result) or "").strip():
                notes.append("The model gave no output for this input: it may be unlike anything it was trained on.")
            return notes
        return []

    def examples(self, meta: dict) -> list[Example]:
        """Example inputs for the app's "Try it" tab and for tests."""
        return []

    def input_views(self, x: np.ndarray, meta: dict) -> list[View]:
        """Drawings of one decoded input as the model sees it (``suite.views.View``: a waveform over seconds, a
        spectrogram, a signal's plot), shown under the prediction on the app's page. Default: none."""
        return []

    def page_sections(self) -> dict[str, Callable[[Any, Any], None]]:
        """Sections of your own added at the end of tabs of the generic page, ``{tab title: fn(ui, run)}``
        with tab titles "Try it", "Train", "Evaluate" and "Export"; ``ui`` is the ``streamlit`` module and
        ``run`` the selected run (None before any). The generic tab stays; to replace the whole page, set
        ``page``. Default: none."""
        return {}

    def preview(self, x: Any) -> str | bytes:
        """A short preview of one raw input for reports: text, or PNG bytes for images."""
        return str(x)[:200]

    # ---- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, ds: tf.data.Dataset, config: TaskConfig, meta: dict,
                 *, limit: int = 0) -> dict[str, Any]:
        """Task metrics on an unbatched split. Classification tasks inherit a full report."""
        raise NotImplementedError

    # ---- export --------------------------------------------------------------------------------
    def export_limits(self) -> dict[str, str]:
        """Formats this task's model cannot be carried in, with the one-line reason."""
        return {}

    def serving_signatures(self, model: keras.Model, meta: dict) -> dict[str, Any]:
        """SavedModel signatures: name -> ``tf.function`` with an ``input_signature`` of raw inputs.

        ``serving_default`` must be present. The default (``suite.export.signatures``) takes the model's raw
        inputs and returns ``probabilities``, ``label`` and ``score`` for classification, and passes a string
        output through as ``text`` for text tasks. Override to add e.g. an encoded-image-bytes signature
        or to serve a decoding loop.
        """
        from suite.export.signatures import default_serving_signatures

        return default_serving_signatures(self, model, meta)

    def portable_graph(self, model: keras.Model, meta: dict) -> PortableGraph | None:
        """The model with numeric inputs, for TFLite and ONNX when its raw-input graph needs string ops.

        LiteRT's builtin ops and ONNX have no regex, lowercasing or string hash tables, so a model that
        tokenizes strings inside cannot be carried as it is. A task returns a ``PortableGraph`` (a function of
        numeric inputs that computes the same probabilities, and the one-line encoder from the raw input,
        e.g. a text's UTF-8 bytes); the export carries it and verifies it on the same raw examples as the
        other formats. ``None`` (the default): TFLite and ONNX carry the raw-input graph.
        """
        return None

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
        for method in cls.REQUIRED_METHODS:
            impl = getattr(cls, method, None)
            # Still the abstract placeholder from this module's base classes?
            if impl is None or getattr(impl, "__module__", "") == __name__ and impl.__qualname__.split(".")[0] in (
                "Task", "ClassificationTask") and method in _ABSTRACT:
                missing.append(method)
        return missing

    def make_config(self, overrides: dict | None = None) -> TaskConfig:
        return self.config_class.from_dict(overrides or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


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
