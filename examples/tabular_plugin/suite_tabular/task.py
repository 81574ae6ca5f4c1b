"""Classify rows of numbers. Raw input: a float vector; standardisation happens inside the model."""

from __future__ import annotations

import csv
import dataclasses
import io

import numpy as np

from suite.config import TaskConfig
from suite.data import DataBundle, DataSource, stratified_split_indices
from suite.errors import DataSourceError, InputError
from suite.task import ClassificationTask, Example


@dataclasses.dataclass
class TabularConfig(TaskConfig):
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-2
    hidden_units: int = 32
    hidden_layers: int = 2
    dropout: float = 0.1
    label_column: str = "label"

    field_help = {
        "hidden_units": "Width of each hidden layer.",
        "hidden_layers": "Hidden layers between the standardized features and the output (0 = a linear model).",
        "dropout": "Share of the last hidden layer's outputs dropped at random before the output layer while "
                   "training.",
        "label_column": "The CSV column holding each row's class; every other column is a numeric feature.",
    }

    def validate(self) -> None:
        super().validate()
        if self.hidden_units < 1 or self.hidden_layers < 0:
            from suite.errors import ConfigError

            raise ConfigError("hidden_units must be >= 1 and hidden_layers >= 0")


def _read_csv(path, label_column: str):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataSourceError(f"{path} has no rows")
    if label_column not in rows[0]:
        raise DataSourceError(f"{path} has no {label_column!r} column (columns: {', '.join(rows[0])})")
    features = [c for c in rows[0] if c != label_column]
    try:
        x = np.array([[float(r[c]) for c in features] for r in rows], dtype=np.float32)
    except ValueError as err:
        raise DataSourceError(f"{path}: every feature column must be numeric ({err})") from None
    labels = [r[label_column] for r in rows]
    return x, labels, features


class TabularClassification(ClassificationTask):
    name = "tabular_classification"
    title = "Tabular classification"
    description = "Predict a class from a row of numeric features (a CSV with a label column)."
    input_kind = "table"
    sample_description = "the 150 iris flowers (four measurements in cm): it knows only those three species"
    distill_students = {"small": {"hidden_units": 8, "hidden_layers": 1}}
    config_class = TabularConfig
    data_formats = "A CSV file with numeric feature columns and a `label` column (set `label_column`)."
    upload_types = ("csv", "txt")
    sample_overrides = {"epochs": 20}

    def load_data(self, source: DataSource, config: TabularConfig) -> DataBundle:
        import tensorflow as tf

        if source.kind == "sample":
            from sklearn.datasets import load_iris

            iris = load_iris()
            x = iris.data.astype(np.float32)
            class_names = list(iris.target_names)
            y = iris.target.astype(np.int64)
            features = list(iris.feature_names)
        elif source.kind == "path":
            x, labels, features = _read_csv(source.path, config.label_column)
            class_names = sorted(set(labels))
            y = np.array([class_names.index(v) for v in labels], dtype=np.int64)
        else:
            raise DataSourceError("tabular_classification reads 'sample' or a CSV path, not TFDS")
        train, val, test = stratified_split_indices(y, config.val_fraction, config.test_fraction, seed=0)

        def ds(idx):
            return tf.data.Dataset.from_tensor_slices((x[idx], y[idx]))

        meta = {"class_names": class_names, "features": features, "n_features": int(x.shape[1]),
                "examples": [x[i].tolist() for i in test[:3]], "example_labels": [class_names[y[i]] for i in test[:3]]}
        return DataBundle(ds(train), ds(val), ds(test), meta,
                          counts={"train": len(train), "val": len(val), "test": len(test)})

    def build_inputs(self, config, meta):
        import keras

        return keras.Input(shape=(meta["n_features"],), dtype="float32", name="features")

    def build_preprocessor(self, config, data):
        import keras

        # float32 whatever the run's precision: adapt() sums batch statistics into float32 variables, and under
        # a mixed policy the batch mean comes out in bfloat16/float16 and the sum fails.
        norm = keras.layers.Normalization(name="standardize", dtype="float32")
        norm.adapt(data.train.map(lambda x, y: x).batch(256))
        return norm

    def build_backbone(self, config, meta):
        import keras

        layers = []
        for i in range(config.hidden_layers):
            layers.append(keras.layers.Dense(config.hidden_units, activation="relu", name=f"hidden{i}"))
        return keras.Sequential(layers, name="mlp") if layers else keras.layers.Identity()

    def decode_input(self, raw, meta):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError("a row must be UTF-8 text of comma-separated numbers") from None
        try:
            row = next(csv.reader(io.StringIO(raw.strip())), [])
            values = np.array([float(v) for v in row], dtype=np.float32)
        except (ValueError, csv.Error):
            raise InputError("a row must be comma-separated numbers") from None
        if values.shape != (meta["n_features"],):
            raise InputError(f"expected {meta['n_features']} numbers, got {values.size}")
        if not np.all(np.isfinite(values)):
            raise InputError("numbers must be finite")
        return values

    def examples(self, meta):
        return [
            Example(f"held-out {label} row ({i + 1})", ",".join(f"{v:g}" for v in row), expected=label)
            for i, (row, label) in enumerate(zip(meta.get("examples", []), meta.get("example_labels", []), strict=False))
        ]

    def preview(self, x):
        return ",".join(f"{v:g}" for v in np.asarray(x).ravel())
