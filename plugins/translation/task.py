"""Machine translation: sentence pairs in, an encoder-decoder Transformer that translates strings to strings."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from suite import progress
from suite.config import TaskConfig
from suite.data import DataBundle, DataSource, split_indices, tfds_load
from suite.errors import ConfigError, DataSourceError, InputError
from suite.task import Example, Explanation, Task, quoted

MAX_CHARS_PER_TOKEN = 50  # text beyond sequence_length * this is cut before tokenizing (bounded time on 1 MB)


@dataclasses.dataclass
class TranslationConfig(TaskConfig):
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 5e-4
    lr_schedule: Literal["constant", "cosine", "warmup_cosine"] = "warmup_cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    source_lang: str = "en"
    target_lang: str = "es"
    reverse: bool = False
    source_vocab_size: int = 8000
    target_vocab_size: int = 8000
    source_sequence_length: int = 40
    target_sequence_length: int = 40
    encoder_layers: int = 2
    decoder_layers: int = 2
    embed_dim: int = 256
    num_heads: int = 8
    intermediate_dim: int = 1024
    dropout: float = 0.1
    lowercase: bool = False
    beam_size: int = 1
    max_decode_length: int = 40
    bucket_boundaries: tuple[int, ...] = (8, 12, 16, 24, 32)
    vocab_sample: int = 40_000  # bounds the one-off time spent learning the vocabularies
    eval_limit: int = 2000
    val_limit: int = 2000
    split_seed: int = 0
    pretrained: str = ""

    ui_fields = ("epochs", "batch_size", "learning_rate", "source_lang", "target_lang", "encoder_layers",
                 "decoder_layers", "embed_dim", "beam_size")
    field_help = {
        "source_lang": "Language code of the text translated from (a label for the model card and pages).",
        "target_lang": "Language code of the translations (a label for the model card and pages).",
        "reverse": "Translate a TSV's second column into its first, instead of first into second.",
        "source_vocab_size": "WordPiece vocabulary learned for the source language.",
        "target_vocab_size": "WordPiece vocabulary learned for the target language.",
        "source_sequence_length": "Source tokens read per sentence; longer sentences are cut.",
        "target_sequence_length": "Target tokens trained on per sentence; longer ones are cut.",
        "encoder_layers": "Transformer layers reading the source.",
        "decoder_layers": "Transformer layers writing the translation.",
        "embed_dim": "Width of every token vector and Transformer layer.",
        "num_heads": "Attention heads per layer (must divide embed_dim).",
        "intermediate_dim": "Width of each layer's feed-forward block.",
        "dropout": "Share of activations dropped at random while training.",
        "lowercase": "Lowercase both languages before learning and translating.",
        "beam_size": "Translations kept while decoding: 1 = greedy (fastest), 4-5 = beam search (often "
                     "better, slower).",
        "max_decode_length": "Longest translation written, START token included; capped by "
                             "target_sequence_length.",
        "bucket_boundaries": "Sentence lengths at which training batches are split, so short sentences are not "
                             "padded to the longest.",
        "vocab_sample": "Sentences used to learn each vocabulary.",
        "eval_limit": "Evaluation scores only the first N test pairs (decoding is slow); 0 = all.",
        "val_limit": "Validation loss on only the first N validation pairs each epoch; 0 = all.",
        "split_seed": "Seed of the train/validation/test split of a single file.",
        "pretrained": "A KerasHub seq2seq preset to fine-tune instead of the built-in Transformer: a name "
                      "(bart_base_en, t5_small_multi; downloaded, needs the network) or a local preset folder. "
                      "Its own tokenizer replaces the learned one and the size fields are unused; use a small "
                      "learning rate (about 5e-5).",
    }
    field_units = {"source_vocab_size": "tokens", "target_vocab_size": "tokens", "source_sequence_length": "tokens",
                   "target_sequence_length": "tokens", "max_decode_length": "tokens",
                   "bucket_boundaries": "tokens", "vocab_sample": "sentences", "eval_limit": "pairs",
                   "val_limit": "pairs"}
    field_labels = {"source_lang": "Source language", "target_lang": "Target language",
                    "embed_dim": "Embedding size", "num_heads": "Attention heads",
                    "intermediate_dim": "Feed-forward size", "pretrained": "Pretrained preset"}

    def validate(self) -> None:
        super().validate()
        for name in ("source_vocab_size", "target_vocab_size", "source_sequence_length", "target_sequence_length",
                     "encoder_layers", "decoder_layers", "embed_dim", "num_heads", "intermediate_dim", "beam_size",
                     "vocab_sample"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.source_vocab_size < 16 or self.target_vocab_size < 16:
            raise ConfigError("source_vocab_size and target_vocab_size must be >= 16")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.target_sequence_length < 2 or self.max_decode_length < 2:
            raise ConfigError("target_sequence_length and max_decode_length must be >= 2")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        b = list(self.bucket_boundaries)
        if any(x < 1 for x in b) or b != sorted(set(b)):
            raise ConfigError(f"bucket_boundaries must be increasing positive integers, got {b}")
        if self.eval_limit < 0 or self.val_limit < 0:
            raise ConfigError("eval_limit and val_limit must be >= 0")
        if not self.source_lang.strip() or not self.target_lang.strip():
            raise ConfigError("source_lang and target_lang must be language codes such as en and es")


# ---- data ---------------------------------------------------------------------------------------------
def read_pairs(path: Path, *, reverse: bool = False) -> list[tuple[str, str]]:
    """Tatoeba/Anki pairs ``source<TAB>target[<TAB>attribution]``; blank lines skipped, anything else one error."""
    pairs = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataSourceError(f"{path} is not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            raise DataSourceError(
                f"{path}:{number}: expected 'source<TAB>target[<TAB>attribution]', got {line[:80]!r}")
        src, tgt = fields[0].strip(), fields[1].strip()
        pairs.append((tgt, src) if reverse else (src, tgt))
    if not pairs:
        raise DataSourceError(f"{path} holds no sentence pairs")
    return pairs


def _dataset(pairs):
    import tensorflow as tf

    src = tf.constant([p[0] for p in pairs], tf.string)
    tgt = tf.constant([p[1] for p in pairs], tf.string)
    return tf.data.Dataset.from_tensor_slices((src, tgt))


def _spread(pairs, k: int = 5):
    """``k`` pairs evenly spaced over the test split: the app's examples. The first ``k`` would all come from the
    file's start, which sorted files (Anki's spa.txt by length, the sample by number) make the least typical."""
    step = max(1, len(pairs) // k)
    return list(pairs[::step][:k])


def _split(pairs, config, seed):
    tr, va, te = split_indices(len(pairs), config.val_fraction, config.test_fraction, seed=seed)
    return [pairs[i] for i in tr], [pairs[i] for i in va], [pairs[i] for i in te]


class Translation(Task):
    name = "translation"
    title = "Machine translation"
    output_title = "Translation"
    description = ("Translate sentences from one language into another with an encoder-decoder Transformer "
                   "trained on your sentence pairs (Tatoeba/Anki TSV or a TFDS translation set).")
    input_kind = "text"
    output_kind = "text"
    config_class = TranslationConfig
    data_formats = (
        "A tab-separated file of pairs `source<TAB>target[<TAB>attribution]` (the Tatoeba/Anki format, no "
        "header), split into train/val/test with `split_seed`; or a folder holding `train.tsv` and optionally "
        "`val.tsv` and `test.tsv` in that format (missing splits are cut from train). `reverse=true` translates "
        "the second column into the first.")
    tfds_examples = ("tfds:ted_hrlr_translate/pt_to_en", "tfds:wmt14_translate/de-en")
    upload_types = ("txt",)
    sample_synthetic = True
    keras_modules = ("suite_plugins.translation.model", "suite_plugins.translation.pretrained")
    sample_seconds = 45.0
    sample_description = ("English number words and their Spanish translations (\"twelve\" -> \"doce\"): it "
                          "knows only English number words, not other sentences")
    monitor = "val_loss"
    monitor_mode = "min"
    # Sequence-level distillation (suite distill): half the default's layers, decoding about twice as fast.
    distill_students = {"small": {"encoder_layers": 1, "decoder_layers": 1}}
    sample_overrides = {
        "epochs": 8, "batch_size": 32, "learning_rate": 3e-3, "warmup_epochs": 1.0, "label_smoothing": 0.0,
        "encoder_layers": 1, "decoder_layers": 1, "embed_dim": 96, "num_heads": 4, "intermediate_dim": 192,
        "dropout": 0.0, "source_vocab_size": 300, "target_vocab_size": 300, "source_sequence_length": 16,
        "target_sequence_length": 24, "max_decode_length": 24, "bucket_boundaries": (6, 10, 14),
    }

    def __init__(self):
        self._tokenizer_cache: dict = {}
        self._preprocessors: dict = {}  # pretrained preset -> its KerasHub preprocessor

    # ---- data ----------------------------------------------------------------------------------------
    def load_data(self, source: DataSource, config: TranslationConfig) -> DataBundle:
        synthetic = False
        if source.kind == "sample":
            from suite_plugins.translation.numbers import sample_pairs

            pairs = sample_pairs()
            if config.reverse:
                pairs = [(b, a) for a, b in pairs]
            train, val, test = _split(pairs, config, config.split_seed)
            synthetic = True
        elif source.kind == "path":
            train, val, test = self._load_path(source.path, config)
        elif source.kind == "tfds":
            return self._load_tfds(source, config)
        else:
            raise DataSourceError(f"unsupported data source {source.spec!r}")
        if config.val_limit and val:
            val = val[: config.val_limit]
        meta = self._make_meta(config, [p[0] for p in train], [p[1] for p in train], test)
        return DataBundle(_dataset(train), _dataset(val) if val else None, _dataset(test) if test else None, meta,
                          counts={"train": len(train), "val": len(val), "test": len(test)}, synthetic=synthetic)

    def _load_path(self, path: Path, config):
        if path.is_dir():
            train_file = path / "train.tsv"
            if not train_file.is_file():
                raise DataSourceError(f"folder {path} has no train.tsv (expected train.tsv, val.tsv, test.tsv)")
            train = read_pairs(train_file, reverse=config.reverse)
            val = read_pairs(path / "val.tsv", reverse=config.reverse) if (path / "val.tsv").is_file() else None
            test = read_pairs(path / "test.tsv", reverse=config.reverse) if (path / "test.tsv").is_file() else None
            if val is None or test is None:
                rest, cut_val, cut_test = _split(train, config.replace(
                    val_fraction=config.val_fraction if val is None else 0.0,
                    test_fraction=config.test_fraction if test is None else 0.0), config.split_seed)
                train, val, test = rest, val if val is not None else cut_val, test if test is not None else cut_test
            return train, val, test
        return _split(read_pairs(path, reverse=config.reverse), config, config.split_seed)

    def _load_tfds(self, source: DataSource, config):
        (train, val, test), info = tfds_load(source, ["train", "validation", "test"], as_supervised=True)
        if train is None:
            raise DataSourceError(f"TFDS data set {source.tfds_name!r} has no train split")
        keys = tuple(info.supervised_keys or ())
        swap = len(keys) == 2 and keys[1] == config.source_lang and keys[0] == config.target_lang
        if swap:
            train, val, test = (d.map(lambda a, b: (b, a)) if d is not None else None for d in (train, val, test))
        sources, targets = [], []
        for s, t in train.take(0 if config.pretrained else config.vocab_sample).as_numpy_iterator():
            sources.append(s.decode("utf-8"))
            targets.append(t.decode("utf-8"))
        test_pairs = [(s.decode(), t.decode()) for s, t in test.take(5).as_numpy_iterator()] if test else []
        meta = self._make_meta(config, sources, targets, test_pairs)
        meta["cacheable"] = info.splits["train"].num_examples <= 2_000_000
        counts = {name: info.splits[name].num_examples for name in ("train", "validation", "test")
                  if name in info.splits}
        if "validation" in counts:
            counts["val"] = counts.pop("validation")
        if config.val_limit and val is not None:
            val = val.take(config.val_limit)
            counts["val"] = min(counts.get("val", config.val_limit), config.val_limit)
        return DataBundle(train, val, test, meta, counts=counts)

    def _make_meta(self, config, sources, targets, test_pairs) -> dict[str, Any]:
        from suite_plugins.translation.model import learn_vocabulary

        shown = _spread(test_pairs)
        meta = {
            "source_lang": config.source_lang,
            "target_lang": config.target_lang,
            "source_sequence_length": config.source_sequence_length,
            "examples": [p[0] for p in shown],
            "example_references": [p[1] for p in shown],
        }
        if config.pretrained:  # the preset brings its tokenizer: nothing to learn
            pre = self._preprocessor(config.pretrained)
            return {**meta, "pretrained": config.pretrained, "pad_id": int(pre.tokenizer.pad_token_id)}
        n = config.vocab_sample
        return {
            **meta,
            "source_vocab": learn_vocabulary(sources[:n], config.source_vocab_size, lowercase=config.lowercase),
            "target_vocab": learn_vocabulary(targets[:n], config.target_vocab_size, lowercase=config.lowercase),
            "lowercase": config.lowercase,
        }

    def _preprocessor(self, preset: str):
        from suite_plugins.translation.pretrained import load_preprocessor

        if preset not in self._preprocessors:
            self._preprocessors[preset] = load_preprocessor(preset)
        return self._preprocessors[preset]

    def _tokenizers(self, meta):
        from suite_plugins.translation.model import WordPiece

        key = (len(meta["source_vocab"]), len(meta["target_vocab"]), hash(tuple(meta["source_vocab"][:200])),
               hash(tuple(meta["target_vocab"][:200])), bool(meta.get("lowercase")))
        if key not in self._tokenizer_cache:
            lower = bool(meta.get("lowercase"))
            self._tokenizer_cache[key] = (WordPiece(meta["source_vocab"], lowercase=lower),
                                          WordPiece(meta["target_vocab"], lowercase=lower))
        return self._tokenizer_cache[key]

    def batch(self, ds, batch_size: int, *, training: bool, config: TranslationConfig, meta: dict):
        """Tokenize, then batch: training by length buckets so short pairs are not padded to the longest.

        Validation/evaluation batches keep the split's order and count (each padded to its own longest row):
        bucketing after ``unbatch`` makes the number of batches unknown, and Keras then reads the validation
        split until it runs out, warning "Your input ran out of data" on the first epoch.
        """
        import tensorflow as tf

        from suite_plugins.translation.model import END_ID, START_ID

        if meta.get("pretrained"):
            from suite_plugins.translation.pretrained import batch_pairs

            return batch_pairs(ds, self._preprocessor(meta["pretrained"]), batch_size,
                               config.source_sequence_length, config.target_sequence_length, training=training)
        src_tok, tgt_tok = self._tokenizers(meta)
        s_len, t_len = config.source_sequence_length, config.target_sequence_length

        def tokenize(src, tgt):
            s = src_tok.tokenize(src)[:, :s_len]
            t = tgt_tok.tokenize(tgt)[:, : t_len - 1]
            rows = tf.shape(src)[0]
            start = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], START_ID))
            end = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], END_ID))
            dec_in, target = tf.concat([start, t], axis=1), tf.concat([t, end], axis=1)
            return (s.to_tensor(0), s.row_lengths(), dec_in.to_tensor(0), target.to_tensor(0),
                    dec_in.row_lengths())

        def trim(s, s_n, d, y, d_n):
            return s[:s_n], d[:d_n], y[:d_n]

        if not training:
            def padded(src, tgt):
                s, _, d, y, _ = tokenize(src, tgt)
                return {"encoder_inputs": s, "decoder_inputs": d}, y

            return ds.batch(batch_size).map(padded, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(512).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        ds = ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
        boundaries = [b + 1 for b in config.bucket_boundaries]  # the bucket rule is length < boundary
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda s, d, y: tf.maximum(tf.shape(s)[0], tf.shape(d)[0]),
            bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padded_shapes=([None], [None], [None]), padding_values=(0, 0, 0), drop_remainder=False)
        return ds.map(lambda s, d, y: ({"encoder_inputs": s, "decoder_inputs": d}, y),
                      num_parallel_calls=tf.data.AUTOTUNE)

    # ---- model ---------------------------------------------------------------------------------------
    def build_model(self, config: TranslationConfig, data: DataBundle):
        from suite_plugins.translation.model import TranslationTransformer

        if config.pretrained:
            from suite_plugins.translation.pretrained import build_translator

            return build_translator(config.pretrained, config)  # offline and not a local folder: one line
        meta = data.meta
        return TranslationTransformer(
            meta["source_vocab"], meta["target_vocab"], source_sequence_length=config.source_sequence_length,
            target_sequence_length=config.target_sequence_length, encoder_layers=config.encoder_layers,
            decoder_layers=config.decoder_layers, embed_dim=config.embed_dim, num_heads=config.num_heads,
            intermediate_dim=config.intermediate_dim, dropout=config.dropout, beam_size=config.beam_size,
            max_decode_length=config.max_decode_length, lowercase=config.lowercase, name="translation")

    def loss(self, config, meta):
        from suite_plugins.translation.model import MaskedSparseCrossEntropy

        return MaskedSparseCrossEntropy(label_smoothing=config.label_smoothing, pad_id=int(meta.get("pad_id", 0)))

    def metrics(self, config, meta):
        from suite_plugins.translation.model import MaskedTokenAccuracy

        return [MaskedTokenAccuracy(name="accuracy", pad_id=int(meta.get("pad_id", 0)))]

    # ---- prediction ----------------------------------------------------------------------------------
    def decode_input(self, raw, meta):
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise InputError("text to translate must be UTF-8") from None
        if not isinstance(raw, str):
            raise InputError(f"text to translate must be a string, got {type(raw).__name__}")
        cap = int(meta.get("source_sequence_length", 40)) * MAX_CHARS_PER_TOKEN
        text = " ".join(raw[: cap + 1].split())[:cap]  # bounded work however long the input
        if not text:
            raise InputError("nothing to translate: the text is empty")
        return np.array(text, dtype=object)

    def stack_inputs(self, inputs):
        return np.array([str(x) for x in inputs], dtype=object)

    def predict_batch(self, forward, batch, meta):
        import tensorflow as tf

        texts = [str(x) for x in np.asarray(batch, dtype=object).reshape(-1)]
        limit = int(meta.get("source_sequence_length", 40))
        model = getattr(forward, "model", None)  # the predictor attaches its model to the compiled call
        if not meta.get("pretrained") and hasattr(model, "tokenize_source"):  # the built-in Transformer
            from suite_plugins.translation.serving import translator_for

            translations, lengths = translator_for(forward)(texts)  # XLA-compiled decoding once warm
        elif meta.get("pretrained") and hasattr(model, "translate_with_counts"):
            out, lengths = model.translate_with_counts(tf.constant(texts, tf.string))  # the preset's tokenizer
            translations, lengths = _texts(out), lengths.numpy()
        elif meta.get("pretrained"):  # a bare compiled call: translations, and truncation judged by length only
            translations, lengths = _texts(forward(tf.constant(texts, tf.string))), np.zeros(len(texts), np.int64)
        else:  # a bare compiled string-to-string call
            strings = tf.constant(texts, tf.string)
            src_tok, _ = self._tokenizers(meta)
            translations, lengths = _texts(forward(strings)), src_tok.tokenize(strings).row_lengths().numpy()
        cap = limit * MAX_CHARS_PER_TOKEN
        return [{"text": tr, "truncated": bool(n > limit or len(src) >= cap), "source_tokens": int(n)}
                for tr, n, src in zip(translations, lengths, texts, strict=True)]

    def postprocess(self, outputs, meta, top_k: int = 5):
        limit = int(meta.get("source_sequence_length", 40))
        results = []
        for row in outputs:
            row = dict(row)
            if row["truncated"]:
                row["note"] = f"the text was longer than the model's {limit} tokens; only its start was translated"
            results.append(row)
        return results

    def explain(self, model, x, meta):
        from suite_plugins.translation.model import cross_attention_map

        if meta.get("pretrained"):
            return None  # the map reads the built-in Transformer's decoder; presets have no explanation view

        source, target, weights = cross_attention_map(model, str(np.asarray(x, dtype=object).reshape(-1)[0]))
        return Explanation(kind="attention", data={"source": source, "target": target, "weights": weights},
                           caption="Last decoder layer's cross-attention (mean over heads): which source tokens "
                                   "each target token looked at.")

    def examples(self, meta):
        refs = meta.get("example_references", [])
        return [Example(quoted(text), text, expected=refs[i] if i < len(refs) else None)
                for i, text in enumerate(meta.get("examples", []))]

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model, ds, config, meta, *, limit: int = 0):
        limit = limit or config.eval_limit
        return evaluate_translations(model, ds, limit=limit)

    def export_limits(self):
        why = ("cannot carry the autoregressive decoding loop (a while-loop over a growing key/value cache) with "
               "in-graph string tokenization; use saved_model, whose signature goes from a source string to the "
               "translated string")
        return {"tflite": f"TFLite {why}", "onnx": f"ONNX {why}"}


def _texts(out) -> list[str]:
    return [t.decode("utf-8") for t in np.asarray(out).reshape(-1)]


def evaluate_translations(model, ds, *, limit: int = 0, batch_size: int = 64, show: int = 10) -> dict[str, Any]:
    """sacreBLEU BLEU and chrF of the model's greedy/beam translations of an unbatched (source, target) split."""
    import sacrebleu
    import tensorflow as tf

    if limit:
        ds = ds.take(limit)
    translate = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                            input_signature=[tf.TensorSpec([None], tf.string)])
    sources, refs, hyps = [], [], []
    t0 = time.perf_counter()
    for src, tgt in ds.batch(batch_size):
        hyps += [h.decode("utf-8") for h in translate(src).numpy()]
        sources += [s.decode("utf-8") for s in src.numpy()]
        refs += [r.decode("utf-8") for r in tgt.numpy()]
        progress.advance(len(src))
    seconds = time.perf_counter() - t0
    if not hyps:
        return {"examples": 0}
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {
        "examples": len(hyps),
        "bleu": round(float(bleu.score), 2),
        "chrf": round(float(chrf.score), 2),
        "length_ratio": round(float(bleu.sys_len / max(1, bleu.ref_len)), 4),
        "decode_seconds": round(seconds, 2),
        "sentences_per_second": round(len(hyps) / max(seconds, 1e-9), 1),
        "samples": [{"source": s, "reference": r, "translation": h}
                    for s, r, h in list(zip(sources, refs, hyps, strict=True))[:show]],
    }
