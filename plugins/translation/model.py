"""The translation model: an encoder-decoder Transformer from KerasHub layers that carries its own tokenizers.

One registered ``keras.Model`` subclass does three things, so a single ``model.keras`` is everything a user needs:

* called on ``{"encoder_inputs", "decoder_inputs"}`` token ids it returns next-token logits (training);
* called on a batch of strings it tokenizes, decodes (greedy or beam, with the decoder's key/value cache) and
  detokenizes in-graph, so a SavedModel traced from it goes from a source string to the translated string;
* its WordPiece vocabularies are plain lists in ``get_config`` (no file paths), so it reloads with
  ``safe_mode=True`` anywhere.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED = [PAD, UNK, START, END]
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
_NEG = -1e9


def learn_vocabulary(texts, size: int, *, lowercase: bool = False) -> list[str]:
    """A WordPiece vocabulary learned from ``texts`` (a list or a tf.data dataset of strings), reserved first."""
    import keras_hub

    if not isinstance(texts, tf.data.Dataset):  # a plain list would be read as file names
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    if texts.element_spec.shape.rank == 0:
        texts = texts.batch(1024)
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        texts, vocabulary_size=size, lowercase=lowercase, strip_accents=False, reserved_tokens=RESERVED)
    return list(vocab)


class WordPiece:
    """tf.text's FastWordpiece tokenizer built from an in-memory vocabulary (BERT-style punctuation split)."""

    def __init__(self, vocabulary, *, lowercase: bool = False):
        import tensorflow_text as tf_text

        self.vocabulary = list(vocabulary)
        self.lowercase = bool(lowercase)
        with tf.init_scope():  # build the tokenizer's model buffer eagerly, even when first used in a graph
            self.tokenizer = tf_text.FastWordpieceTokenizer(
                vocab=self.vocabulary, token_out_type=tf.int32, unknown_token=UNK, support_detokenization=True)

    def tokenize(self, strings):
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        if self.lowercase:
            strings = tf.strings.lower(strings, encoding="utf-8")
        return self.tokenizer.tokenize(strings)

    def detokenize(self, ragged_ids):
        return self.tokenizer.detokenize(ragged_ids)


def tidy_text(text):
    """Undo the tokenizer's spaces around punctuation ("hola , ¿ qué ?" -> "hola, ¿qué?"), in-graph."""
    text = tf.strings.regex_replace(text, r" ([.,!?;:%)\]}»])", r"\1")
    text = tf.strings.regex_replace(text, r"([¿¡(\[{«]) ", r"\1")
    text = tf.strings.regex_replace(text, r" ' ", r"'")
    text = tf.strings.regex_replace(text, r" - ", r"-")
    return tf.strings.strip(text)


class StringToString:
    """Mixin for translation models: what the export and serving code read as the raw input and output.

    A batch of source sentences goes in and translated sentences come out; training feeds token ids through
    ``call`` instead.
    """

    @property
    def inputs(self):
        return [keras.KerasTensor((None,), dtype="string", name="text")]

    @property
    def outputs(self):
        return [keras.KerasTensor((None,), dtype="string", name="translation")]


@keras.saving.register_keras_serializable(package="suite_translation")
class TranslationTransformer(StringToString, keras.Model):
    """Encoder-decoder Transformer with cached greedy/beam decoding and in-model tokenizers."""

    def __init__(self, source_vocabulary, target_vocabulary, source_sequence_length: int = 40,
                 target_sequence_length: int = 40, encoder_layers: int = 2, decoder_layers: int = 2,
                 embed_dim: int = 256, num_heads: int = 8, intermediate_dim: int = 1024, dropout: float = 0.1,
                 beam_size: int = 1, max_decode_length: int = 40, lowercase: bool = False, **kwargs):
        import keras_hub  # here, not at the top: registering the plugin's classes stays a light import

        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.source_vocabulary = list(source_vocabulary)
        self.target_vocabulary = list(target_vocabulary)
        self.source_sequence_length = int(source_sequence_length)
        self.target_sequence_length = int(target_sequence_length)
        self.n_encoder_layers = int(encoder_layers)
        self.n_decoder_layers = int(decoder_layers)
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.dropout_rate = float(dropout)
        self.beam_size = int(beam_size)
        self.max_decode_length = int(max_decode_length)
        self.lowercase = bool(lowercase)
        self.source_tokenizer = WordPiece(self.source_vocabulary, lowercase=lowercase)
        self.target_tokenizer = WordPiece(self.target_vocabulary, lowercase=lowercase)

        self.encoder_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=len(self.source_vocabulary), sequence_length=self.source_sequence_length,
            embedding_dim=embed_dim, name="encoder_embedding")
        self.encoder_blocks = [
            keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads, dropout=dropout, name=f"encoder_{i}")
            for i in range(encoder_layers)
        ]
        self.decoder_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=len(self.target_vocabulary), sequence_length=self.target_sequence_length,
            embedding_dim=embed_dim, name="decoder_embedding")
        self.decoder_blocks = [
            keras_hub.layers.TransformerDecoder(intermediate_dim, num_heads, dropout=dropout, name=f"decoder_{i}")
            for i in range(decoder_layers)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.logits_dense = keras.layers.Dense(len(self.target_vocabulary), dtype="float32", name="logits")
        # Create every weight now: a reloaded model then matches the saved one variable for variable.
        dummy = tf.ones((1, 2), tf.int32)
        self({"encoder_inputs": dummy, "decoder_inputs": dummy})

    # ---- the training forward pass ----------------------------------------------------------------
    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            enc, enc_mask = self.encode(inputs["encoder_inputs"], training=training)
            return self.decode_logits(inputs["decoder_inputs"], enc, enc_mask, training=training)
        return self.translate(inputs)

    def encode(self, ids, training=None):
        mask = ops.not_equal(ids, PAD_ID)
        x = self.dropout_layer(self.encoder_embedding(ids), training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=mask, training=training)
        return x, mask

    def decode_logits(self, dec_ids, enc, enc_mask, training=None):
        x = self.dropout_layer(self.decoder_embedding(dec_ids), training=training)
        dec_mask = ops.not_equal(dec_ids, PAD_ID)
        for block in self.decoder_blocks:
            x = block(x, enc, decoder_padding_mask=dec_mask, encoder_padding_mask=enc_mask, training=training)
        return self.logits_dense(x)

    # ---- strings <-> ids ----------------------------------------------------------------------------------
    def tokenize_source(self, strings):
        """Source ids padded to the batch's longest (at most the model's length), and each row's full token count
        (above the length: the row was truncated)."""
        ragged = self.source_tokenizer.tokenize(tf.reshape(tf.convert_to_tensor(strings, tf.string), [-1]))
        ids = ragged[:, : self.source_sequence_length].to_tensor(PAD_ID)
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])  # at least one column
        return ids, ragged.row_lengths()

    def ids_to_text(self, ids):
        """Generated ids (START first) -> text, cut at the first END/PAD, punctuation spacing tidied."""
        ids = ids[:, 1:]
        stop = tf.logical_or(tf.equal(ids, END_ID), tf.equal(ids, PAD_ID))
        first = tf.argmax(tf.cast(stop, tf.int32), axis=1, output_type=tf.int32)
        lengths = tf.where(tf.reduce_any(stop, axis=1), first, tf.shape(ids)[1])
        ragged = tf.RaggedTensor.from_tensor(ids, lengths=lengths)
        return tidy_text(self.target_tokenizer.detokenize(ragged))

    def decode_length(self, max_length: int | None = None) -> int:
        """Prompt length (START included): the length cap, never beyond the position embedding."""
        cap = self.max_decode_length if not max_length else int(max_length)
        return max(2, min(cap, self.target_sequence_length))

    # ---- decoding -------------------------------------------------------------------------------------
    def _constrain(self, logits, prev):
        """Never emit START/PAD; a row that already ended keeps emitting PAD at log-probability 0."""
        vocab = ops.shape(logits)[-1]
        ids = ops.arange(vocab)
        banned = ops.logical_or(ops.equal(ids, START_ID), ops.equal(ids, PAD_ID))
        logits = ops.where(banned[None, :], _NEG, logits)
        done = ops.logical_or(ops.equal(prev, END_ID), ops.equal(prev, PAD_ID))
        forced = ops.where(ops.equal(ids, PAD_ID), 0.0, _NEG)
        return ops.where(done[:, None], forced[None, :], logits)

    def _start_prompt(self, batch, length):
        first = tf.fill([batch, 1], START_ID)
        return tf.concat([first, tf.zeros([batch, length - 1], tf.int32)], axis=1)

    def cross_attention_cache(self, enc):
        """Keys/values of the encoder output for every decoder layer, computed once: [B, L, 2, S, H, Dh]."""
        caches = []
        for block in self.decoder_blocks:
            att = block._cross_attention_layer
            caches.append(ops.stack([att._key_dense(enc), att._value_dense(enc)], axis=1))
        return ops.stack(caches, axis=1)

    def generate(self, src_ids, *, beam_size: int = 1, max_length: int | None = None, cached: bool = True,
                 return_scores: bool = False):
        """Batched decoding with KerasHub samplers. Returns ids [B, T] (START first), or (ids, log-probs)."""
        import keras_hub

        src_ids = tf.convert_to_tensor(src_ids, tf.int32)
        enc, enc_mask = self.encode(src_ids, training=False)
        batch = tf.shape(src_ids)[0]
        length = self.decode_length(max_length)
        prompt = self._start_prompt(batch, length)
        mask_int = ops.cast(enc_mask, "int32")
        if cached:
            head_dim = self.embed_dim // self.num_heads
            self_cache = tf.zeros([batch, self.n_decoder_layers, 2, length, self.num_heads, head_dim], enc.dtype)
            cache = (self_cache, self.cross_attention_cache(enc), enc, mask_int)
            next_fn = self._next_cached
        else:
            cache = (enc, mask_int)
            next_fn = self._next_uncached
        if beam_size > 1:
            sampler = keras_hub.samplers.BeamSampler(num_beams=int(beam_size), return_all_beams=True)
            beams, log_probs = sampler(next_fn, prompt, cache=cache, index=1, stop_token_ids=[END_ID])
            out, scores = beams[:, 0, :], log_probs[:, 0]
        else:
            out = keras_hub.samplers.GreedySampler()(next_fn, prompt, cache=cache, index=1, stop_token_ids=[END_ID])
            scores = None
        if return_scores:
            return out, (scores if scores is not None else self.score(src_ids, out))
        return out

    def _next_cached(self, prompt, cache, index):
        self_cache, cross_cache, enc, mask_int = cache
        tok = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
        x = self.decoder_embedding(tok, start_index=index - 1)
        new_caches = []
        for i, block in enumerate(self.decoder_blocks):
            x, layer_cache, _ = block(
                x, enc, encoder_padding_mask=ops.cast(mask_int, "bool"),
                self_attention_cache=self_cache[:, i], self_attention_cache_update_index=index - 1,
                cross_attention_cache=cross_cache[:, i], cross_attention_cache_update_index=None)
            new_caches.append(layer_cache)
        logits = self.logits_dense(x)[:, 0, :]
        return self._constrain(logits, tok[:, 0]), None, (ops.stack(new_caches, axis=1), cross_cache, enc, mask_int)

    def _next_uncached(self, prompt, cache, index):
        """The recipe's way: run the whole decoder over the whole prefix at every step."""
        enc, mask_int = cache
        logits = self.decode_logits(prompt, enc, ops.cast(mask_int, "bool"), training=False)
        logits = tf.gather(logits, index - 1, axis=1)
        prev = tf.gather(prompt, index - 1, axis=1)
        return self._constrain(logits, prev), None, cache

    def score(self, src_ids, out_ids):
        """Teacher-forced log-probability of each generated row up to and including its END (same constraints)."""
        enc, enc_mask = self.encode(tf.convert_to_tensor(src_ids, tf.int32), training=False)
        out_ids = tf.convert_to_tensor(out_ids, tf.int32)
        dec_in, targets = out_ids[:, :-1], out_ids[:, 1:]
        logits = self.decode_logits(dec_in, enc, enc_mask, training=False)
        batch, steps = tf.shape(logits)[0], tf.shape(logits)[1]
        flat = self._constrain(tf.reshape(logits, [batch * steps, -1]), tf.reshape(dec_in, [-1]))
        logp = tf.nn.log_softmax(tf.reshape(flat, tf.shape(logits)), axis=-1)
        picked = tf.gather(logp, targets, axis=2, batch_dims=2)
        live = tf.logical_not(tf.logical_or(tf.equal(dec_in, END_ID), tf.equal(dec_in, PAD_ID)))
        live = tf.cast(tf.math.cumprod(tf.cast(live, tf.int32), axis=1), tf.float32)
        return tf.reduce_sum(picked * live, axis=1)

    def translate(self, strings, beam_size: int | None = None):
        """Strings in, translated strings out: tokenization, decoding and detokenization in one graph."""
        ids, _ = self.tokenize_source(strings)
        out = self.generate(ids, beam_size=self.beam_size if beam_size is None else beam_size)
        return self.ids_to_text(out)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "source_vocabulary": self.source_vocabulary,
            "target_vocabulary": self.target_vocabulary,
            "source_sequence_length": self.source_sequence_length,
            "target_sequence_length": self.target_sequence_length,
            "encoder_layers": self.n_encoder_layers,
            "decoder_layers": self.n_decoder_layers,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout_rate,
            "beam_size": self.beam_size,
            "max_decode_length": self.max_decode_length,
            "lowercase": self.lowercase,
        }


@keras.saving.register_keras_serializable(package="suite_translation")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Token cross-entropy from logits with label smoothing, averaged over non-padding targets only.

    ``pad_id`` is the padding id of the targets' vocabulary (0 here; 1 for a BART preset's tokenizer).
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy", pad_id: int = PAD_ID,
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.pad_id = int(pad_id)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        logp = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(logp, y_true[..., None], axis=-1), -1)
        loss = (1.0 - self.label_smoothing) * nll - self.label_smoothing * ops.mean(logp, axis=-1)
        mask = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="suite_translation")
class MaskedTokenAccuracy(keras.metrics.Metric):
    """Next-token accuracy over non-padding targets."""

    def __init__(self, name: str = "accuracy", pad_id: int = PAD_ID, **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = int(pad_id)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


def cross_attention_map(model: TranslationTransformer, text: str):
    """Translate ``text`` and return (source tokens, target tokens, target x source cross-attention weights).

    The weights are the last decoder layer's cross-attention averaged over heads, recomputed teacher-forced on
    the model's own translation (KerasHub's decoder does not return them).
    """
    src_ids, _ = model.tokenize_source(tf.constant([text]))
    out = model.generate(src_ids)
    out_row = out.numpy()[0].tolist()
    n_tgt = out_row.index(END_ID) if END_ID in out_row else len(out_row)
    dec_in = tf.constant([out_row[:n_tgt]], tf.int32)  # START + generated tokens (the queries)
    enc, enc_mask = model.encode(src_ids, training=False)
    dec_mask = ops.not_equal(dec_in, PAD_ID)
    x = model.decoder_embedding(dec_in)
    for block in model.decoder_blocks[:-1]:
        x = block(x, enc, decoder_padding_mask=dec_mask, encoder_padding_mask=enc_mask, training=False)
    last = model.decoder_blocks[-1]
    # The last block's self-attention half, as keras_hub's TransformerDecoder computes it (post-norm).
    mask = last._compute_self_attention_mask(x, dec_mask, None, True, None, None)
    residual = x
    if last.normalize_first:
        x = last._self_attention_layer_norm(x)
    x = last._self_attention_layer(query=x, value=x, attention_mask=mask, training=False) + residual
    if not last.normalize_first:
        x = last._self_attention_layer_norm(x)
    query = last._cross_attention_layer_norm(x) if last.normalize_first else x
    cross_mask = ops.logical_and(enc_mask[:, None, :], ops.ones((1, ops.shape(dec_in)[1], 1), "bool"))
    _, scores = last._cross_attention_layer(query=query, value=enc, attention_mask=cross_mask,
                                            return_attention_scores=True, training=False)
    weights = np.asarray(ops.mean(scores, axis=1))[0]  # [T, S]
    src_row = src_ids.numpy()[0].tolist()
    n_src = sum(1 for i in src_row if i != PAD_ID)
    source = [model.source_vocabulary[i] for i in src_row[:n_src]]
    # Target token i+1 was predicted from query position i: label each row by the token it produced.
    produced = out_row[1 : n_tgt + 1]
    target = [model.target_vocabulary[i] for i in produced]
    return source, target, weights[: len(target), :n_src].astype(float).tolist()
