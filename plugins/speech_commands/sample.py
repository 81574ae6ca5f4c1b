"""The built-in sample: command words spoken by espeak-ng (``espeakng-loader`` ships the library and its data),
over several accents, voice variants, rates and pitches, mixed with generated noise.

It is written once, deterministically, in the Speech Commands folder layout (``<word>/*.wav``,
``_background_noise_/``, ``validation_list.txt``, ``testing_list.txt``) under the user cache directory, so the
sample goes through exactly the loader that real Speech Commands data does. Validation and test use voices the
training split never hears.

espeak-ng keeps state between utterances (its pitch flutter and random jitter), so an utterance depends on
what the process said before. The sample is therefore written by a fresh interpreter
(``python -m suite_plugins.speech_commands.sample OUT``) that says the same words in the same order every time:
the files are byte-identical across runs and machines with the same espeak-ng build.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from suite.errors import DataSourceError

VERSION = "v1"
WORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go")
UNKNOWN_WORDS = ("cat", "house", "bird", "tree")  # other words: the "_unknown_" class
SAMPLE_RATE = 16000
# (accent, voice variant): 12 voices; the last three are held out for validation (1) and test (2).
VOICES = (
    ("en-us", "m1"), ("en", "f2"), ("en-gb-scotland", "m3"), ("en-029", "f1"), ("en-gb-x-rp", "m2"),
    ("en-us-nyc", "f3"), ("en-us", "m4"), ("en", "f4"), ("en-gb-x-rp", "m6"),
    ("en-029", "m5"),
    ("en-us", "f5"), ("en-gb-scotland", "m7"),
)
VAL_VOICES, TEST_VOICES = (9,), (10, 11)
RATES = (140, 190)  # words per minute
PITCHES = (35, 65)  # espeak pitch 0-100

_lock = threading.Lock()
_engine = None


def cache_dir() -> Path:
    """The suite's user cache: ``SUITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/keras-task-suite``."""
    env = os.environ.get("SUITE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "keras-task-suite"


def sample_dir() -> Path:
    return cache_dir() / f"speech_commands_sample_{VERSION}"


class _Espeak:
    """A minimal ctypes binding of espeak-ng's synchronous synthesis API."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise DataSourceError("the speech sample needs the espeakng-loader package: pip install espeakng-loader") from None
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as err:
            raise DataSourceError(f"espeak-ng from espeakng-loader could not be loaded: {err}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(2, 0, data.encode(), 0)  # 2 = AUDIO_OUTPUT_SYNCHRONOUS
        if self.rate <= 0:
            raise DataSourceError("espeak-ng failed to initialise")
        self.lib = lib
        self._libc = ctypes.CDLL(None)
        self.chunks: list[np.ndarray] = []
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def callback(wav, n, events):
            if n > 0:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = proto(callback)  # keep a reference: espeak holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def say(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        """int16 samples at ``self.rate`` for ``text``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise DataSourceError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
        self.chunks = []
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))  # espeak-ng's own jitter generator
        self._libc.srand(0)  # and the C library's rand(), which older code paths use
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


def synthesize(text: str, voice: str = "en-us+m1", rate: int = 170, pitch: int = 50,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 samples at ``sample_rate``, leading/trailing silence trimmed."""
    global _engine
    from suite_plugins.speech_commands.audio import resample

    with _lock:
        if _engine is None:
            _engine = _Espeak()
        pcm = _engine.say(text, voice, rate, pitch)
        native = _engine.rate
    wave = pcm.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    if loud.size:
        wave = wave[max(0, loud[0] - 200) : loud[-1] + 200]
    return resample(wave, native, sample_rate)


def generated_noise(kind: str, seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Deterministic white, pink, brown or hum noise, peak-normalised to 0.5."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    elif kind in ("pink", "brown"):
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / sample_rate)
        f[0] = f[1]
        spec = spec / (np.sqrt(f) if kind == "pink" else f)
        x = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / sample_rate
        x = sum(np.sin(2 * np.pi * 50 * h * t + h) / h for h in range(1, 8)) + 0.1 * white
    else:
        raise ValueError(kind)
    return (0.5 * x / (np.max(np.abs(x)) + 1e-9)).astype(np.float32)


def noise_bank(sample_rate: int) -> np.ndarray:
    """Generated noises used when a data set brings no ``_background_noise_`` folder."""
    return np.concatenate([generated_noise(k, 5.0, sample_rate, i) for i, k in enumerate(("white", "pink", "brown", "hum"))])


def _place(wave: np.ndarray, n: int, rng) -> np.ndarray:
    """Put ``wave`` at a random offset in an ``n``-sample clip (cropping it if it is longer)."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n].copy()
    out = np.zeros(n, np.float32)
    offset = int(rng.integers(0, n - len(wave) + 1))
    out[offset : offset + len(wave)] = wave
    return out


def ensure_sample() -> Path:
    """Build the sample folder once (atomically) and return it; later calls just return it."""
    root = sample_dir()
    if (root / "COMPLETE").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=root.parent))
    try:
        write_sample_fresh(tmp)
        (tmp / "COMPLETE").write_text(VERSION)
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first (or a stale partial folder is in the way)
            if not (root / "COMPLETE").is_file():
                shutil.rmtree(root, ignore_errors=True)
                os.replace(tmp, root)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return root


def write_sample_fresh(root: Path, voices: int = len(VOICES), words: tuple[str, ...] = WORDS + UNKNOWN_WORDS) -> None:
    """Write the sample into the existing empty folder ``root`` from a fresh interpreter (see the module doc)."""
    cmd = [sys.executable, "-m", "suite_plugins.speech_commands.sample", str(root), str(voices), ",".join(words)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataSourceError(f"could not synthesise the speech sample with espeak-ng: {tail}")


def _write_sample(root: Path, voices: int = len(VOICES), words: tuple[str, ...] = WORDS + UNKNOWN_WORDS) -> None:
    import soundfile as sf

    rng = np.random.default_rng(1234)
    n = SAMPLE_RATE  # one-second clips, as in Speech Commands
    noise = root / "_background_noise_"
    noise.mkdir()
    bank = []
    for i, kind in enumerate(("white", "pink", "brown", "hum")):
        clip = generated_noise(kind, 10.0, SAMPLE_RATE, 100 + i)
        sf.write(noise / f"{kind}_noise.wav", clip, SAMPLE_RATE, subtype="PCM_16")
        bank.append(clip)
    bank_all = np.concatenate(bank)
    val, test = [], []
    for word in words:
        (root / word).mkdir()
        settings = [(r, p) for r in RATES for p in PITCHES]
        if word in UNKNOWN_WORDS:  # fewer renditions of the filler words
            settings = settings[:1]
        for v, (accent, variant) in enumerate(VOICES[:voices]):
            for rate, pitch in settings:
                wave = synthesize(word, f"{accent}+{variant}", rate, pitch)
                clip = _place(wave * rng.uniform(0.3, 0.9), n, rng)
                start = int(rng.integers(0, len(bank_all) - n))
                snr_db = rng.uniform(10, 30)
                nz = bank_all[start : start + n]
                clip_rms = np.sqrt(np.mean(clip**2)) + 1e-9
                clip = clip + nz * clip_rms / (np.sqrt(np.mean(nz**2)) + 1e-9) / 10 ** (snr_db / 20)
                name = f"voice{v:02d}_nohash_{rate}_{pitch}.wav"
                sf.write(root / word / name, np.clip(clip, -1, 1), SAMPLE_RATE, subtype="PCM_16")
                rel = f"{word}/{name}"
                if v in VAL_VOICES:
                    val.append(rel)
                elif v in TEST_VOICES:
                    test.append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "README.txt").write_text(
        "Synthetic speech-commands sample made by keras-task-suite with espeak-ng (espeakng-loader); "
        "not real speech. Regenerated automatically if deleted.\n")


# Synthetic voices for training: many espeak-ng speakers (accent x voice variant x rate x pitch) saying a class's
# name, added to a user's training split. Training keyword spotters on synthesized speech beside recorded speech
# helps most when the recordings come from few speakers.
VOICE_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd")
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
                  "Alex", "Andy", "Annie", "adam", "anika", "aunty", "belinda", "benjamin", "caleb", "david", "ed",
                  "edward", "grandma", "grandpa", "ian", "john", "linda", "max", "michel", "norbert")
VOICES_VERSION = "v1"


def speakable(name: str) -> str | None:
    """The text espeak-ng should say for a class name, or None for "_silence_"/"_unknown_" and empty names."""
    text = name.replace("_", " ").replace("-", " ").strip()
    return None if not text or name.startswith("_") else text


def voice_clips(words: list[str], per_word: int, sample_rate: int) -> dict[str, list[str]]:
    """``per_word`` synthetic renditions of each word (cached; written once by a fresh interpreter so that the
    files do not depend on what this process said before); {word: [wav paths]}."""
    root = cache_dir() / f"speech_voices_{VOICES_VERSION}_{sample_rate}"
    out: dict[str, list[str]] = {}
    todo = []
    for word in words:
        folder = root / _slug(word)
        paths = [folder / f"{i:04d}.wav" for i in range(per_word)]
        if not all(p.is_file() for p in paths):
            todo.append(word)
        out[word] = [str(p) for p in paths]
    if todo:
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "suite_plugins.speech_commands.sample", "--voices", str(root), str(per_word),
               str(sample_rate), "\x1f".join(todo)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataSourceError(f"could not synthesise training voices with espeak-ng ({tail}); set "
                                  "synthetic_voices=0 to train on the recorded clips alone")
    return out


def _slug(word: str) -> str:
    import hashlib

    safe = "".join(c if c.isalnum() else "-" for c in word.lower())[:40]
    return f"{safe}-{hashlib.sha1(word.encode()).hexdigest()[:8]}"


def _write_voices(root: Path, per_word: int, sample_rate: int, words: list[str]) -> None:
    import soundfile as sf

    for word in words:
        folder = root / _slug(word)
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(int.from_bytes(_slug(word).encode()[-8:], "little"))
        for i in range(per_word):
            voice = f"{VOICE_ACCENTS[rng.integers(len(VOICE_ACCENTS))]}+{VOICE_VARIANTS[rng.integers(len(VOICE_VARIANTS))]}"
            rate, pitch = int(rng.integers(110, 230)), int(rng.integers(15, 85))
            wave = synthesize(speakable(word) or word, voice, rate, pitch, sample_rate=sample_rate)
            tmp = folder / f".{i:04d}.{os.getpid()}.wav.tmp"  # processes may fill the cache at once
            sf.write(tmp, np.clip(wave, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
            os.replace(tmp, folder / f"{i:04d}.wav")


if __name__ == "__main__":
    if sys.argv[1] == "--voices":
        _write_voices(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split("\x1f"))
    else:
        _write_sample(Path(sys.argv[1]), int(sys.argv[2]), tuple(sys.argv[3].split(",")))
