"""The trainer's callbacks in isolation: best-so-far survives a resume; early stopping's patience too."""

import json

import keras
import numpy as np

from suite.callbacks import BestCheckpoint, EarlyStoppingResumable


def _model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_best_checkpoint_keeps_its_best_value_across_a_resume(tmp_path):
    first = BestCheckpoint(tmp_path, "val_accuracy", "max")
    model = _model()
    first.set_model(model)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_accuracy": 0.90, "val_loss": 0.3})
    best_weights = [w.copy() for w in model.get_weights()]
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1

    # The process dies; a new one resumes with different (worse) weights.
    resumed = BestCheckpoint(tmp_path, "val_accuracy", "max")
    model2 = _model()
    resumed.set_model(model2)
    resumed.on_train_begin()
    assert resumed.best == 0.90 and resumed.best_epoch == 1
    resumed.on_epoch_end(1, {"val_accuracy": 0.85})  # worse than before the crash: not saved
    assert json.loads((tmp_path / "best.json").read_text())["value"] == 0.90
    assert resumed.restore(model2)
    for a, b in zip(model2.get_weights(), best_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    resumed.on_epoch_end(2, {"val_accuracy": 0.95})
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "monitor": "val_accuracy", "mode": "max", "value": 0.95, "epoch": 3}


def test_early_stopping_patience_survives_a_resume(tmp_path):
    state = tmp_path / "early.json"
    model = _model()
    first = EarlyStoppingResumable(state, monitor="val_loss", mode="min", patience=2)
    first.set_model(model)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_loss": 1.0})
    first.on_epoch_end(1, {"val_loss": 1.1})  # one epoch without improvement
    second = EarlyStoppingResumable(state, monitor="val_loss", mode="min", patience=2)
    second.set_model(model)
    second.on_train_begin()
    assert second.wait == 1 and second.best == 1.0
    second.on_epoch_end(2, {"val_loss": 1.2})
    assert model.stop_training
