"""Sentiment analysis: a raw sentence in, class probabilities out; the tokenizer lives inside the model."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from suite.config import TaskConfig
from suite.data import DataBundle, DataSource, online, stratified_split_indices, tfds_load
from suite.errors import ConfigError, DataSourceError, InputError, SuiteError
from suite.task import ClassificationTask, Example, Explanation, quoted
from suite_plugins.sentiment import data as textdata

SCRATCH = ("ensemble", "tfidf_linear", "tfidf_mlp", "cnn", "bilstm", "transformer")
PRESETS = ("bert_tiny_en_uncased", "bert_small_en_uncased", "bert_base_en_uncased", "distil_bert_base_en_uncased",
           "roberta_base_en", "albert_base_en_uncased", "deberta_v3_extra_small_en")
ModelName = Literal["ensemble", "tfidf_linear", "tfidf_mlp", "cnn", "bilstm", "transformer", "bert_tiny_en_uncased", "bert_small_en_uncased",
                    "bert_base_en_uncased", "distil_bert_base_en_uncased", "roberta_base_en",
                    "albert_base_en_uncased", "deberta_v3_extra_small_en"]
MAX_OCCLUSIONS = 128  # explanation cost bound: longer texts are occluded in windows of several words
N_META_EXAMPLES = 3


@dataclasses.dataclass
class SentimentConfig(TaskConfig):
    """Defaults: a CNN and a BiLSTM trained side by side and averaged (SST-2 figures in docs/BENCHMARKS.md).

    Two epochs suit SST-2-sized data (67k sentences; the best validation epoch is the second); a few thousand
    sentences want more (``epochs=10``), and the best-by-validation weights are kept either way.
    """

    epochs: int = 2
    batch_size: int = 64
    # L2-normalised TF-IDF inputs are small: 1e-3 learns too slowly on small data
    learning_rate: float = 3e-3
    model: ModelName = "ensemble"
    max_tokens: int = 200000  # SST-2 has 86k uni+bigrams; all of them help
    ensemble_members: tuple[str, ...] = ("cnn", "bilstm")
    ngrams: int = 2
    sequence_length: int = 64  # SST-2's longest sentence: 56 tokens
    embedding_dim: int = 128
    hidden_units: int = 64
    dropout: float = 0.5
    input_dropout: float = 0.5
    l2: float = 0.0
    max_chars: int = 20000
    text_column: str = ""
    label_column: str = ""

    ui_fields = ("model", "epochs", "batch_size", "learning_rate", "max_tokens", "ngrams", "sequence_length",
                 "dropout")
    field_help = {
        "model": "ensemble: a CNN and a BiLSTM trained side by side and averaged; tfidf_*: n-gram TF-IDF with a "
                 "linear or MLP head (fastest); cnn, bilstm, transformer: one model from scratch; bert_*: a "
                 "pretrained KerasHub backbone (needs the network once).",
        "max_tokens": "Vocabulary size, n-grams included: the most frequent words (and word pairs) are kept.",
        "ensemble_members": "model=ensemble: the from-scratch models trained together and averaged.",
        "ngrams": "tfidf_linear / tfidf_mlp: longest run of words counted as one feature (2 = words and word "
                  "pairs).",
        "sequence_length": "cnn / bilstm / transformer / bert_*: tokens read per text; longer texts are cut.",
        "embedding_dim": "Size of each word's learned vector (from-scratch sequence models).",
        "hidden_units": "Width of the recurrent / dense layers of the from-scratch models.",
        "dropout": "Share of units dropped at random in the head while training.",
        "input_dropout": "tfidf_*: share of the TF-IDF vector dropped at random while training (whole n-grams).",
        "l2": "tfidf_linear: L2 penalty on the n-gram weights (logistic regression's 1 / (2 C N)); 0 = none.",
        "max_chars": "Longer inputs are cut to this many characters before the model reads them.",
        "text_column": "CSV/TSV: the column holding the text; empty = found by name (text, sentence, review, "
                       "content, ...).",
        "label_column": "CSV/TSV: the column holding the label; empty = found by name (label, sentiment, class, "
                        "target, ...).",
    }
    field_units = {"sequence_length": "tokens", "max_tokens": "tokens"}
    field_labels = {"max_chars": "Max characters", "ngrams": "N-grams", "embedding_dim": "Embedding size",
                    "l2": "L2 penalty"}

    def validate(self) -> None:
        super().validate()
        if not 100 <= self.max_tokens <= 2_000_000:
            raise ConfigError(f"max_tokens must be in [100, 2000000], got {self.max_tokens}")
        if not 1 <= self.ngrams <= 5:
            raise ConfigError(f"ngrams must be in [1, 5], got {self.ngrams}")
        if not 4 <= self.sequence_length <= 2048:
            raise ConfigError(f"sequence_length must be in [4, 2048], got {self.sequence_length}")
        if self.embedding_dim < 1 or self.hidden_units < 1:
            raise ConfigError("embedding_dim and hidden_units must be >= 1")
        members = self.ensemble_members
        if self.model == "ensemble" and (len(members) < 2 or len(set(members)) != len(members)
                                         or any(m not in SCRATCH[1:] for m in members)):
            raise ConfigError(f"ensemble_members must be two or more different models of {', '.join(SCRATCH[1:])}; "
                              f"got {', '.join(members) or 'none'}")
        if self.l2 < 0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")
        for name in ("dropout", "input_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 16 <= self.max_chars <= 10_000_000:
            raise ConfigError(f"max_chars must be in [16, 10000000], got {self.max_chars}")


def clean_text(raw: bytes | str, max_chars: int) -> str:
    """User text to what the model reads, in time bounded by ``max_chars``.

    Invalid UTF-8 bytes and lone surrogates become U+FFFD/'?' (the rest of the text is still classified);
    NUL and other control characters become spaces; the text is cut to ``max_chars`` characters.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw[: 4 * max_chars]).decode("utf-8", "replace")  # a UTF-8 character is at most 4 bytes
    elif not isinstance(raw, str):
        raise InputError(f"text input must be str or bytes, got {type(raw).__name__}")
    text = raw[:max_chars]
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates ("\ud800") -> "?"
    text = text.translate(_CONTROL)
    return text.strip()


_CONTROL = {c: " " for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}


class SentimentTask(ClassificationTask):
    name = "sentiment"
    title = "Sentiment analysis"
    description = ("Classify the sentiment (or any label) of a text: positive/negative reviews, or more classes. "
                   "The tokenizer is inside the model, so it takes raw sentences.")
    input_kind = "text"
    distill_students = {"cnn": {"model": "cnn"}, "linear": {"model": "tfidf_linear"}}
    config_class = SentimentConfig
    data_formats = (
        "A CSV or TSV file with a header (text column named text/sentence/review/content..., label column "
        "label/sentiment/class/target...; or set text_column/label_column); a folder with train.tsv, "
        "dev.tsv and test.tsv (GLUE SST-2 style, .csv too); a folder of class folders of .txt files "
        "(pos/, neg/ or any names), with train/ and test/ sub-folders when present (aclImdb; unsup/ is skipped). "
        "Labels 0/1 are read as negative/positive."
    )
    tfds_examples = ("tfds:imdb_reviews", "tfds:glue/sst2")
    upload_types = ("txt",)
    sample_synthetic = True
    keras_modules = ("suite_plugins.sentiment.layers",)
    sample_seconds = 8.0
    sample_description = ("1,200 generated one-sentence movie reviews built from a few dozen adjectives: it "
                          "knows those words and simple negation, not real reviews")
    sample_overrides = {"model": "cnn", "epochs": 10, "batch_size": 32, "learning_rate": 1e-2, "input_dropout": 0.2, "max_tokens": 5000, "sequence_length": 32, "embedding_dim": 64}

    # ---- data ----------------------------------------------------------------------------------
    def load_data(self, source: DataSource, config: SentimentConfig) -> DataBundle:
        if source.kind == "sample":
            splits = {"train": textdata.sample_texts(), "val": None, "test": None}
        elif source.kind == "path":
            splits = textdata.read_path(source.path, config.text_column, config.label_column)
        else:
            splits = self._load_tfds(source)
        return self._bundle(splits, config, source, synthetic=source.kind == "sample")

    def _load_tfds(self, source: DataSource) -> dict:
        (train, val, test), info = tfds_load(source, ["train", "validation", "test"], as_supervised=False)
        features = info.features
        text_key = next((k for k in ("text", "sentence", "review", "content") if k in features), None)
        if text_key is None or "label" not in features:
            raise DataSourceError(f"TFDS data set {source.tfds_name!r} has no text and label features")
        names = list(getattr(features["label"], "names", []) or [])

        def read(ds):
            if ds is None:
                return None
            texts, labels = [], []
            for ex in ds.as_numpy_iterator():
                label = int(ex["label"])
                if label < 0:  # GLUE test splits are unlabelled
                    continue
                texts.append(ex[text_key].decode("utf-8", "replace"))
                labels.append(names[label] if names and label < len(names) else str(label))
            return (texts, labels) if texts else None

        out = {"train": read(train), "val": read(val), "test": read(test)}
        if out["test"] is None and out["val"] is not None:  # glue/sst2: validation is the labelled held-out set
            out["test"], out["val"] = out["val"], None
        if out["train"] is None:
            raise DataSourceError(f"TFDS data set {source.tfds_name!r} has no labelled train split")
        return out

    def _bundle(self, splits: dict, config: SentimentConfig, source: DataSource, *, synthetic: bool) -> DataBundle:
        import tensorflow as tf

        all_labels = [v for part in splits.values() if part for v in part[1]]
        class_names = textdata.class_names_for(all_labels)
        if len(class_names) < 2:
            raise DataSourceError(f"{source.spec}: need at least two classes, found {class_names}")
        arrays = {}
        for split, part in splits.items():
            if part is not None:
                arrays[split] = (np.array(part[0], dtype=object),
                                 np.array(textdata.label_ids(part[1], class_names), dtype=np.int64))
        x, y = arrays["train"]
        need = [s for s in ("val", "test") if s not in arrays]
        if need:
            tr, va, te = stratified_split_indices(
                y, config.val_fraction if "val" in need else 0.0, config.test_fraction if "test" in need else 0.0)
            if "val" in need:
                arrays["val"] = (x[va], y[va])
            if "test" in need:
                arrays["test"] = (x[te], y[te])
            arrays["train"] = (x[tr], y[tr])

        def ds(split):
            xs, ys = arrays[split]
            if not len(xs):
                return None
            # a list, not xs.astype(str): a fixed-width array of long reviews would take gigabytes
            return tf.data.Dataset.from_tensor_slices((tf.constant([str(t) for t in xs], tf.string), ys))

        test_x, test_y = arrays["test"]
        meta = {
            "class_names": class_names,
            "source": source.spec,
            "max_chars": config.max_chars,
            "examples": [str(t)[:500] for t in test_x[:N_META_EXAMPLES]],
            "example_labels": [class_names[int(i)] for i in test_y[:N_META_EXAMPLES]],
            "class_counts": {name: int((arrays["train"][1] == i).sum()) for i, name in enumerate(class_names)},
        }
        counts = {split: len(arrays[split][0]) for split in ("train", "val", "test")}
        return DataBundle(ds("train"), ds("val"), ds("test"), meta, counts=counts, synthetic=synthetic)

    # ---- model ---------------------------------------------------------------------------------
    def build_inputs(self, config, meta):
        import keras

        return keras.Input(shape=(), dtype="string", name="text")

    def build_model(self, config: SentimentConfig, data: DataBundle):
        if config.model in PRESETS:
            return self._build_preset(config, data.meta)
        if config.model == "tfidf_linear":
            return self._build_linear(config, data)
        if config.model == "ensemble":
            return self._build_ensemble(config, data)
        return super().build_model(config, data)

    def _build_linear(self, config: SentimentConfig, data: DataBundle):
        """Logistic regression on TF-IDF n-grams: on SST-2 it beats the MLP (a hidden layer overfits)."""
        import keras

        inputs = self.build_inputs(config, data.meta)
        x = self.build_preprocessor(config, data)(inputs)
        x = keras.layers.Dropout(config.input_dropout, name="ngram_dropout")(x)
        reg = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
        logits = keras.layers.Dense(len(data.meta["class_names"]), kernel_regularizer=reg, name="logits")(x)
        probs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
        return keras.Model(inputs, probs, name=self.name)

    def _build_ensemble(self, config: SentimentConfig, data: DataBundle):
        """Members (``ensemble_members``), each with its own head, averaged by ``EnsembleMean``.

        A bag of n-grams, a CNN and a BiLSTM read a sentence differently and make different mistakes: on SST-2
        two members averaged beat either one alone (docs/BENCHMARKS.md). Members of the same kind share one
        vectorizer; nothing else is shared.
        """
        import keras

        from suite_plugins.sentiment.layers import EnsembleMean

        inputs = self.build_inputs(config, data.meta)
        n_classes = len(data.meta["class_names"])
        features: dict[str, Any] = {}
        vocab: dict[str, int] = {}
        probs = []
        for member in config.ensemble_members:
            member_cfg = dataclasses.replace(config, model=member)
            kind = "ngrams" if member.startswith("tfidf") else "tokens"
            if kind not in features:
                features[kind] = self.build_preprocessor(member_cfg, data, name=f"vectorize_{kind}")(inputs)
                vocab[kind] = data.meta["vocabulary_size"]
            x = features[kind]
            if member == "tfidf_linear":
                x = keras.layers.Dropout(config.input_dropout, name=f"{member}_ngram_dropout")(x)
            else:
                x = self.build_backbone(member_cfg, {**data.meta, "vocabulary_size": vocab[kind]},
                                        prefix=f"{member}_")(x)
                x = keras.layers.Dropout(config.dropout, name=f"{member}_head_dropout")(x)
            logits = keras.layers.Dense(n_classes, name=f"{member}_logits")(x)
            probs.append(keras.layers.Activation("softmax", dtype="float32", name=f"{member}_probabilities")(logits))
        return keras.Model(inputs, EnsembleMean(name="probabilities")(probs), name=self.name)

    def build_preprocessor(self, config: SentimentConfig, data: DataBundle, name: str = "vectorize"):
        """TextVectorization fitted on the training texts: TF-IDF n-grams, or token ids for sequence models."""
        import keras

        from suite_plugins.sentiment.layers import fast_adapt, standardize_text

        texts = np.concatenate([np.asarray(b) for b in data.train.map(lambda x, y: x).batch(8192)]) \
            if data.train is not None else np.zeros(0, object)
        if config.model in ("tfidf_linear", "tfidf_mlp"):
            layer = keras.layers.TextVectorization(
                max_tokens=config.max_tokens, standardize=standardize_text, ngrams=config.ngrams,
                output_mode="tf_idf", name=name)
            data.meta["vocabulary_size"] = fast_adapt(layer, texts, ngrams=config.ngrams)
            norm = keras.layers.UnitNormalization(name="l2_normalize")  # long and short texts on one scale
            return lambda x: norm(layer(x))
        layer = keras.layers.TextVectorization(
            max_tokens=config.max_tokens, standardize=standardize_text, output_mode="int",
            output_sequence_length=config.sequence_length, name=name)
        data.meta["vocabulary_size"] = fast_adapt(layer, texts) + 2  # + padding and OOV ids
        return layer

    def build_backbone(self, config: SentimentConfig, meta: dict, prefix: str = ""):
        import keras

        vocab = int(meta.get("vocabulary_size", config.max_tokens))
        dim = config.embedding_dim

        def name(suffix: str) -> str:  # ensemble members prefix their layer names
            return prefix + suffix

        def tfidf_mlp(x):
            x = keras.layers.Dropout(config.input_dropout, name=name("ngram_dropout"))(x)
            return keras.layers.Dense(config.hidden_units, activation="relu", name=name("hidden"))(x)

        def cnn(x):
            x = keras.layers.Embedding(vocab, dim, name=name("embedding"))(x)
            x = keras.layers.SpatialDropout1D(config.dropout / 2, name=name("embedding_dropout"))(x)
            convs = [keras.layers.GlobalMaxPooling1D(name=name(f"pool{k}"))(
                keras.layers.Conv1D(dim, k, padding="same", activation="relu", name=name(f"conv{k}"))(x)) for k in (3, 5)]
            return keras.layers.Concatenate(name=name("features"))(convs)

        def bilstm(x):
            x = keras.layers.Embedding(vocab, dim, mask_zero=True, name=name("embedding"))(x)
            x = keras.layers.SpatialDropout1D(config.dropout / 2, name=name("embedding_dropout"))(x)
            return keras.layers.Bidirectional(keras.layers.LSTM(config.hidden_units), name=name("bilstm"))(x)

        def transformer(x):
            import keras_hub

            x = keras_hub.layers.TokenAndPositionEmbedding(vocab, config.sequence_length, dim, mask_zero=True,
                                                           name=name("embedding"))(x)
            x = keras_hub.layers.TransformerEncoder(intermediate_dim=2 * dim, num_heads=4, dropout=config.dropout / 2,
                                                    name=name("encoder"))(x)
            return keras.layers.GlobalAveragePooling1D(name=name("pool"))(x)

        return {"tfidf_mlp": tfidf_mlp, "cnn": cnn, "bilstm": bilstm, "transformer": transformer}[config.model]

    def _build_preset(self, config: SentimentConfig, meta: dict):
        """A KerasHub BERT-family classifier fine-tuned end to end, wrapped to take raw strings."""
        import keras

        preset = config.model
        cache = Path(os.environ.get("KAGGLEHUB_CACHE", Path.home() / ".cache" / "kagglehub"))
        cached = any(cache.glob(f"models/keras/*/keras/{preset}"))
        if not cached and not online("www.kaggle.com"):
            raise SuiteError(
                f"the KerasHub preset {preset!r} is not downloaded and there is no network: train it on a machine "
                "with internet once (it is cached in ~/.cache/kagglehub), or pick a from-scratch model "
                f"({', '.join(SCRATCH)})")
        try:
            import keras_hub

            classifier = keras_hub.models.TextClassifier.from_preset(
                preset, num_classes=len(meta["class_names"]), activation="softmax",
                preprocessor=keras_hub.models.TextClassifierPreprocessor.from_preset(
                    preset, sequence_length=config.sequence_length))
        except Exception as err:  # network, Kaggle credentials, unknown preset
            raise SuiteError(f"could not load the KerasHub preset {preset!r}: "
                             f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
        inputs = keras.Input(shape=(), dtype="string", name="text")
        probs = classifier(classifier.preprocessor(inputs))
        return keras.Model(inputs, keras.layers.Activation("linear", dtype="float32", name="probabilities")(probs),
                           name=self.name)

    def loss(self, config: SentimentConfig, meta: dict):
        if config.model == "ensemble":  # see EnsembleMean: members learn from their own errors
            from suite_plugins.sentiment.layers import ProbabilityCrossentropy

            return ProbabilityCrossentropy(label_smoothing=config.label_smoothing)
        return super().loss(config, meta)

    # ---- prediction ------------------------------------------------------------------------------
    def decode_input(self, raw, meta):
        text = clean_text(raw, int(meta.get("max_chars", SentimentConfig.max_chars)))
        if not text:
            raise InputError("empty text: type a sentence to classify")
        return np.array(text, dtype=object)

    def preview(self, x):
        x = x.item() if isinstance(x, np.ndarray) else x
        if isinstance(x, bytes):
            x = x.decode("utf-8", "replace")
        return str(x)[:200]

    def explain(self, model, x, meta):
        """Occlusion: drop each word (or window of words) and measure how much the predicted class loses."""
        text = x.item() if isinstance(x, np.ndarray) else x
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        words = str(text).split()
        if not words:
            return None
        window = -(-len(words) // MAX_OCCLUSIONS)  # ceil: at most MAX_OCCLUSIONS variants
        spans = [(i, min(i + window, len(words))) for i in range(0, len(words), window)]
        variants = [" ".join(words)] + [" ".join(words[:a] + words[b:]) or " " for a, b in spans]
        probs = []
        for start in range(0, len(variants), 64):
            probs.append(np.asarray(model(np.array(variants[start:start + 64], dtype=object), training=False)))
        probs = np.concatenate(probs)
        cls = int(np.argmax(probs[0]))
        scores: list[float] = []
        for (a, b), p in zip(spans, probs[1:], strict=True):
            scores += [float(probs[0, cls] - p[cls])] * (b - a)
        names = meta["class_names"]
        return Explanation(kind="tokens", data={"tokens": words, "scores": scores},
                           caption=f"How much removing each word lowers P({names[cls]}) = {probs[0, cls]:.2f} "
                                   "(positive: the word pushed toward this prediction)")

    def examples(self, meta):
        out = []
        if meta.get("class_names") == ["negative", "positive"]:
            out += [
                Example("praise", "A warm, funny and beautifully acted film. I loved it!", expected="positive"),
                Example("pan", "The plot is dull and the acting is painfully bad.", expected="negative"),
                Example("negation", "This movie is not good at all.", expected="negative"),
            ]
        for text, label in zip(meta.get("examples", []), meta.get("example_labels", []), strict=False):
            out.append(Example(f"held-out {label}: {quoted(text, 5)}", text, expected=label))
        return out

    def export_limits(self) -> dict[str, str]:
        return {}

    def portable_graph(self, model, meta):
        """TFLite and ONNX take the text's UTF-8 bytes: the tokenizer is rebuilt in integer ops."""
        from suite_plugins.sentiment.byte_tokenizer import portable_graph

        return portable_graph(model)
