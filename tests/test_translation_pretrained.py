"""Fine-tuning a pretrained KerasHub seq2seq preset, without a download: a tiny BART saved as a local preset.

The tiny preset (one layer, width 32, a byte-level BPE vocabulary of the 256 byte symbols plus a few merges)
goes through exactly the path a downloaded ``bart_base_en`` would: ``Seq2SeqLM.from_preset`` -> the suite's
trainer -> ``model.keras`` -> predict -> SavedModel export serving strings -> strings.
"""

from __future__ import annotations

import csv

import pytest

from suite.errors import ConfigError, InputError, SuiteError

MERGES = ["Ġ t", "e n", "o n", "Ġ s", "r e", "Ġ c", "i e", "e s"]


def write_tiny_bart_preset(path, *, max_sequence_length: int = 64) -> None:
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2}
    for symbol in bytes_to_unicode()[1]:  # every byte has a symbol: any text tokenizes
        vocab.setdefault(symbol, len(vocab))
    for merge in MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<mask>"] = len(vocab)
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocab, merges=MERGES)
    backbone = keras_hub.models.BartBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=32,
                                             intermediate_dim=64, dropout=0.0, max_sequence_length=max_sequence_length)
    lm = keras_hub.models.BartSeq2SeqLM(backbone, keras_hub.models.BartSeq2SeqLMPreprocessor(tokenizer))
    lm.save_to_preset(str(path))


@pytest.fixture(scope="module")
def mt_task():
    from suite.registry import get

    return get("translation")


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-bart") / "preset"
    write_tiny_bart_preset(path)
    return path


def overrides(preset, **more):
    return {"pretrained": str(preset), "epochs": 2, "batch_size": 16, "learning_rate": 3e-3,
            "lr_schedule": "constant", "label_smoothing": 0.0, "max_train_examples": 64, "val_limit": 16,
            "eval_limit": 4, "source_sequence_length": 32, "target_sequence_length": 32, "max_decode_length": 8,
            **more}


@pytest.fixture(scope="module")
def pretrained_run(mt_task, tiny_preset, tmp_path_factory):
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    store = RunStore(tmp_path_factory.mktemp("pretrained-runs"))
    return train(mt_task, "sample", overrides(tiny_preset), options=TrainOptions(tensorboard=False), store=store)


def test_fine_tuning_runs_through_the_trainer_and_the_loss_drops(pretrained_run):
    assert pretrained_run.status == "completed", pretrained_run.info.get("error")
    with open(pretrained_run.file("history.csv"), newline="") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and losses[-1] < losses[0] - 0.2, losses
    meta = pretrained_run.meta
    assert meta["pretrained"] and meta["pad_id"] == 1 and "source_vocab" not in meta  # the preset's tokenizer
    test = pretrained_run.metrics["test"]
    assert test["examples"] == 4 and isinstance(test["bleu"], float) and isinstance(test["chrf"], float)


def test_predict_returns_strings_and_flags_truncation(pretrained_run):
    from suite.predictor import Predictor

    pred = Predictor(pretrained_run)
    assert type(pred.model).__name__ == "PretrainedTranslator"
    short, long = pred.predict(["forty-two", "one two three " * 40])
    assert isinstance(short["text"], str) and isinstance(long["text"], str)
    assert short["truncated"] is False and 2 < short["source_tokens"] <= 32
    assert long["truncated"] is True and "only its start" in long["note"]
    with pytest.raises(InputError, match="empty"):
        pred.predict(["  "])
    assert pred.explain("forty-two") is None  # no attention view for presets, and no crash


def test_suite_predict_reloads_the_keras_file_in_a_fresh_process(pretrained_run):
    """``suite predict`` loads ``model.keras`` with safe_mode=True in a new interpreter (nothing pre-imported)."""
    import json
    import os
    import subprocess
    import sys

    long_text = "one two three " * 40
    proc = subprocess.run(
        [sys.executable, "-m", "suite.cli", "predict", "--json", str(pretrained_run.path), "seven", long_text],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    short, long = json.loads(proc.stdout)
    assert isinstance(short["text"], str) and short["truncated"] is False
    assert long["truncated"] is True and "only its start" in long["note"]


def test_saved_model_serves_strings_to_strings(pretrained_run):
    import numpy as np
    import tensorflow as tf

    from suite.export import export_run

    reports = export_run(pretrained_run, formats="saved_model,tflite", quantize="none", examples=4)
    saved = reports["saved_model"]
    assert saved["supported"] is True, saved
    assert saved["verification"]["exact_match_agreement"] == 1.0, saved["verification"]
    assert reports["tflite"]["supported"] is False and "saved_model" in reports["tflite"]["reason"]
    serve = tf.saved_model.load(saved["path"]).signatures["serving_default"]
    [arg] = serve.structured_input_signature[1]
    out = next(iter(serve(**{arg: tf.constant(["seven", "twenty-one"])}).values()))
    assert out.dtype == tf.string and out.shape == (2,)
    assert all(isinstance(s, bytes) for s in np.asarray(out))


def test_lengths_beyond_the_preset_are_one_config_error(mt_task, tiny_preset):
    from suite.data import DataBundle

    config = mt_task.make_config(overrides(tiny_preset, source_sequence_length=100))
    with pytest.raises(ConfigError, match="maximum of 64 tokens"):
        mt_task.build_model(config, DataBundle(None, None, None, {}))


def test_missing_local_preset_offline_is_one_clear_line(mt_task, monkeypatch, tmp_path):
    monkeypatch.setenv("SUITE_OFFLINE", "1")
    config = mt_task.make_config({"pretrained": str(tmp_path / "no-such-preset")})
    with pytest.raises(SuiteError, match="no network") as err:
        mt_task.load_data(__import__("suite.data").data.parse_source("sample"), config)
    assert "\n" not in str(err.value)


def test_a_folder_that_is_not_a_preset_is_one_clear_line(tmp_path):
    from suite_plugins.translation.pretrained import load_seq2seq

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SuiteError, match="could not load the seq2seq preset") as err:
        load_seq2seq(str(tmp_path))
    assert "\n" not in str(err.value)
