"""Fine-tuning a pretrained KerasHub seq2seq preset (BART, T5) as a strings-to-strings translation model.

``PretrainedTranslator`` wraps a ``keras_hub.models.Seq2SeqLM`` (its backbone *and* its preprocessor) so that it
behaves like the from-scratch :class:`~suite_plugins.translation.model.TranslationTransformer`:

* called on the preprocessor's token dict it returns next-token logits (what ``fit`` trains);
* called on a batch of strings it tokenizes, decodes with a KerasHub sampler and the preset's key/value cache,
  and detokenizes in one graph, so the SavedModel export serves a source string -> the translated string;
* it serializes the preset model through KerasHub's own config and assets (the tokenizer's vocabulary and merges
  travel as ``.keras`` assets, not file paths), so ``model.keras`` reloads with ``safe_mode=True``.

A preset is a KerasHub name (``bart_base_en``, ``t5_small_multi``; downloaded once, needs the network) or a local
preset folder written by ``Seq2SeqLM.save_to_preset`` (works offline; the tests use a tiny one).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import keras
import tensorflow as tf

from suite.errors import ConfigError, SuiteError
from suite_plugins.translation.model import StringToString

_COUNTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled translate-and-count
PRESETS_HINT = "bart_base_en, t5_small_multi, or a local folder saved with Seq2SeqLM.save_to_preset"


def is_local_preset(preset: str) -> bool:
    return Path(os.path.expanduser(preset)).is_dir()


def _require_reachable(preset: str) -> None:
    """A named preset needs Kaggle/Hugging Face; offline that is one clear line, not a download traceback."""
    from suite.data import online

    if is_local_preset(preset):
        return
    if not online("www.kaggle.com", "huggingface.co"):
        raise SuiteError(
            f"pretrained preset {preset!r} must be downloaded from Kaggle/Hugging Face and there is no network; "
            "give a local preset folder or leave `pretrained` empty to train from scratch")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_seq2seq(preset: str):
    """The preset's ``Seq2SeqLM`` with its preprocessor; any failure is one SuiteError line."""
    _require_reachable(preset)
    import keras_hub

    location = os.path.expanduser(preset) if is_local_preset(preset) else preset
    try:
        model = keras_hub.models.Seq2SeqLM.from_preset(location)
    except Exception as err:
        raise SuiteError(f"could not load the seq2seq preset {preset!r} (try {PRESETS_HINT}): "
                         f"{_first_line(err)}") from None
    if model.preprocessor is None:
        raise SuiteError(f"preset {preset!r} has no preprocessor (tokenizer); it cannot translate strings")
    return model


def load_preprocessor(preset: str):
    """Only the preset's tokenizer and packers: what the input pipeline needs before the model exists."""
    _require_reachable(preset)
    import keras_hub

    location = os.path.expanduser(preset) if is_local_preset(preset) else preset
    try:
        return keras_hub.models.Seq2SeqLMPreprocessor.from_preset(location)
    except Exception as err:
        raise SuiteError(f"could not load the tokenizer of preset {preset!r} (try {PRESETS_HINT}): "
                         f"{_first_line(err)}") from None


def check_lengths(backbone, source_length: int, target_length: int) -> None:
    """The config's lengths must fit the backbone's position embedding (T5 has none: no limit)."""
    cap = getattr(backbone, "max_sequence_length", None)
    if cap and max(source_length, target_length) > cap:
        raise ConfigError(f"source_sequence_length/target_sequence_length ({source_length}/{target_length}) "
                          f"exceed the preset's maximum of {cap} tokens")


def set_lengths(preprocessor, source_length: int, target_length: int) -> None:
    preprocessor.encoder_sequence_length = int(source_length)
    preprocessor.decoder_sequence_length = int(target_length)


@keras.saving.register_keras_serializable(package="suite_translation")
class PretrainedTranslator(StringToString, keras.Model):
    """A KerasHub ``Seq2SeqLM`` that trains on token dicts and translates strings to strings in-graph."""

    def __init__(self, seq2seq, source_sequence_length: int = 40, target_sequence_length: int = 40,
                 beam_size: int = 1, max_decode_length: int = 40, preset: str = "", **kwargs):
        super().__init__(**kwargs)
        if isinstance(seq2seq, dict):
            seq2seq = keras.saving.deserialize_keras_object(seq2seq)
        if getattr(seq2seq, "preprocessor", None) is None:
            raise ValueError("PretrainedTranslator needs a Seq2SeqLM with a preprocessor")
        self.seq2seq = seq2seq
        self.preset = str(preset)
        check_lengths(seq2seq.backbone, int(source_sequence_length), int(target_sequence_length))
        self.source_sequence_length = int(source_sequence_length)
        self.target_sequence_length = int(target_sequence_length)
        self.beam_size = int(beam_size)
        self.max_decode_length = int(max_decode_length)
        set_lengths(seq2seq.preprocessor, self.source_sequence_length, self.target_sequence_length)
        self.built = True  # the preset model's weights already exist (BackupAndRestore and load need that)

    @property
    def preprocessor(self):
        return self.seq2seq.preprocessor

    @property
    def tokenizer(self):
        return self.seq2seq.preprocessor.tokenizer

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    # ---- forward passes ---------------------------------------------------------------------------
    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            return self.seq2seq(inputs, training=training)
        return self.translate(inputs)

    def decode_length(self) -> int:
        return max(2, min(self.max_decode_length, self.target_sequence_length))

    def _sampler(self, beam_size: int):
        import keras_hub

        if beam_size > 1:
            return keras_hub.samplers.BeamSampler(num_beams=int(beam_size))
        return keras_hub.samplers.GreedySampler()

    def translate(self, strings, beam_size: int | None = None, *, return_counts: bool = False):
        """Strings in, translated strings out: the preset's tokenizer, cached decoding and detokenizer.

        What ``generate_preprocess`` does, except that the empty decoder prompt is packed directly instead of
        tokenizing empty strings: tracing the byte-pair tokenizer is most of the cost of building this graph.
        With ``return_counts`` it also returns each source's token count (specials included).
        """
        strings = tf.reshape(tf.convert_to_tensor(strings, tf.string), [-1])
        pre = self.preprocessor
        if not pre.built:
            pre.build(None)
        ids = self.tokenizer(strings)
        enc_ids, enc_mask = pre.encoder_packer(ids, sequence_length=self.source_sequence_length)
        empty = tf.RaggedTensor.from_row_lengths(tf.zeros([0], enc_ids.dtype),
                                                 tf.zeros([tf.shape(strings)[0]], tf.int64))
        dec_ids, dec_mask = pre.decoder_packer(empty, sequence_length=self.decode_length(), add_end_value=False)
        x = {"encoder_token_ids": enc_ids, "encoder_padding_mask": enc_mask,
             "decoder_token_ids": dec_ids, "decoder_padding_mask": dec_mask}
        # generate_step reads the sampler from the model, as KerasHub's compile() would have set it.
        self.seq2seq.sampler = self._sampler(self.beam_size if beam_size is None else beam_size)
        out = self.seq2seq.generate_step(x, stop_token_ids=[int(self.tokenizer.end_token_id)])
        text = tf.strings.strip(tf.reshape(tf.convert_to_tensor(pre.generate_postprocess(out), tf.string), [-1]))
        if not return_counts:
            return text
        packer = pre.encoder_packer
        specials = len(packer.start_value or []) + len(packer.end_value or [])
        return text, tf.cast(ids.row_lengths(), tf.int64) + specials

    def translate_with_counts(self, strings):
        """(translations, source token counts) from one compiled graph, for the suite's predict path."""
        fn = _COUNTED.get(self)
        if fn is None:
            fn = tf.function(lambda s: self.translate(s, return_counts=True), reduce_retracing=True,
                             input_signature=[tf.TensorSpec([None], tf.string)])
            _COUNTED[self] = fn  # kept off the model: a SavedModel export must not pick it up
        return fn(tf.reshape(tf.convert_to_tensor(strings, tf.string), [-1]))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "seq2seq": _without_compile(keras.saving.serialize_keras_object(self.seq2seq)),
            "source_sequence_length": self.source_sequence_length,
            "target_sequence_length": self.target_sequence_length,
            "beam_size": self.beam_size,
            "max_decode_length": self.max_decode_length,
            "preset": self.preset,
        }


def _without_compile(serialized: dict) -> dict:
    """KerasHub compiles a preset on construction; the suite compiles the wrapper, so drop the inner state
    (reloading it would only warn that a custom ``compile()`` cannot be restored)."""
    serialized = dict(serialized)
    serialized.pop("compile_config", None)
    return serialized


def build_translator(preset: str, config) -> PretrainedTranslator:
    """The preset's seq2seq model wrapped for the suite, with the config's lengths and decoding settings."""
    return PretrainedTranslator(
        load_seq2seq(preset), source_sequence_length=config.source_sequence_length,
        target_sequence_length=config.target_sequence_length, beam_size=config.beam_size,
        max_decode_length=config.max_decode_length, preset=preset, name="translation")


def batch_pairs(ds, preprocessor, batch_size: int, source_length: int, target_length: int, *,
                training: bool = True):
    """(source, target) string pairs -> ({token dict}, next-token targets) through the preset's preprocessor.

    The preprocessor's sample weights are dropped: the suite's masked loss ignores the pad id itself. A
    validation split is tokenized once, here: every new iterator over a pipeline holding the byte-pair
    tokenizer's graph costs seconds of setup, and Keras opens one per epoch for validation.
    """

    def pack(src, tgt):
        x, y, _ = preprocessor({"encoder_text": src, "decoder_text": tgt},
                               encoder_sequence_length=source_length, decoder_sequence_length=target_length)
        return x, y

    packed = ds.batch(batch_size).map(pack, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        return packed
    parts = list(packed)
    if not parts:
        return packed
    xs = {key: tf.concat([x[key] for x, _ in parts], axis=0) for key in parts[0][0]}
    ys = tf.concat([y for _, y in parts], axis=0)
    return tf.data.Dataset.from_tensor_slices((xs, ys)).batch(batch_size)
