"""How a task serves: raw input -> decoded batch -> forward -> postprocessed result -> notes and explanation, in
the spirit of a Hugging Face pipeline, and how its model is carried into each export format (one role of the
task contract; ``suite.task.Task`` joins the three roles). Result schemas: ``suite.outputs``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from suite.errors import InputError
from suite.outputs import text_of

if TYPE_CHECKING:
    import keras

    from suite.export.signatures import PortableGraph


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


class Serving:
    """What ``suite.predictor.Predictor`` (CLI, app, benchmarks) and the exports call, in that order."""

    output_kind: ClassVar[str] = "classes"  # one of OUTPUT_KINDS; result schemas in suite.outputs

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
