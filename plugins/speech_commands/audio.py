"""Audio decoding shared by prediction, data loading and the sample: bytes -> mono float32 clip at the model rate.

Everything goes through libsndfile (``soundfile``) and ``soxr``, so WAV/FLAC/OGG of any bit depth, rate and
channel count land in one shape. The header is checked before any sample is read, so a file that claims hours
of audio (or a huge channel count) is refused or capped without allocating for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from suite.errors import InputError

MAX_FILE_BYTES = 64 * 1024 * 1024  # larger uploads are refused unread
MAX_CLAIMED_SECONDS = 3600.0  # a header claiming more than this is refused as implausible for a clip
MAX_READ_SECONDS = 30.0  # longer (plausible) files are capped: only their first 30 s are read
MAX_CHANNELS = 64
MIN_RATE, MAX_RATE = 1000, 768_000
FORMATS = ("WAV", "FLAC", "OGG")


def decode_audio(raw: bytes, sample_rate: int, clip_samples: int) -> np.ndarray:
    """Decode audio bytes into a mono float32 clip of ``clip_samples`` at ``sample_rate``; InputError otherwise."""
    if isinstance(raw, str):
        raise InputError("expected audio file bytes (WAV, FLAC or OGG), got text")
    raw = bytes(raw)
    if not raw:
        raise InputError("the audio file is empty (0 bytes)")
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"the audio file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
    wave, rate = read_audio(io.BytesIO(raw))
    return fit_clip(resample(wave, rate, sample_rate), clip_samples)


def read_audio(fh, *, max_seconds: float = MAX_READ_SECONDS) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate from a file object or path, header checked before reading."""
    import soundfile as sf

    name = fh if isinstance(fh, (str, Path)) else "the audio file"
    try:  # one open, the header parsed once (sf.info then sf.read opened the file twice: 0.79 -> 0.59 ms a clip)
        sound = sf.SoundFile(fh)
    except Exception:  # LibsndfileError, RuntimeError, TypeError: not audio libsndfile knows
        raise InputError(f"{name} is not audio that libsndfile can read (expected WAV, FLAC or OGG)") from None
    with sound:
        rate, channels, frames = int(sound.samplerate), int(sound.channels), int(sound.frames)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise InputError(f"{name} claims a sample rate of {rate} Hz; expected {MIN_RATE}-{MAX_RATE} Hz")
        if not 1 <= channels <= MAX_CHANNELS:
            raise InputError(f"{name} claims {channels} channels; at most {MAX_CHANNELS} are accepted")
        if frames <= 0:
            raise InputError(f"{name} has no audio samples")
        claimed = frames / rate
        if claimed > MAX_CLAIMED_SECONDS:
            raise InputError(
                f"{name}'s header claims {claimed / 3600:.1f} hours of audio; clips longer than "
                f"{MAX_CLAIMED_SECONDS / 3600:.0f} hour are refused")
        n = min(frames, int(max_seconds * rate))  # capped: never read more than the first max_seconds
        try:
            data = sound.read(frames=n, dtype="float32", always_2d=True)
        except Exception as err:
            raise InputError(f"{name} could not be decoded: "
                             f"{str(err).splitlines()[0] if str(err) else 'corrupt data'}") from None
    if data.shape[0] == 0:
        raise InputError(f"{name} has no audio samples")
    wave = data.mean(axis=1, dtype=np.float32)  # mix every channel down to mono
    if not np.all(np.isfinite(wave)):
        raise InputError(f"{name} holds non-finite samples (NaN or infinity)")
    peak = float(np.max(np.abs(wave)))
    if peak > 1.0:  # float files may exceed full scale; bring them back into [-1, 1]
        wave = wave / peak
    return wave.astype(np.float32), rate


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample with soxr (high quality); a no-op at the same rate."""
    if rate == target:
        return np.asarray(wave, np.float32)
    import soxr

    return soxr.resample(np.asarray(wave, np.float32), rate, target, quality="HQ").astype(np.float32)


def fit_clip(wave: np.ndarray, n: int) -> np.ndarray:
    """Centre-pad a short clip with zeros; from a long one keep the loudest ``n``-sample window.

    Keeping the loudest window rather than the first second means a word spoken late in a long recording
    is still what the model hears; both training data and uploads go through here, so they match.
    """
    wave = np.asarray(wave, np.float32).reshape(-1)
    if len(wave) == n:
        return wave
    if len(wave) < n:
        left = (n - len(wave)) // 2
        return np.pad(wave, (left, n - len(wave) - left))
    hop = max(1, n // 100)
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, len(wave) - n + 1, hop)
    if starts[-1] != len(wave) - n:
        starts = np.append(starts, len(wave) - n)
    best = int(starts[np.argmax(energy[starts + n] - energy[starts])])
    return wave[best : best + n].copy()


def load_file(path: str | Path, sample_rate: int, clip_samples: int) -> np.ndarray:
    """A training file as a model-rate clip (errors name the file)."""
    try:
        wave, rate = read_audio(str(path))
    except InputError as err:
        from suite.errors import DataSourceError

        raise DataSourceError(str(err)) from None
    return fit_clip(resample(wave, rate, sample_rate), clip_samples)


def load_long(path: str | Path, sample_rate: int, max_seconds: float = 600.0) -> np.ndarray:
    """A long noise recording at the model rate (for background-noise mixing and silence clips)."""
    wave, rate = read_audio(str(path), max_seconds=max_seconds)
    return resample(wave, rate, sample_rate)


def wav_bytes(wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Encode a float waveform as WAV bytes (examples, tests)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, np.float32), -1, 1), sample_rate, format="WAV", subtype=subtype)
    return buf.getvalue()
