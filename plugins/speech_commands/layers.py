"""Registered layers that turn a raw waveform into normalised log-mel (or MFCC) features inside the model.

The short-time Fourier transform frames the waveform, applies a periodic Hann window and takes
``tf.signal.rfft`` with a power-of-two ``fft_length`` (``stft="rfft"``, the default): it stores no weights, so
int8 and dynamic-range TFLite exports quantize only the network, and TFLite runs it with its builtin RFFT2D.
``stft="dft"`` is the earlier front end (a strided conv1d with a stored windowed-DFT kernel of
``fft_length = frame_length``); models saved before the ``stft`` key existed reload with it unchanged.
The mel filterbank is the HTK-mel matrix of ``tf.signal.linear_to_mel_weight_matrix``, rebuilt in numpy from
the layer's config so nothing but the config is saved. It is applied as a band (each triangle touches at most a
dozen adjacent bins: a gather and a weighted sum) rather than a dense (bins x mels) matmul, so exports store
~1k numbers instead of ~5k floats that int8 would have to keep in float, and dynamic-range quantization finds
no matmul in the front end to quantize.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

PACKAGE = "suite_speech_commands"


def mel_matrix(n_mels: int, n_bins: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_bins, n_mels) triangular HTK-mel weights, as tf.signal.linear_to_mel_weight_matrix builds them."""
    def hz_to_mel(f):
        return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)

    mels = hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_bins))
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (mels[:, None] - lower) / (center - lower)
    down = (upper - mels[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights[0, :] = 0.0  # the DC bin carries no speech
    return weights.astype(np.float32)


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_in, n_out) orthonormal DCT-II, the transform tf.signal.mfccs_from_log_mel_spectrograms applies."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    basis[:, 0] *= np.sqrt(0.5)
    return basis.astype(np.float32)


def mel_band(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (bins, mels) filterbank as (mels, width) bin indices and weights: each filter's contiguous support."""
    first = np.array([np.flatnonzero(mel[:, j])[0] if mel[:, j].any() else 0 for j in range(mel.shape[1])])
    last = np.array([np.flatnonzero(mel[:, j])[-1] if mel[:, j].any() else 0 for j in range(mel.shape[1])])
    width = int(max(1, (last - first).max() + 1))
    index = np.minimum(first[:, None] + np.arange(width)[None, :], mel.shape[0] - 1)
    weight = np.take_along_axis(mel.T, index, axis=1) * (first[:, None] + np.arange(width) <= last[:, None])
    return index.astype(np.int32), weight.astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform (batch, samples) -> log-mel (batch, frames, n_mels), or MFCCs when ``n_mfcc > 0``."""

    def __init__(self, sample_rate=16000, frame_length=400, frame_step=160, n_mels=40, fmin=20.0, fmax=7600.0,
                 n_mfcc=0, stft="rfft", fft_length=None, peak_normalize=False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # features stay float32 under mixed precision
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = float(min(fmax, sample_rate / 2.0))
        self.n_mfcc = int(n_mfcc)
        # Scale each clip to unit peak (at most +40 dB) before the spectrum: the log floor is fixed, so without
        # it the contrast between speech and the floor follows the recording level, a per-speaker cue.
        self.peak_normalize = bool(peak_normalize)
        if stft not in ("rfft", "dft"):
            raise ValueError(f"stft must be 'rfft' or 'dft', got {stft!r}")
        self.stft = stft
        if stft == "dft":
            self.fft_length = self.frame_length
        else:
            self.fft_length = int(fft_length or 1 << (self.frame_length - 1).bit_length())
            if self.fft_length < self.frame_length or self.fft_length & (self.fft_length - 1):
                raise ValueError(f"fft_length must be a power of two >= frame_length ({self.frame_length}), "
                                 f"got {self.fft_length}")
        full_bins = self.fft_length // 2 + 1
        # Only the bins up to fmax carry mel weight: dropping the rest shrinks the mel matrix (and, for "dft",
        # the stored kernel) and their compute without changing the features.
        self.n_bins = min(full_bins, int(np.floor(self.fmax * self.fft_length / self.sample_rate)) + 2)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.frame_length) / self.frame_length))
        self._window = self._window.astype(np.float32)
        self._kernel = None
        if stft == "dft":
            n = np.arange(self.frame_length)[:, None]
            k = np.arange(self.n_bins)[None, :]
            angle = 2 * np.pi * n * k / self.frame_length
            kernel = np.concatenate([self._window[:, None] * np.cos(angle),
                                     -self._window[:, None] * np.sin(angle)], axis=1)
            self._kernel = kernel[:, None, :].astype(np.float32)  # (width, in_channels=1, 2 * bins)
        self._mel = mel_matrix(self.n_mels, full_bins, self.sample_rate, self.fmin, self.fmax)[: self.n_bins]
        self._band_index, self._band_weight = mel_band(self._mel)
        self._dct = dct_matrix(self.n_mels, self.n_mfcc) if self.n_mfcc else None

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("stft", "dft")  # saved before the key existed: the conv1d DFT front end
        return cls(**config)

    def power_spectrum(self, x):
        """(batch, samples) -> (batch, frames, n_bins) power of the windowed frames, bins below fmax only."""
        x = tf.cast(x, tf.float32)
        if self.peak_normalize:
            x = x / tf.maximum(tf.reduce_max(tf.abs(x), axis=1, keepdims=True), 0.01)
        if self.stft == "dft":
            spec = tf.nn.conv1d(x[:, :, None], tf.constant(self._kernel), stride=self.frame_step, padding="VALID")
            re, im = spec[..., : self.n_bins], spec[..., self.n_bins :]
        else:
            frames = tf.signal.frame(x, self.frame_length, self.frame_step) * tf.constant(self._window)
            # |rfft| of a 2-D (frames, samples) batch, then slice: TFLite has no complex StridedSlice, and
            # tf2onnx converts RFFT only into ComplexAbs and only when it can infer the complex tensor's shape.
            magnitude = tf.abs(tf.signal.rfft(tf.reshape(frames, [-1, self.frame_length]),
                                              fft_length=[self.fft_length]))
            count = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
            magnitude = tf.reshape(magnitude[:, : self.n_bins], [-1, count, self.n_bins])
            return tf.square(magnitude)
        return re * re + im * im

    def num_frames(self, samples: int) -> int:
        return 1 + (int(samples) - self.frame_length) // self.frame_step

    def call(self, x):
        power = self.power_spectrum(x)  # (batch, frames, bins)
        taps = tf.gather(power, tf.constant(self._band_index), axis=2)  # (batch, frames, mels, width)
        mel = tf.reduce_sum(taps * tf.constant(self._band_weight), axis=-1)
        out = tf.math.log(mel + 1e-6)
        if self._dct is not None:
            out = tf.matmul(out, tf.constant(self._dct))
        return out

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else self.num_frames(input_shape[1])
        return (input_shape[0], frames, self.n_mfcc or self.n_mels)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "frame_step": self.frame_step, "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax,
                "n_mfcc": self.n_mfcc, "stft": self.stft, "fft_length": self.fft_length,
                "peak_normalize": self.peak_normalize}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PerExampleNormalization(keras.layers.Layer):
    """Subtract each band's mean over time, divide by the example's std: removes gain and channel colouring.

    Cepstral-mean-style normalisation per utterance is what lets a model trained on a few speakers and
    microphones generalise to new ones; no statistics are learnt from the training set.
    """

    def __init__(self, epsilon=1e-3, per_band=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.per_band = bool(per_band)  # True: each band's own std (CMVN); False: one std per example

    def call(self, x):
        x = x - tf.reduce_mean(x, axis=1, keepdims=True)
        std = tf.sqrt(tf.reduce_mean(tf.square(x), axis=[1] if self.per_band else [1, 2], keepdims=True))
        return x / (std + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "per_band": self.per_band}


def _interpolation(n: int, src):
    """(batch, n, n) linear-interpolation weights reading output index j from source position ``src[:, j]``."""
    i = tf.range(n, dtype=tf.float32)[None, None, :]
    return tf.nn.relu(1.0 - tf.abs(src[:, :, None] - i))


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomStretch(keras.layers.Layer):
    """Training-only: stretch time by a factor up to ``1 + time_stretch`` either way, warp frequency by ±``freq_warp``.

    Frequency warping of the mel axis imitates vocal-tract-length differences between speakers (VTLP), time
    stretching imitates speaking rate; both help a model trained on few speakers. Identity at inference.
    """

    def __init__(self, time_stretch=0.1, freq_warp=0.1, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.time_stretch = float(time_stretch)
        self.freq_warp = float(freq_warp)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or (self.time_stretch <= 0 and self.freq_warp <= 0):
            return x
        batch = tf.shape(x)[0]
        frames, bins = x.shape[1], x.shape[2]
        if self.freq_warp > 0:
            scale = keras.random.uniform((batch, 1), 1 - self.freq_warp, 1 + self.freq_warp, seed=self.seed_generator)
            src = tf.range(bins, dtype=tf.float32)[None, :] / scale
            x = tf.matmul(x, _interpolation(bins, src), transpose_b=True)
        if self.time_stretch > 0:  # log-uniform in [1/(1+s), 1+s]: as likely twice as slow as twice as fast
            bound = float(np.log1p(self.time_stretch))
            scale = tf.exp(keras.random.uniform((batch, 1), -bound, bound, seed=self.seed_generator))
            centre = (frames - 1) / 2.0
            src = (tf.range(frames, dtype=tf.float32)[None, :] - centre) / scale + centre
            x = tf.matmul(_interpolation(frames, src), x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "time_stretch": self.time_stretch, "freq_warp": self.freq_warp,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecAugment(keras.layers.Layer):
    """Training-only SpecAugment (Park et al. 2019): zero random time and frequency bands. Identity at inference."""

    def __init__(self, time_masks=2, time_mask_width=10, freq_masks=2, freq_mask_width=5, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.time_masks = int(time_masks)
        self.time_mask_width = int(time_mask_width)
        self.freq_masks = int(freq_masks)
        self.freq_mask_width = int(freq_mask_width)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _masks(self, batch, size: int, count: int, width: int):
        keep = tf.ones((batch, size), tf.bool)
        idx = tf.range(size)[None, :]
        for _ in range(count):
            w = tf.cast(keras.random.uniform((batch, 1), 0, width + 1, seed=self.seed_generator), tf.int32)
            w = tf.minimum(w, size)
            start = tf.cast(keras.random.uniform((batch, 1), 0, 1, seed=self.seed_generator)
                            * tf.cast(size - w + 1, tf.float32), tf.int32)
            keep = keep & ~((idx >= start) & (idx < start + w))
        return keep

    def call(self, x, training=False):
        if not training:
            return x
        batch = tf.shape(x)[0]
        if self.time_masks and self.time_mask_width:
            x = tf.where(self._masks(batch, x.shape[1], self.time_masks, self.time_mask_width)[:, :, None], x, 0.0)
        if self.freq_masks and self.freq_mask_width:
            x = tf.where(self._masks(batch, x.shape[2], self.freq_masks, self.freq_mask_width)[:, None, :], x, 0.0)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "time_masks": self.time_masks, "time_mask_width": self.time_mask_width,
                "freq_masks": self.freq_masks, "freq_mask_width": self.freq_mask_width, "seed": self.seed}
