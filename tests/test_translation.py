"""The translation plugin: the shared plugin suite plus data parsing, bucketing, decoding and bad-input checks."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from suite.errors import DataSourceError, InputError, SuiteError
from suite.testing import PluginTestSuite

OVERRIDES = {"epochs": 3}


@pytest.fixture(scope="module")
def mt_task():
    from suite.registry import get

    return get("translation")


@pytest.fixture(scope="module")
def sample_run(mt_task, tmp_path_factory):
    """One short training run on the built-in sample, shared by every test in this file."""
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    store = RunStore(tmp_path_factory.mktemp("translation-runs"))
    overrides = {**mt_task.sample_overrides, **OVERRIDES}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(mt_task, "sample", overrides, options=TrainOptions(tensorboard=False), store=store)
    run.warnings = [str(w.message) for w in caught]
    return run


@pytest.fixture(scope="module")
def model(sample_run):
    return sample_run.load_model()


@pytest.fixture(scope="module")
def pred(sample_run, model):
    from suite.predictor import Predictor

    return Predictor(sample_run, model=model)


class TestTranslationPlugin(PluginTestSuite):
    task_name = "translation"
    overrides = {**OVERRIDES}
    bad_inputs = [b"", "   \n\t ", b"\xff\xfe\xfd"]
    # TFLite and ONNX cannot carry the decoding loop: the export must say so (export_limits) and name saved_model.
    # The SavedModel export is checked (with agreement) below, and the .keras reload by the shared suite.
    export_formats = ("tflite", "onnx")

    @pytest.fixture(scope="class")
    @classmethod
    def trained_run(cls, sample_run):
        return sample_run

    def test_sample_model_learned_something(self, trained_run):
        test = trained_run.metrics["test"]
        assert test["examples"] > 0
        assert test["bleu"] > 20, test  # a copy-nothing model scores ~0; the tiny model reaches far more
        assert 0.5 < test["length_ratio"] < 1.5
        assert {"source", "reference", "translation"} <= set(test["samples"][0])


# ---- data ---------------------------------------------------------------------------------------------
def test_read_pairs_with_and_without_attribution(tmp_path):
    from suite_plugins.translation.task import read_pairs

    f = tmp_path / "spa.txt"
    f.write_text("Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n\nHi.\tHola.\n", encoding="utf-8")
    assert read_pairs(f) == [("Go.", "Ve."), ("Hi.", "Hola.")]
    assert read_pairs(f, reverse=True) == [("Ve.", "Go."), ("Hola.", "Hi.")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("Go.\tVe.\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match=r"bad.tsv:2"):
        read_pairs(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="no sentence pairs"):
        read_pairs(empty)


def _write(path, pairs):
    path.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")


def test_single_file_is_split_with_a_seed(mt_task, tmp_path):
    from suite_plugins.translation.task import _split, read_pairs

    pairs = [(f"I have {i} apples.", f"Tengo {i} manzanas.") for i in range(60)]
    _write(tmp_path / "pairs.tsv", pairs)
    config = mt_task.make_config({"source_vocab_size": 50, "target_vocab_size": 50})
    a = _split(read_pairs(tmp_path / "pairs.tsv"), config, 0)
    assert a == _split(pairs, config, 0)
    assert a != _split(pairs, config, 1)
    assert sorted(a[0] + a[1] + a[2]) == sorted(pairs)
    assert len(a[1]) == 6 and len(a[2]) == 6


def test_folder_layout(mt_task, tmp_path):
    from suite.data import parse_source

    train = [(f"I have {i} apples.", f"Tengo {i} manzanas.") for i in range(40)]
    _write(tmp_path / "train.tsv", train)
    _write(tmp_path / "val.tsv", train[:3])
    _write(tmp_path / "test.tsv", train[3:8])
    config = mt_task.make_config({"source_vocab_size": 40, "target_vocab_size": 40})
    bundle = mt_task.load_data(parse_source(str(tmp_path)), config)
    assert bundle.counts == {"train": 40, "val": 3, "test": 5}
    capped = mt_task.load_data(parse_source(str(tmp_path)), config.replace(val_limit=2))
    assert capped.counts["val"] == 2 and len(list(capped.val)) == 2
    src, tgt = next(iter(bundle.test))
    assert (src.numpy().decode(), tgt.numpy().decode()) == train[3]
    assert bundle.meta["source_vocab"][:4] == ["[PAD]", "[UNK]", "[START]", "[END]"]
    assert not bundle.synthetic
    (tmp_path / "train.tsv").unlink()
    with pytest.raises(DataSourceError, match="train.tsv"):
        mt_task.load_data(parse_source(str(tmp_path)), config)


def test_training_batches_are_bucketed_and_shifted(mt_task):
    from suite.data import parse_source
    from suite_plugins.translation.model import END_ID, START_ID

    config = mt_task.make_config({**mt_task.sample_overrides, "batch_size": 16})
    bundle = mt_task.load_data(parse_source("sample"), config)
    batches = list(mt_task.batch(bundle.train, 16, training=True, config=config, meta=bundle.meta))
    widths = set()
    edges = [b + 1 for b in config.bucket_boundaries]
    for x, y in batches:
        enc, dec, y = x["encoder_inputs"].numpy(), x["decoder_inputs"].numpy(), y.numpy()
        assert dec.shape == y.shape and len(enc) == len(dec) <= 16
        width = max(enc.shape[1], dec.shape[1])
        widths.add(width)
        # every element of a batch falls in the same length bucket
        lengths = np.maximum((enc != 0).sum(1), (dec != 0).sum(1))
        bucket = np.searchsorted(edges, lengths, side="right")
        assert len(set(bucket.tolist())) == 1
        assert (dec[:, 0] == START_ID).all()
        n = (y != 0).sum(1)
        assert (y[np.arange(len(y)), n - 1] == END_ID).all()
        body = (y[:, :-1] != 0) & (y[:, :-1] != END_ID)  # targets are the decoder inputs shifted by one
        np.testing.assert_array_equal(dec[:, 1:][body], y[:, :-1][body])
    assert len(widths) > 2, "batches should be as wide as their bucket, not all padded to one maximum"
    assert sum(len(x["encoder_inputs"]) for x, _ in batches) == bundle.counts["train"]


def test_validation_batches_have_a_known_count(mt_task):
    """Keras reads a validation set of unknown length until it runs out, and warns "Your input ran out of data"."""
    from suite.data import parse_source

    config = mt_task.make_config({**mt_task.sample_overrides, "batch_size": 16})
    bundle = mt_task.load_data(parse_source("sample"), config)
    val = mt_task.batch(bundle.val, 16, training=False, config=config, meta=bundle.meta)
    n = bundle.counts["val"]
    assert int(val.cardinality()) == -(-n // 16)
    batches = list(val)
    assert sum(len(y) for _, y in batches) == n and len(batches) == -(-n // 16)


def test_training_does_not_run_out_of_validation_data(sample_run):
    assert not [w for w in sample_run.warnings if "ran out of data" in w], sample_run.warnings


def test_sample_numbers_follow_spanish_rules():
    from suite_plugins.translation.numbers import english, sample_pairs, spanish

    assert spanish(0) == "cero" and spanish(16) == "dieciséis" and spanish(22) == "veintidós"
    assert spanish(100) == "cien" and spanish(101) == "ciento uno" and spanish(555) == "quinientos cincuenta y cinco"
    assert spanish(21, before_noun=True) == "veintiún" and spanish(931, before_noun=True) == "novecientos treinta y un"
    assert english(342) == "three hundred forty-two"
    pairs = sample_pairs()
    assert pairs == sample_pairs() and len(set(pairs)) == len(pairs) > 1000


# ---- decoding ---------------------------------------------------------------------------------------------
SENTENCES = ["three hundred forty-two", "I have twenty-one books.", "There are ninety-nine cats.", "seven",
             "one two three four five six seven eight nine ten", "zebra quantum ñandú 漢字"]


def test_cached_greedy_equals_uncached_greedy(model):
    ids, _ = model.tokenize_source(SENTENCES)
    cached = model.generate(ids, cached=True).numpy()
    uncached = model.generate(ids, cached=False).numpy()
    np.testing.assert_array_equal(cached, uncached)
    assert cached.shape == (len(SENTENCES), model.decode_length())


def test_beam_search_log_prob_is_at_least_greedy(model):
    ids, _ = model.tokenize_source(SENTENCES)
    greedy, greedy_lp = model.generate(ids, beam_size=1, return_scores=True)
    beam, beam_lp = model.generate(ids, beam_size=4, return_scores=True)
    rescored = model.score(ids, beam).numpy()
    np.testing.assert_allclose(rescored, beam_lp.numpy(), atol=1e-3)  # the sampler's scores are real log-probs
    assert np.all(beam_lp.numpy() >= greedy_lp.numpy() - 1e-4), (beam_lp, greedy_lp)


def test_length_cap_bounds_the_output(model):
    ids, _ = model.tokenize_source(["one two three"])
    out = model.generate(ids, max_length=3).numpy()
    assert out.shape == (1, 3)


# ---- the serving path: XLA-compiled decoding per shape bucket ------------------------------------------------
def test_length_and_batch_buckets():
    from suite_plugins.translation.serving import bucket, length_buckets

    assert length_buckets(40) == (8, 16, 32, 40)
    assert length_buckets(8) == (8,) and length_buckets(5) == (5,)
    lengths = length_buckets(40)
    assert bucket(1, 1, lengths) == (1, 8) and bucket(3, 9, lengths) == (4, 16) and bucket(64, 40, lengths) == (64, 40)
    assert bucket(65, 4, lengths) is None and bucket(1, 41, lengths) is None


def test_source_ids_are_padded_to_their_bucket_in_graph(model):
    """Extra columns are PAD (masked by the encoder), extra rows repeat the first row (real input)."""
    from suite_plugins.translation.serving import Translator, bucket

    tr = Translator(model)
    for texts in (["seven"], SENTENCES[:3], SENTENCES, SENTENCES * 11, ["one two three " * 40]):
        raw = model.tokenize_source(texts)[0].numpy()
        ids = tr._tokenize(texts).numpy()
        key = bucket(len(texts), raw.shape[1], tr.lengths) or (len(texts), bucket(1, raw.shape[1], tr.lengths)[1])
        assert ids.shape == key, (len(texts), raw.shape, ids.shape)  # over 64 rows: rows as they are
        np.testing.assert_array_equal(ids[: len(texts), : raw.shape[1]], raw)
        assert not ids[:, raw.shape[1]:].any()
        assert (ids[len(texts):] == ids[0]).all()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_compiled_decoding_gives_the_graphs_translations(model, beam_size):
    """Once a shape is compiled its calls decode with XLA, and translations and token counts are unchanged."""
    import threading

    import tensorflow as tf

    from suite_plugins.translation.serving import Translator, bucket

    graph = tf.function(lambda s: (model.translate(s, beam_size=beam_size), model.tokenize_source(s)[1]),
                        input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)

    def reference(texts):  # the model's own graph: what every call gave before XLA
        out, counts = graph(tf.constant(texts))
        return [t.decode("utf-8") for t in out.numpy()], [int(n) for n in counts.numpy()]

    sentences = SENTENCES[:5]  # in-vocabulary text: no near-tied logits for kernels to flip
    tr = Translator(model, compile_after=1, beam_size=beam_size)
    batches = [[s] for s in sentences] + [sentences[:3], sentences]
    for b in batches:  # cold: the one-graph path, which queues a compile per shape
        assert tr(b) == reference(b)
        assert len([t for t in threading.enumerate() if t.name == "xla-decode-compiler"]) <= 1  # one at a time
    tr.wait()
    assert tr.failed is None
    widths = [int(model.tokenize_source(b)[0].shape[1]) for b in batches]
    assert tr.compiled == sorted({bucket(len(b), w, tr.lengths) for b, w in zip(batches, widths, strict=True)})
    assert (1, 8) in tr.compiled and (8, 16) in tr.compiled

    for b in batches:
        assert tr(b) == reference(b)
        assert tr.last_compiled, b  # decoded by XLA, not the graph
    many = sentences * 13  # 65 rows: beyond the compiled batch sizes, decoded unpadded on the graph
    assert tr(many) == reference(many) and not tr.last_compiled
    assert tr(sentences[:2]) == reference(sentences[:2]) and not tr.last_compiled  # a shape not compiled


def test_a_failure_on_a_compiled_shape_falls_back_to_the_graph(model, caplog):
    import tensorflow as tf

    from suite_plugins.translation.serving import Translator

    tr = Translator(model, compile_after=1)
    want = tr(["seven"])
    tr.wait()
    assert tr(["seven"]) == want and tr.last_compiled

    def exhausted(strings, keys):
        raise tf.errors.ResourceExhaustedError(None, None, "out of memory\nmore")

    tr._guarded = exhausted
    assert tr(["seven"]) == want and not tr.last_compiled
    assert tr.failed == "ResourceExhaustedError: out of memory" and "graph path" in caplog.text


def test_a_shape_is_compiled_only_once_seen_twice(model):
    from suite_plugins.translation.serving import Translator

    tr = Translator(model)
    tr(["seven"])
    assert tr._worker is None and tr._queue == []  # a one-off call (suite predict) never pays for a compile
    tr(["eight"])
    tr.wait()
    assert tr.compiled == [(1, 8)]


def test_one_translator_per_predictor_and_an_env_switch_keeps_the_graph(model, monkeypatch):
    from types import SimpleNamespace

    from suite_plugins.translation import serving

    forward = SimpleNamespace(model=model)  # what a predictor's compiled call carries
    monkeypatch.setenv("SUITE_TRANSLATION_XLA", "0")
    tr = serving.translator_for(forward)
    for _ in range(3):
        tr(["seven"])
    assert tr._worker is None and tr.compiled == []
    assert serving.translator_for(forward) is tr and serving.translator_for(SimpleNamespace(model=model)) is not tr


def test_xla_failure_falls_back_to_the_graph_for_good(model, caplog):
    from suite_plugins.translation.serving import Translator

    tr = Translator(model, compile_after=1)

    def broken(ids):
        raise RuntimeError("no XLA here\nsecond line")

    tr._xla = broken
    first = tr(["seven"])
    tr.wait()
    assert tr.failed == "RuntimeError: no XLA here" and tr.compiled == []
    assert "graph path" in caplog.text
    assert tr(["seven"]) == first and tr._worker is None and tr.compiled == []  # still served, never retried


# ---- prediction and bad input ------------------------------------------------------------------------------
def test_predict_truncates_long_text_and_says_so(pred):
    short, long = pred.predict(["forty-two", "one two three " * 40])
    assert short["truncated"] is False and "note" not in short
    assert long["truncated"] is True and "only its start" in long["note"]
    assert long["source_tokens"] > pred.meta["source_sequence_length"]


def test_unseen_characters_and_one_megabyte(pred):
    from suite_plugins.translation.serving import translator_for

    [r] = pred.predict(["😀 漢字 ñandú"])
    assert isinstance(r["text"], str)
    pred.predict(["warm up"])
    translator_for(pred.forward).wait()  # a compile the warm-up may have queued would share the timed call's CPU
    t = time.perf_counter()
    [big] = pred.predict(["seven hundred " * 80_000])  # ~1.1 MB
    assert time.perf_counter() - t < 5.0
    assert big["truncated"] is True
    with pytest.raises(InputError, match="empty"):
        pred.predict([""])


def test_suite_predict_in_a_fresh_process_on_a_megabyte_and_a_long_sentence(sample_run, tmp_path):
    """The CLI reloads model.keras in a new interpreter (the plugin registers its classes on load) and answers a
    1 MB file and an over-long literal sentence (too long to be a file name) with one truncated translation each."""
    import json
    import os
    import subprocess
    import sys

    big = tmp_path / "big.txt"
    big.write_text("seven hundred " * 80_000, encoding="utf-8")  # ~1.1 MB
    long_text = "one two three " * 40
    proc = subprocess.run(
        [sys.executable, "-m", "suite.cli", "predict", "--json", str(sample_run.path), "forty-two", str(big),
         long_text], capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    short, from_file, long = json.loads(proc.stdout)
    assert isinstance(short["text"], str) and short["truncated"] is False
    assert from_file["truncated"] is True and long["truncated"] is True and "only its start" in long["note"]


def test_explanation_is_a_target_by_source_attention_map(pred):
    exp = pred.explain("I have twenty-one books.")
    assert exp.kind == "attention"
    src, tgt, w = exp.data["source"], exp.data["target"], np.asarray(exp.data["weights"])
    assert src[:3] == ["I", "have", "twenty"]
    assert w.shape == (len(tgt), len(src)) and len(tgt) >= 1
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-3)


def test_saved_model_export_goes_from_string_to_string(sample_run, model):
    """The export module's SavedModel carries tokenization and decoding: a source string in, the string out."""
    import tensorflow as tf

    export = pytest.importorskip("suite.export")
    report = export.export_run(sample_run, formats="saved_model", quantize="none", examples=8)["saved_model"]
    assert report["supported"] is True, report
    assert report["verification"]["exact_match_agreement"] == 1.0, report["verification"]
    loaded = tf.saved_model.load(report["path"])
    serve = loaded.signatures["serving_default"]
    texts = tf.constant(SENTENCES[:3])
    [arg] = serve.structured_input_signature[1]  # the signature's one string input, by name
    got = next(iter(serve(**{arg: texts}).values())).numpy()
    np.testing.assert_array_equal(got, model(texts).numpy())


def test_export_limits_name_saved_model(mt_task):
    limits = mt_task.export_limits()
    assert set(limits) == {"tflite", "onnx"}
    assert all("saved_model" in why for why in limits.values())


# ---- offline paths ---------------------------------------------------------------------------------------------
def test_tfds_offline_is_one_clear_line(mt_task, monkeypatch):
    from suite.data import parse_source

    monkeypatch.setenv("SUITE_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", "/nonexistent-tfds")
    with pytest.raises(DataSourceError, match="no network") as err:
        mt_task.load_data(parse_source("tfds:ted_hrlr_translate/pt_to_en"), mt_task.make_config())
    assert "\n" not in str(err.value)


def test_pretrained_preset_offline_is_one_clear_line(mt_task, monkeypatch):
    from suite.data import DataBundle

    monkeypatch.setenv("SUITE_OFFLINE", "1")
    config = mt_task.make_config({"pretrained": "bart_base_en"})
    with pytest.raises(SuiteError, match="no network") as err:
        mt_task.build_model(config, DataBundle(None, None, None, {"source_vocab": [], "target_vocab": []}))
    assert "\n" not in str(err.value)


def test_app_examples_spread_over_the_test_split():
    """Sorted files (the sample by number, Anki's spa.txt by length) put their least typical pairs first."""
    from suite_plugins.translation.task import _spread

    pairs = [(f"s{i}", f"t{i}") for i in range(100)]
    assert _spread(pairs) == [pairs[i] for i in (0, 20, 40, 60, 80)]
    assert _spread(pairs[:3]) == pairs[:3] and _spread([]) == []
