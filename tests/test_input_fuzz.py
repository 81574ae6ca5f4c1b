"""Property-based tests of every plugin's input decoding: whatever a stranger uploads or types, ``decode_input``
returns a usable numpy input or raises the suite's own ``InputError``, never another exception, never a hang;
and a valid example still decodes right after, in the same process.

Plugins are found by name: a plugin not registered yet is skipped with a visible reason, and a new one is
covered as soon as its name is in ``FUZZED`` (or it registers; see ``_names``).
"""

from __future__ import annotations

import io
import os
import signal
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite.errors import InputError

FUZZED = ["image_classification", "sentiment", "translation", "speech_commands", "tabular_classification"]
PER_EXAMPLE_S = 5  # a decode that takes longer than this is a hang
EXAMPLES = int(os.environ.get("SUITE_FUZZ_EXAMPLES", "40"))  # per strategy; 3 strategies -> <= 150 per plugin
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _names() -> list[str]:
    from suite.registry import get_registry

    extra = [n for n in get_registry().names() if n not in FUZZED]
    return FUZZED + extra


class Hang(Exception):
    pass


@contextmanager
def time_bound(seconds: float):
    """Fail an example that runs past ``seconds`` (SIGALRM: the test runs in the main thread)."""
    def _alarm(signum, frame):
        raise Hang(f"decode_input ran longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_CACHE: dict[str, tuple] = {}


def _task_and_meta(name: str):
    """The task and the meta of its built-in sample (loaded once per process)."""
    from suite.data import parse_source
    from suite.registry import get_registry

    reg = get_registry()
    if name not in reg:
        reasons = [f.reason for f in reg.failures if f.name == name]
        pytest.skip(f"plugin {name!r} is not registered" + (f": {reasons[0]}" if reasons else " (not installed yet)"))
    if name not in _CACHE:
        task = reg.get(name)
        meta = task.load_data(parse_source("sample"), task.make_config(task.sample_overrides)).meta
        _CACHE[name] = (task, meta)
    return _CACHE[name]


def _check(task, meta, raw) -> None:
    try:
        with time_bound(PER_EXAMPLE_S):
            x = task.decode_input(raw, meta)
    except InputError as err:
        message = str(err)
        assert message.strip() and "\n" not in message.strip(), f"InputError must be one line: {message!r}"
        return
    assert isinstance(x, np.ndarray), f"decode_input returned {type(x).__name__}, not a numpy array"
    if x.dtype.kind in "fiu":
        assert x.size > 0 and np.all(np.isfinite(x)), "decoded numbers must be finite and non-empty"


# ---- near-valid inputs -----------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@st.composite
def png_like(draw) -> bytes:
    """A PNG signature and IHDR with any dimensions (up to a 4-gigapixel bomb), then garbage or a real body."""
    width = draw(st.integers(0, 2**31 - 1) | st.integers(1, 64))
    height = draw(st.integers(0, 2**31 - 1) | st.integers(1, 64))
    depth = draw(st.sampled_from([1, 2, 4, 8, 16, 0, 3, 255]))
    color = draw(st.sampled_from([0, 2, 3, 4, 6, 1, 7]))
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if draw(st.booleans()):
        body = _png_chunk(b"IDAT", zlib.compress(draw(st.binary(max_size=512)))) + _png_chunk(b"IEND", b"")
    else:
        body = draw(st.binary(max_size=512))
    return head + body


@st.composite
def corrupted_png(draw) -> bytes:
    """A real small PNG with a few bytes flipped or the end cut off."""
    from PIL import Image

    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1"]))
    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(8, len(data)))])


@st.composite
def wav_like(draw) -> bytes:
    """A RIFF/WAVE header with any format fields (zero channels, absurd rates, huge sizes), then garbage."""
    channels = draw(st.integers(0, 65535) | st.sampled_from([1, 2]))
    rate = draw(st.integers(0, 2**32 - 1) | st.sampled_from([8000, 16000, 44100]))
    bits = draw(st.sampled_from([0, 1, 8, 16, 24, 32, 64, 12]))
    fmt_tag = draw(st.sampled_from([1, 3, 0, 2, 0xFFFE, 85]))
    block = (channels * bits) // 8 & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    payload = draw(st.binary(max_size=2048))
    data_size = draw(st.sampled_from([len(payload), 0, 2**32 - 1, len(payload) + 1000]))
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_size) + payload
    riff_size = draw(st.sampled_from([len(body), 0, 2**32 - 1]))
    return b"RIFF" + struct.pack("<I", riff_size) + body


@st.composite
def real_wav(draw) -> bytes:
    """A real WAV (any rate, channels, length, including empty and full-scale) then truncated or not."""
    import wave

    rate = draw(st.sampled_from([1, 800, 8000, 16000, 48000, 192000]))
    channels = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(0, 4000))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(draw(st.sampled_from([1, 2, 4])))
        w.setframerate(rate)
        w.writeframes(draw(st.binary(min_size=n, max_size=n)))
    data = buf.getvalue()
    return data[: draw(st.integers(12, len(data)))] if draw(st.booleans()) else data


NEAR_VALID = st.one_of(png_like(), corrupted_png(), wav_like(), real_wav())
TEXTY = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=300, max_size=5000),
    st.from_regex(r"-?[0-9eE.,+\- naNinf]{0,80}", fullmatch=True),  # near-valid CSV rows of numbers
    st.sampled_from(["", " ", "\x00", "nan,nan,nan,nan", "1e999,1,1,1", "../../../../etc/passwd", "/etc/passwd",
                     "\ufeff", "a" * 10000]),
)


@pytest.fixture(params=_names())
def plugin(request):
    return _task_and_meta(request.param)


def _fuzz(task, meta, strategy) -> None:
    """Every drawn input decodes or raises InputError within the time bound; then a real example still works."""

    @SETTINGS
    @given(raw=strategy)
    def run(raw):
        _check(task, meta, raw)

    run()
    _example_still_works(task, meta)


def test_random_bytes(plugin):
    _fuzz(*plugin, st.binary(max_size=4096))


def test_random_text(plugin):
    _fuzz(*plugin, TEXTY)


def test_near_valid_files(plugin):
    _fuzz(*plugin, NEAR_VALID)


def _example_still_works(task, meta) -> None:
    examples = task.examples(meta)
    assert examples, f"{task.name} offers no example inputs for its built-in sample"
    with time_bound(PER_EXAMPLE_S * 4):
        x = task.decode_input(examples[0].value, meta)
    assert isinstance(x, np.ndarray)
    batch = task.stack_inputs([x, x])
    assert len(batch) == 2
