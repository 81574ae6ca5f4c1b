"""The sentiment plugin: the shared plugin suite, plus its data layouts, bad inputs and explanations."""

from __future__ import annotations

import time

import numpy as np
import pytest

from suite.data import parse_source
from suite.errors import ConfigError, DataSourceError, InputError, SuiteError
from suite.testing import PluginTestSuite
from suite_plugins.sentiment.task import SentimentTask

SAMPLE = SentimentTask.sample_overrides  # what the app's built-in sample model trains with


@pytest.fixture(scope="module")
def task():
    from suite.registry import get_registry

    return get_registry().get("sentiment")


class TestSentimentPlugin(PluginTestSuite):
    task_name = "sentiment"
    overrides = SAMPLE
    bad_inputs = ["", b"", "   \n\t  ", "\x00\x00\x00", b"\x00 \x01"]

    def test_sample_model_learns_the_sample(self, trained_run):
        assert trained_run.metrics["test"]["accuracy"] >= 0.8, trained_run.metrics["test"]["accuracy"]
        mistakes = trained_run.metrics["test"]["confident_mistakes"]
        assert all(isinstance(m.get("preview"), str) and m["preview"] for m in mistakes)

    def test_hostile_text_gets_a_prediction_in_bounded_time(self, predictor):
        names = predictor.meta["class_names"]
        hostile = [
            "great movie " * 90_000,  # about 1 MB, cut to max_chars
            b"a \xff\xfe\xc3 wonderful film",  # invalid UTF-8: decoded with U+FFFD replacement
            "\ud800 lovely story",  # a lone surrogate cannot be encoded: replaced by '?'
            "dull\x00plot\x00",  # NUL characters
            "😀😀 superb 🎬",
            "הסרט היה נפלא",  # right-to-left (Hebrew)
            "مرحبا بالعالم",
        ]
        for raw in hostile:
            start = time.perf_counter()
            result = predictor.predict([raw])[0]
            assert time.perf_counter() - start < 2.0, raw[:20]
            assert result["label"] in names and 0 <= result["score"] <= 1

    def test_long_text_explanation_is_bounded(self, predictor):
        start = time.perf_counter()
        exp = predictor.explain("boring " * 5000)
        assert time.perf_counter() - start < 10.0
        # the input is cut to max_chars (20000) characters before the model, and so before the explanation
        assert len(exp.data["tokens"]) == len(exp.data["scores"]) == len(("boring " * 5000)[:20000].split())

    def test_occlusion_credits_the_sentiment_word(self, predictor):
        exp = predictor.explain("The story is really wonderful.")
        assert exp.kind == "tokens"
        tokens, scores = exp.data["tokens"], exp.data["scores"]
        assert tokens == ["The", "story", "is", "really", "wonderful."]
        assert predictor.predict_one("The story is really wonderful.")["label"] == "positive"
        assert scores[-1] > 0 and scores[-1] == max(scores), scores

    def test_sample_model_reads_what_a_newcomer_types_first(self, predictor, task):
        """The app pre-selects these examples on a model trained on the sample: its first prediction must be right."""
        curated = [e for e in task.examples(predictor.meta) if not e.name.startswith("held-out")]
        assert len(curated) == 3
        for text, expected in [*((e.value, e.expected) for e in curated), ("I loved it!", "positive"),
                               ("I hated this movie.", "negative"), ("Not good at all.", "negative")]:
            assert predictor.predict_one(text)["label"] == expected, text

    def test_negation_flips_the_prediction(self, predictor):
        assert predictor.predict_one("The ending is brilliant.")["label"] == "positive"
        assert predictor.predict_one("The ending is not brilliant.")["label"] == "negative"


# ---- data sources (no training) --------------------------------------------------------------------------
def test_sample_is_deterministic_balanced_and_negated():
    from suite_plugins.sentiment.data import sample_texts

    texts, labels = sample_texts()
    assert (texts, labels) == sample_texts()
    assert len(set(texts)) == len(texts) >= 300
    assert 0.35 < labels.count("positive") / len(labels) < 0.65
    negated = [lab for t, lab in zip(texts, labels, strict=True) if " not " in t and any(
        w in t for w in ("great", "wonderful", "superb"))]
    assert negated and set(negated) == {"negative"}


def test_csv_columns_found_by_name_and_string_labels(tmp_path, task):
    path = tmp_path / "reviews.csv"
    rows = ["id,Review,Sentiment"] + [f'{i},"good, fun film {i}",positive' for i in range(20)] + [
        f'{i},"bad film {i}",negative' for i in range(20)]
    path.write_text("\n".join(rows), encoding="utf-8")
    bundle = task.load_data(parse_source(str(path)), task.make_config())
    assert bundle.meta["class_names"] == ["negative", "positive"]
    assert sum(bundle.counts.values()) == 40 and bundle.counts["test"] >= 1
    x, y = next(iter(bundle.train))
    assert b"film" in x.numpy()


def test_tsv_with_numeric_labels_and_explicit_columns(tmp_path, task):
    path = tmp_path / "data.tsv"
    path.write_text("score\tphrase\n" + "".join(f"{i % 3}\tphrase \"{i}\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(DataSourceError, match="cannot find the text column"):
        task.load_data(parse_source(str(path)), task.make_config())
    cfg = task.make_config({"text_column": "phrase", "label_column": "score"})
    bundle = task.load_data(parse_source(str(path)), cfg)
    assert bundle.meta["class_names"] == ["0", "1", "2"]  # multi-class, numeric order
    with pytest.raises(DataSourceError, match="no label column 'nope'"):
        task.load_data(parse_source(str(path)), task.make_config({"text_column": "phrase", "label_column": "nope"}))


def test_glue_style_folder_uses_its_splits(tmp_path, task):
    for split, n in (("train", 12), ("dev", 4), ("test", 6)):
        col = "content" if split == "test" else "sentence"
        (tmp_path / f"{split}.tsv").write_text(
            f"label\t{col}\n" + "".join(f"{i % 2}\tsentence {i} .\n" for i in range(n)), encoding="utf-8")
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    assert bundle.counts == {"train": 12, "val": 4, "test": 6}
    assert bundle.meta["class_names"] == ["negative", "positive"]


def test_aclimdb_style_folders(tmp_path, task):
    for split in ("train", "test"):
        for cls in ("pos", "neg"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(5):
                (folder / f"{i}_7.txt").write_bytes(f"{cls} review {i}<br />more \xe9".encode())
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    assert bundle.meta["class_names"] == ["neg", "pos"]
    assert bundle.counts["test"] == 10 and bundle.counts["train"] + bundle.counts["val"] == 10


def test_flat_class_folders_multiclass(tmp_path, task):
    for cls in ("angry", "happy", "sad"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            (tmp_path / cls / f"{i}.txt").write_text(f"{cls} text {i}")
    bundle = task.load_data(parse_source(str(tmp_path)), task.make_config())
    assert bundle.meta["class_names"] == ["angry", "happy", "sad"]
    assert sum(bundle.counts.values()) == 18


def test_unreadable_layouts_fail_with_one_line(tmp_path, task):
    (tmp_path / "notes.md").write_text("nothing")
    with pytest.raises(DataSourceError, match="no train.csv"):
        task.load_data(parse_source(str(tmp_path)), task.make_config())
    one = tmp_path / "one.csv"
    one.write_text("text,label\na,x\nb,x\n")
    with pytest.raises(DataSourceError, match="at least two classes"):
        task.load_data(parse_source(str(one)), task.make_config())


@pytest.mark.parametrize("spec", ["tfds:imdb_reviews", "tfds:glue/sst2"])
def test_tfds_offline_is_one_clear_line(spec, task, tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataSourceError) as err:
        task.load_data(parse_source(spec), task.make_config())
    assert "no network" in str(err.value) and "\n" not in str(err.value)


def test_pretrained_preset_offline_is_one_clear_line(task, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    bundle = task.load_data(parse_source("sample"), task.make_config())
    with pytest.raises(SuiteError) as err:
        task.build_model(task.make_config({"model": "bert_tiny_en_uncased"}), bundle)
    assert "bert_tiny_en_uncased" in str(err.value) and "no network" in str(err.value)
    assert "\n" not in str(err.value)


# ---- model pieces --------------------------------------------------------------------------------------------
def test_standardize_splits_punctuation_and_clitics():
    import tensorflow as tf

    from suite_plugins.sentiment.layers import standardize_text

    out = standardize_text(tf.constant(["Didn't LIKE it!! It's ÉPIC.<br />a\x00b"])).numpy()[0].decode()
    assert out.split() == ["did", "n't", "like", "it", "!", "!", "it", "'s", "épic", ".", "a", "b"]


def test_fast_adapt_matches_keras_adapt():
    import keras

    from suite_plugins.sentiment.layers import fast_adapt, standardize_text

    texts = np.array(["I loved it!", "didn't like it at all", "great fun, great cast", "awful and boring"] * 3,
                     dtype=object)
    for mode, ngrams in (("tf_idf", 2), ("int", None)):
        kw = {"max_tokens": 30, "ngrams": ngrams, "output_mode": mode, "standardize": standardize_text}
        if mode == "int":
            kw["output_sequence_length"] = 8
        ours, theirs = keras.layers.TextVectorization(**kw), keras.layers.TextVectorization(**kw)
        fast_adapt(ours, texts, ngrams=ngrams or 1)
        theirs.adapt(texts)
        assert ours.get_vocabulary() == theirs.get_vocabulary()
        np.testing.assert_allclose(np.asarray(ours(texts)), np.asarray(theirs(texts)), rtol=1e-5)


@pytest.mark.parametrize("model", ["cnn", "bilstm", "transformer"])
def test_sequence_models_build_and_run_on_raw_text(model, task):
    cfg = task.make_config({"model": model, "max_tokens": 500, "sequence_length": 16, "embedding_dim": 16,
                            "hidden_units": 8})
    bundle = task.load_data(parse_source("sample"), cfg)
    net = task.build_model(cfg, bundle)
    out = np.asarray(net(np.array(["a truly superb film", "not good"], dtype=object)))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_linear_model_is_regularised_and_reloads_safely(task, tmp_path):
    import keras

    with pytest.raises(ConfigError):
        task.make_config({"l2": -1.0})
    cfg = task.make_config({"model": "tfidf_linear", "max_tokens": 500, "l2": 1e-3})
    net = task.build_model(cfg, task.load_data(parse_source("sample"), cfg))
    assert [layer.name for layer in net.layers if isinstance(layer, keras.layers.Dense)] == ["logits"]
    texts = np.array(["a truly superb film", "not good"], dtype=object)
    out = np.asarray(net(texts))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert len(net.losses) == 1 and float(net.losses[0]) >= 0  # the L2 penalty on the n-gram weights
    net.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(texts)), out, rtol=1e-5)


def test_ensemble_serves_the_mean_and_reloads_safely(task, tmp_path):
    import keras

    cfg = task.make_config({"model": "ensemble", "ensemble_members": "tfidf_linear,cnn,bilstm", "max_tokens": 500,
                            "sequence_length": 16, "embedding_dim": 16, "hidden_units": 8})
    net = task.build_model(cfg, task.load_data(parse_source("sample"), cfg))
    vectorizers = [la for la in net.layers if isinstance(la, keras.layers.TextVectorization)]
    assert sorted(la._output_mode for la in vectorizers) == ["int", "tf_idf"]  # one per kind, shared
    texts = np.array(["a truly superb film", "not good"], dtype=object)
    out = np.asarray(net(texts))
    names = [f"{m}_probabilities" for m in cfg.ensemble_members]
    members = keras.Model(net.input, [net.get_layer(n).output for n in names])(texts)
    np.testing.assert_allclose(out, np.mean([np.asarray(p) for p in members], axis=0), rtol=1e-5, atol=1e-6)
    net.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(texts)), out, rtol=1e-5)
    with pytest.raises(ConfigError, match="ensemble_members"):
        task.make_config({"model": "ensemble", "ensemble_members": "bilstm"})


def test_ensemble_members_get_the_gradient_of_their_own_loss():
    """Through EnsembleMean, each member's gradient equals that of its own cross-entropy (label smoothing too)."""
    import keras
    import tensorflow as tf

    from suite_plugins.sentiment.layers import EnsembleMean, ProbabilityCrossentropy

    rng = np.random.default_rng(0)
    logits = [tf.Variable(rng.normal(size=(4, 3)).astype("float32")) for _ in range(2)]
    y = tf.constant([0, 2, 1, 2])
    loss = ProbabilityCrossentropy(label_smoothing=0.1)
    keras_loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    onehot = tf.one_hot(y, 3)
    with tf.GradientTape(persistent=True) as tape:
        probs = [tf.nn.softmax(v) for v in logits]
        joint = loss(onehot, EnsembleMean()(probs))
        alone = [loss(onehot, p) for p in probs]
        plain = loss(onehot, (probs[0] + probs[1]) / 2)
    for v, own in zip(logits, alone, strict=True):
        np.testing.assert_allclose(tape.gradient(joint, v), tape.gradient(own, v), rtol=1e-4, atol=1e-6)
        # a plain mean would hand each member the ensemble's error instead
        assert not np.allclose(tape.gradient(plain, v), tape.gradient(own, v), atol=1e-3)
    # same value as Keras's cross-entropy on probabilities that sum to one
    assert float(joint) == pytest.approx(float(keras_loss(onehot, (probs[0] + probs[1]) / 2)), rel=1e-5)


def test_decode_input_cleans_and_bounds(task):
    meta = {"class_names": ["negative", "positive"], "max_chars": 1000}
    assert task.decode_input(b"ok \xff", meta).item() == "ok \ufffd"
    assert task.decode_input("\ud800 ok", meta).item() == "? ok"
    assert task.decode_input("a\x00b", meta).item() == "a b"
    start = time.perf_counter()
    big = task.decode_input("x" * 5_000_000, meta).item()
    assert len(big) == 1000 and time.perf_counter() - start < 0.5
    for bad in ("", "\x00", b"   ", " \u2028 "):
        with pytest.raises(InputError, match="empty text"):
            task.decode_input(bad, meta)
    with pytest.raises(InputError):
        task.decode_input(12345, meta)


def test_config_rejects_nonsense(task):
    for bad in ({"model": "gpt"}, {"ngrams": 0}, {"dropout": 1.0}, {"max_tokens": 5}, {"sequence_length": 1}):
        with pytest.raises(ConfigError):
            task.make_config(bad)


def test_examples_have_expected_labels(task):
    meta = {"class_names": ["negative", "positive"], "examples": ["x"], "example_labels": ["positive"]}
    examples = task.examples(meta)
    assert {e.expected for e in examples} == {"negative", "positive"}
    assert all(isinstance(e.value, str) and e.value for e in examples)


def test_ensemble_exports_to_int8_tflite_and_onnx_from_utf8_bytes(task, tmp_path, monkeypatch):
    """Every vectorizer kind through the portable graph (TF-IDF bigrams, token ids, a BiLSTM): UTF-8 bytes in."""
    from ai_edge_litert.interpreter import Interpreter

    from suite.export import export_run
    from suite.trainer import TrainOptions, train

    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    run = train(task, "sample", {"model": "ensemble", "ensemble_members": "tfidf_linear,cnn,bilstm", "epochs": 2,
                                 "max_tokens": 2000, "sequence_length": 24,
                                 "embedding_dim": 32, "hidden_units": 16, "learning_rate": 1e-2},
                options=TrainOptions(tensorboard=False))
    assert run.status == "completed"
    reports = {**export_run(run, formats="onnx", examples=40),
               **export_run(run, formats="tflite", quantize="int8", examples=40)}
    for fmt, rep in reports.items():
        assert rep["supported"], (fmt, rep.get("reason"))
        assert rep["notes"][0].startswith("input text_utf8: the text's UTF-8 bytes"), rep["notes"]
        assert rep["verification"]["top1_agreement"] >= 0.95, (fmt, rep["verification"])
    assert reports["onnx"]["verification"]["max_abs_diff"] < 1e-4  # float: the tokenizer is exact
    runner = Interpreter(model_path=reports["tflite"]["path"]).get_signature_runner("carried")
    names = run.meta["class_names"]
    model = run.load_model()
    for text, label in (("A warm, funny and beautifully acted film. I loved it!", "positive"),
                        ("The plot is dull and the acting is painfully bad.", "negative")):
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)[None]
        probs = runner(text_utf8=data)["probabilities"][0]
        keras_probs = np.asarray(model(np.array([text], dtype=object)))[0]
        assert names[int(np.argmax(probs))] == names[int(np.argmax(keras_probs))] == label
