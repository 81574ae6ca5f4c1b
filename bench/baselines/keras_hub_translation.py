"""The KerasHub "English-to-Spanish translation with KerasHub" recipe, written from its public description.

Lower-cased pairs, WordPiece vocabularies of 15,000 learned with ``compute_word_piece_vocabulary``, every
sequence packed to 40 tokens (``StartEndPacker``), one ``TransformerEncoder`` and one ``TransformerDecoder``
(d=256, 8 heads, feed-forward 2048), ``Dropout(0.5)`` and a softmax ``Dense``; ``rmsprop`` and sparse
categorical cross-entropy; batch 64. Decoding: ``GreedySampler`` whose ``next`` re-runs the whole model on the
40-token prompt at every step (no key/value cache), eagerly, as the recipe's ``decode_sequences`` does.
"""

from __future__ import annotations

import time

import keras
import keras_hub
import tensorflow as tf

MAX_SEQUENCE_LENGTH = 40
ENG_VOCAB_SIZE = 15000
SPA_VOCAB_SIZE = 15000
EMBED_DIM = 256
INTERMEDIATE_DIM = 2048
NUM_HEADS = 8
BATCH_SIZE = 64
RESERVED = ["[PAD]", "[UNK]", "[START]", "[END]"]


def train_word_piece(texts, vocab_size):
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(texts)).batch(1000).prefetch(2)
    return keras_hub.tokenizers.compute_word_piece_vocabulary(ds, vocabulary_size=vocab_size,
                                                              reserved_tokens=RESERVED)


class Recipe:
    """Tokenizers, model and decoding of the recipe."""

    def __init__(self, train_pairs, *, vocab_size: int = ENG_VOCAB_SIZE):
        pairs = [(a.lower(), b.lower()) for a, b in train_pairs]
        self.eng_tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=train_word_piece([p[0] for p in pairs], vocab_size), lowercase=False)
        self.spa_tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=train_word_piece([p[1] for p in pairs], vocab_size), lowercase=False)
        self.train_pairs = pairs
        self.model = self._build()

    def _build(self):
        eng_vocab = self.eng_tokenizer.vocabulary_size()
        spa_vocab = self.spa_tokenizer.vocabulary_size()
        encoder_inputs = keras.Input(shape=(None,), name="encoder_inputs")
        x = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=eng_vocab, sequence_length=MAX_SEQUENCE_LENGTH, embedding_dim=EMBED_DIM)(encoder_inputs)
        encoder_outputs = keras_hub.layers.TransformerEncoder(
            intermediate_dim=INTERMEDIATE_DIM, num_heads=NUM_HEADS)(inputs=x)

        decoder_inputs = keras.Input(shape=(None,), name="decoder_inputs")
        encoded_seq_inputs = keras.Input(shape=(None, EMBED_DIM), name="decoder_state_inputs")
        x = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=spa_vocab, sequence_length=MAX_SEQUENCE_LENGTH, embedding_dim=EMBED_DIM)(decoder_inputs)
        x = keras_hub.layers.TransformerDecoder(intermediate_dim=INTERMEDIATE_DIM, num_heads=NUM_HEADS)(
            decoder_sequence=x, encoder_sequence=encoded_seq_inputs)
        x = keras.layers.Dropout(0.5)(x)
        decoder_outputs = keras.layers.Dense(spa_vocab, activation="softmax")(x)
        decoder = keras.Model([decoder_inputs, encoded_seq_inputs], decoder_outputs)
        decoder_outputs = decoder([decoder_inputs, encoder_outputs])
        model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs, name="transformer")
        model.compile("rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def _preprocess(self, eng, spa):
        eng = self.eng_tokenizer(eng)
        spa = self.spa_tokenizer(spa)
        eng_packer = keras_hub.layers.StartEndPacker(sequence_length=MAX_SEQUENCE_LENGTH,
                                                     pad_value=self.eng_tokenizer.token_to_id("[PAD]"))
        eng = eng_packer(eng)
        spa_packer = keras_hub.layers.StartEndPacker(
            sequence_length=MAX_SEQUENCE_LENGTH + 1, start_value=self.spa_tokenizer.token_to_id("[START]"),
            end_value=self.spa_tokenizer.token_to_id("[END]"), pad_value=self.spa_tokenizer.token_to_id("[PAD]"))
        spa = spa_packer(spa)
        return {"encoder_inputs": eng, "decoder_inputs": spa[:, :-1]}, spa[:, 1:]

    def dataset(self, pairs):
        eng = tf.constant([p[0] for p in pairs])
        spa = tf.constant([p[1] for p in pairs])
        ds = tf.data.Dataset.from_tensor_slices((eng, spa)).batch(BATCH_SIZE)
        return ds.map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE).shuffle(2048).prefetch(16).cache()

    def fit(self, epochs: int, val_pairs=None, callbacks=None):
        val = self.dataset([(a.lower(), b.lower()) for a, b in val_pairs]) if val_pairs else None
        return self.model.fit(self.dataset(self.train_pairs), epochs=epochs, validation_data=val, verbose=0,
                              callbacks=callbacks or [])

    def decode_sequences(self, input_sentences):
        """The recipe's decoding: greedy, the full model over the whole 40-token prompt at each step."""
        batch_size = len(input_sentences)
        encoder_input_tokens = self.eng_tokenizer(tf.constant([s.lower() for s in input_sentences]))
        if not isinstance(encoder_input_tokens, (tf.Tensor, tf.RaggedTensor)):  # eager keras_hub gives lists
            encoder_input_tokens = tf.ragged.constant(encoder_input_tokens, dtype=tf.int32)
        if isinstance(encoder_input_tokens, tf.RaggedTensor):  # pad (and cut) to the recipe's 40 tokens
            encoder_input_tokens = encoder_input_tokens.to_tensor(0, shape=(batch_size, MAX_SEQUENCE_LENGTH))

        def next(prompt, cache, index):
            logits = self.model([encoder_input_tokens, prompt])[:, index - 1, :]
            return logits, None, cache

        start = tf.fill((batch_size, 1), self.spa_tokenizer.token_to_id("[START]"))
        pad = tf.fill((batch_size, MAX_SEQUENCE_LENGTH - 1), self.spa_tokenizer.token_to_id("[PAD]"))
        prompt = tf.concat((start, pad), axis=-1)
        generated = keras_hub.samplers.GreedySampler()(
            next, prompt, stop_token_ids=[self.spa_tokenizer.token_to_id("[END]")], index=1)
        texts = self.spa_tokenizer.detokenize(generated)
        out = []
        for t in texts.numpy() if hasattr(texts, "numpy") else texts:
            t = t.decode("utf-8") if isinstance(t, bytes) else str(t)
            t = t.replace("[PAD]", "").replace("[START]", "").replace("[END]", "").strip()
            out.append(t)
        return out

    def translate_all(self, sentences, batch_size: int = 50):
        """Decode ``sentences`` in batches; return (translations, seconds)."""
        out, t0 = [], time.perf_counter()
        for i in range(0, len(sentences), batch_size):
            out += self.decode_sequences(sentences[i : i + batch_size])
        return out, time.perf_counter() - t0
