"""Speech-commands plugin: the shared plugin suite plus audio decoding, data layouts and saliency."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from suite.errors import ConfigError, DataSourceError, InputError
from suite.testing import PluginTestSuite

RATE, CLIP = 16000, 16000


def _tone(freq=440.0, seconds=0.5, rate=RATE, amp=0.5, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _encode(data, rate, fmt="WAV", subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _empty_wav():
    return _encode(np.zeros(0, np.float32), RATE)


def _peak_hz(wave, rate=RATE):
    spec = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spec)])


class TestSpeechCommandsPlugin(PluginTestSuite):
    task_name = "speech_commands"
    overrides = {"epochs": 3, "width": 24, "depth": 3, "batch_size": 32, "learning_rate": 1e-2}
    bad_inputs = [b"", b"this is plain text, not audio", _empty_wav(), "a text string", b"RIFF\x00\x00WAVEjunk"]

    def test_saliency_is_a_heatmap_over_the_spectrogram(self, predictor):
        example = predictor.task.examples(predictor.meta)[0]
        exp = predictor.explain(example.value)
        assert exp.kind == "heatmap"
        image, heat = exp.data["image"], exp.data["heatmap"]
        fe = predictor.meta["frontend"]
        frames = 1 + (predictor.meta["clip_samples"] - fe["frame_length"]) // fe["frame_step"]
        assert heat.shape == (fe["n_mels"], frames)
        assert image.shape == (*heat.shape, 3) and image.dtype == np.uint8
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        assert np.isfinite(heat).all() and heat.std() > 0  # not a constant map

    def test_spectrogram_helper_for_the_app(self, predictor):
        x = predictor.decode(predictor.task.examples(predictor.meta)[0].value)
        out = predictor.task.spectrogram(x, predictor.meta)
        assert out["waveform"].shape == (CLIP,) and out["sample_rate"] == RATE
        spec = out["spectrogram"]
        assert spec.shape == (predictor.meta["frontend"]["n_mels"], len(out["frame_times"]))
        assert np.all(np.diff(out["mel_frequencies"]) > 0)

    def test_examples_come_with_expected_labels_and_model_learns_the_sample(self, predictor):
        examples = predictor.task.examples(predictor.meta)
        assert len(examples) >= 8 and all(e.expected in predictor.meta["class_names"] for e in examples)
        assert all(e.value[:4] == b"RIFF" for e in examples)
        acc = predictor.run.metrics["test"]["accuracy"]
        assert acc > 1.5 / len(predictor.meta["class_names"]), acc  # well above chance after 3 short epochs

    def test_sample_is_synthetic_commands_with_unknown_and_silence(self, task):
        from suite.data import parse_source

        bundle = task.load_data(parse_source("sample"), task.make_config(dict(self.overrides)))
        names = bundle.meta["class_names"]
        for word in ("yes", "no", "up", "down", "left", "right", "stop", "go", "_silence_", "_unknown_"):
            assert word in names
        assert bundle.synthetic and task.sample_synthetic
        x, _ = next(iter(bundle.test))
        assert x.shape == (CLIP,) and np.abs(np.asarray(x)).max() > 0.01


# ---- audio decoding --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    from suite.registry import get

    return get("speech_commands")


META = {"sample_rate": RATE, "clip_samples": CLIP}


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [("WAV", "PCM_U8", 8000), ("WAV", "PCM_16", 8000), ("WAV", "PCM_24", 44100), ("WAV", "PCM_32", 22050),
     ("WAV", "FLOAT", 44100), ("WAV", "DOUBLE", 16000), ("FLAC", "PCM_16", 44100), ("FLAC", "PCM_24", 8000),
     ("FLAC", "PCM_S8", 16000), ("OGG", "VORBIS", 44100)],
)
def test_every_format_bit_depth_and_rate_decodes_to_the_clip(task, fmt, subtype, rate):
    raw = _encode(_tone(440.0, 0.5, rate), rate, fmt, subtype)
    x = task.decode_input(raw, META)
    assert x.shape == (CLIP,) and x.dtype == np.float32
    assert abs(_peak_hz(x) - 440.0) < 5.0  # resampled, not just relabelled
    assert 0.4 < np.abs(x).max() < 0.6  # amplitude preserved through the bit depth
    assert np.abs(x[:2000]).max() < 1e-3  # half a second centred in one second: padded both sides


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_is_mixed_to_mono(task, channels):
    data = _tone(1000.0, 1.0, 44100, channels=channels)
    data[:, 1:] = 0.0  # only the first channel speaks: the mix is its mean
    x = task.decode_input(_encode(data, 44100, "WAV", "PCM_16"), META)
    assert x.shape == (CLIP,)
    assert np.abs(x).max() == pytest.approx(0.5 / channels, rel=0.05)


def test_long_clip_keeps_its_loudest_second(task):
    wave = np.zeros(3 * RATE, np.float32)
    wave[2 * RATE : 2 * RATE + RATE // 2] = _tone(300.0, 0.5)
    x = task.decode_input(_encode(wave, RATE), META)
    assert np.abs(x).max() > 0.45 and abs(_peak_hz(x) - 300.0) < 5.0


def test_float_file_over_full_scale_is_normalised_and_nan_refused(task):
    x = task.decode_input(_encode(_tone(amp=4.0), RATE, "WAV", "FLOAT"), META)
    assert np.abs(x).max() == pytest.approx(1.0, rel=1e-3)
    bad = _tone()
    bad[100] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        task.decode_input(_encode(bad, RATE, "WAV", "FLOAT"), META)


@pytest.mark.parametrize("raw", [b"", b"\x00" * 100, b"GIF89a not audio", _empty_wav()])
def test_non_audio_and_empty_files_raise_one_line(task, raw):
    with pytest.raises(InputError) as err:
        task.decode_input(raw, META)
    assert "\n" not in str(err.value)


def test_header_claiming_hours_is_refused_before_reading(task, monkeypatch):
    raw = bytearray(_encode(np.zeros(8000, np.float32), 8000, "FLAC", "PCM_16"))
    total = int.from_bytes(raw[18:26], "big")  # STREAMINFO: the low 36 bits are the total sample count
    raw[18:26] = ((total & ~((1 << 36) - 1)) | ((1 << 36) - 1)).to_bytes(8, "big")
    assert sf.info(io.BytesIO(bytes(raw))).duration > 3600  # the header really claims thousands of hours
    calls = []
    monkeypatch.setattr(sf, "read", lambda *a, **k: calls.append(k) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(InputError, match="hours"):
        task.decode_input(bytes(raw), META)
    assert calls == []  # refused on the header alone


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_long_file_is_capped_to_the_first_30_seconds(task, monkeypatch, fmt):
    """Only the first 30 s are read (libsndfile is asked for that many frames): a word after them is unheard."""
    from suite_plugins.speech_commands import audio

    wave = np.zeros(40 * 8000, np.float32) + 0.01
    wave[35 * 8000 : 35 * 8000 + 4000] = _tone(300.0, 0.5, 8000)
    raw = _encode(wave, 8000, fmt)
    frames = []
    real_read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: frames.append(k["frames"]) or real_read(self, *a, **k))
    x = task.decode_input(raw, META)
    assert x.shape == (CLIP,) and np.abs(x).max() < 0.02  # the tone at 35 s was never read
    assert frames == [int(audio.MAX_READ_SECONDS * 8000)]


def test_kept_resampler_gives_soxr_one_shot_samples_clip_after_clip_and_across_threads():
    import threading

    import soxr

    from suite_plugins.speech_commands import audio

    rng = np.random.default_rng(2)
    cases = [(8000, 16000, 2384), (44100, 16000, 44100), (22050, 16000, 5), (8000, 16000, 7000), (48000, 16000, 1)]
    clips = [(rate, target, rng.uniform(-1, 1, n).astype(np.float32)) for rate, target, n in cases * 2]
    expected = [soxr.resample(w, rate, target, quality="HQ").astype(np.float32) for rate, target, w in clips]
    failures = []

    def check():
        for (rate, target, w), want in zip(clips, expected, strict=True):
            got = audio.resample(w, rate, target)
            if got.shape != want.shape or not np.array_equal(got, want):
                failures.append((rate, target, len(w)))

    threads = [threading.Thread(target=check) for _ in range(3)]
    for t in threads:
        t.start()
    check()
    for t in threads:
        t.join()
    assert failures == []


# ---- data sources ----------------------------------------------------------------------------------------------
def _write(path, freq, seconds=0.6, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(freq, seconds, rate), rate, subtype="PCM_16")


@pytest.fixture()
def commands_folder(tmp_path):
    root = tmp_path / "sc"
    for w, f in (("yes", 300), ("no", 600), ("bed", 900)):
        for i in range(10):
            _write(root / w / f"spk{i}_nohash_0.wav", f + 10 * i)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white.wav",
             np.random.default_rng(0).uniform(-0.3, 0.3, 3 * RATE).astype(np.float32), RATE)
    (root / "validation_list.txt").write_text("yes/spk0_nohash_0.wav\nno/spk0_nohash_0.wav\nbed/spk0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/spk1_nohash_0.wav\nyes/spk2_nohash_0.wav\nno/spk1_nohash_0.wav\n"
                                           "no/spk2_nohash_0.wav\nbed/spk1_nohash_0.wav\n")
    return root


def test_folder_layout_honours_lists_and_adds_unknown_and_silence(task, commands_folder):
    from suite.data import parse_source

    cfg = task.make_config({"words": "yes,no", "unknown_fraction": 0.5, "silence_fraction": 0.5,
                            "synthetic_voices": 0})
    b = task.load_data(parse_source(str(commands_folder)), cfg)
    assert b.meta["class_names"] == ["no", "yes", "_silence_", "_unknown_"]
    counts = b.meta["class_counts"]
    assert counts["test"] == [2, 2, 2, 1]  # 2+2 listed test files, silence = 0.5 * 4, the one listed "bed"
    assert counts["val"] == [1, 1, 1, 1]
    assert counts["train"] == [7, 7, 7, 7]  # the 8 unlisted "bed" files subsampled to 0.5 * 14
    assert b.counts == {"train": 28, "val": 4, "test": 7}
    tested = {e["path"].split("/sc/")[1] for e in b.meta["examples"]}
    assert tested <= {"yes/spk1_nohash_0.wav", "no/spk1_nohash_0.wav", "yes/spk2_nohash_0.wav",
                      "no/spk2_nohash_0.wav", "bed/spk1_nohash_0.wav"}
    assert b.meta["noise"].endswith("_background_noise_")
    waves = [np.asarray(x) for x, _ in b.test]
    assert all(w.shape == (CLIP,) for w in waves)
    labels = [int(y) for _, y in b.test]
    silences = [w for w, y in zip(waves, labels, strict=True) if y == 2]
    assert silences and all(np.abs(w).max() < 0.3 for w in silences)


def test_folder_without_lists_gets_a_seeded_split_and_unknown_word_errors(task, commands_folder):
    from suite.data import parse_source

    (commands_folder / "validation_list.txt").unlink()
    (commands_folder / "testing_list.txt").unlink()
    b = task.load_data(parse_source(str(commands_folder)), task.make_config({"val_fraction": 0.2, "test_fraction": 0.2,
                                                                                     "synthetic_voices": 0}))
    assert b.meta["class_names"] == ["bed", "no", "yes", "_silence_"]
    assert b.counts["test"] >= 6 and b.counts["val"] >= 6
    with pytest.raises(DataSourceError, match="maybe"):
        task.load_data(parse_source(str(commands_folder)), task.make_config({"words": "yes,maybe"}))


def test_csv_manifest_with_and_without_split(task, tmp_path):
    from suite.data import parse_source

    rows = ["path,label,split"]
    for i in range(12):
        for label, f in (("up", 400), ("down", 800)):
            _write(tmp_path / "clips" / f"{label}{i}.flac", f + i, rate=22050)
            rows.append(f"clips/{label}{i}.flac,{label},{'test' if i < 2 else 'val' if i < 4 else 'train'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    plain = task.make_config({"synthetic_voices": 0})  # layout only: no synthetic voices in the counts
    b = task.load_data(parse_source(str(tmp_path / "m.csv")), plain)
    assert b.meta["class_names"] == ["down", "up"] and b.counts == {"train": 16, "val": 4, "test": 4}
    x, y = next(iter(b.test))
    assert x.shape == (CLIP,) and abs(_peak_hz(np.asarray(x)) - (800 if int(y) == 0 else 400)) < 10
    (tmp_path / "n.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows[1:]) + "\n")  # no header, no split
    b = task.load_data(parse_source(str(tmp_path / "n.csv")), plain)
    assert sum(b.counts.values()) == 24 and b.counts["test"] >= 2
    (tmp_path / "bad.csv").write_text("clips/missing.wav,up\nclips/up0.flac,down\n")
    with pytest.raises(DataSourceError, match="not found"):
        task.load_data(parse_source(str(tmp_path / "bad.csv")), plain)


def test_tfds_offline_is_one_clear_line(task, monkeypatch):
    from suite.data import parse_source

    monkeypatch.setenv("SUITE_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", "/nonexistent-tfds-dir")
    with pytest.raises(DataSourceError) as err:
        task.load_data(parse_source("tfds:speech_commands"), task.make_config())
    assert "\n" not in str(err.value) and "speech_commands" in str(err.value)


# ---- model pieces ------------------------------------------------------------------------------------------
def test_mfcc_model_builds_reloads_and_augmentation_is_training_only(task, tmp_path):
    import keras

    from suite.data import DataBundle

    cfg = task.make_config({"features": "mfcc", "n_mfcc": 13, "width": 8, "depth": 2})
    meta = {"class_names": ["a", "b", "c"], "sample_rate": RATE, "clip_samples": CLIP, "frontend": cfg.frontend()}
    model = task.build_model(cfg, DataBundle(None, None, None, meta))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, CLIP)).astype(np.float32)
    assert model.get_layer("log_mel").compute_output_shape((None, CLIP)) == (None, 98, 13)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    aug = model.get_layer("spec_augment")
    feats = np.ones((2, 98, 13), np.float32)
    assert np.array_equal(aug(feats, training=False), feats) and not np.array_equal(aug(feats, training=True), feats)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(again(x), model(x), rtol=1e-5, atol=1e-6)


def _stft_log_mel(wave, fft_length, fmax, frame=400, step=160):
    import tensorflow as tf

    bins = fft_length // 2 + 1
    power = tf.abs(tf.signal.stft(wave, frame, step, fft_length=fft_length)) ** 2
    return np.log(np.asarray(power @ tf.signal.linear_to_mel_weight_matrix(40, bins, RATE, 20.0, fmax)) + 1e-6)


def test_log_mel_matches_tf_signal(task):
    from suite_plugins.speech_commands.layers import LogMelSpectrogram

    wave = np.random.default_rng(1).uniform(-0.5, 0.5, (1, CLIP)).astype(np.float32)
    layer = LogMelSpectrogram()
    assert (layer.stft, layer.fft_length) == ("rfft", 512)  # the next power of two above the 400-sample frame
    np.testing.assert_allclose(np.asarray(layer(wave)), _stft_log_mel(wave, 512, 7600.0), atol=2e-3)
    dft = LogMelSpectrogram(stft="dft")  # the earlier front end: fft_length = frame_length
    np.testing.assert_allclose(np.asarray(dft(wave)), _stft_log_mel(wave, 400, 7600.0), atol=2e-3)
    with pytest.raises(ValueError, match="power of two"):
        LogMelSpectrogram(fft_length=300)


def test_model_saved_before_the_stft_key_reloads_with_its_dft_front_end(tmp_path):
    """A .keras file whose LogMelSpectrogram config has no ``stft``/``fft_length`` keys (older runs)."""
    import json
    import zipfile

    import keras

    from suite_plugins.speech_commands.layers import LogMelSpectrogram

    inp = keras.Input((CLIP,))
    model = keras.Model(inp, LogMelSpectrogram(stft="dft", fmax=4000.0, name="log_mel")(inp))
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                text = data.decode()
                assert '"stft": "dft"' in text
                cfg = json.loads(text)
                for layer in cfg["config"]["layers"]:
                    for key in ("stft", "fft_length"):
                        layer["config"].pop(key, None)
                data = json.dumps(cfg).encode()
            dst.writestr(item, data)
    old = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True, compile=False)
    assert old.get_layer("log_mel").stft == "dft" and old.get_layer("log_mel").fft_length == 400
    wave = np.random.default_rng(4).uniform(-0.5, 0.5, (2, CLIP)).astype(np.float32)
    np.testing.assert_allclose(old(wave), model(wave), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(old(wave), _stft_log_mel(wave, 400, 4000.0), atol=2e-3)


def test_rfft_front_end_stores_no_kernel_and_converts_to_builtin_tflite(tmp_path):
    """No stored DFT kernel: the front end's TFLite is builtins only (RFFT2D), and dynamic-range quantization
    leaves it exactly as in float (there is no weight matrix in it to quantize)."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from suite_plugins.speech_commands.layers import LogMelSpectrogram

    layer = LogMelSpectrogram(fmax=4000.0)
    stored = layer._window.size + layer._band_index.size + layer._band_weight.size
    assert layer._kernel is None and stored < 1600  # vs 400 x 2 x 101 = 80,800 floats for the DFT kernel
    inp = keras.Input((CLIP,), name="waveform")
    model = keras.Model(inp, layer(inp))
    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, CLIP], tf.float32)])
    wave = np.random.default_rng(5).uniform(-0.5, 0.5, (1, CLIP)).astype(np.float32)
    outputs = {}
    for mode in ("none", "dynamic"):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on any Flex op
        if mode == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        content = conv.convert()
        assert len(content) < 20_000, len(content)
        interp = Interpreter(model_content=content)
        assert "RFFT2D" in {op["op_name"] for op in interp._get_ops_details()}
        run = interp.get_signature_runner()
        outputs[mode] = next(iter(run(x=wave).values()))
    np.testing.assert_allclose(outputs["none"], np.asarray(model(wave)), atol=1e-3)
    np.testing.assert_allclose(outputs["dynamic"], outputs["none"], atol=1e-5)


def test_espeak_synthesises_offline_and_the_sample_is_reproducible(tmp_path):
    from suite_plugins.speech_commands.sample import synthesize, write_sample_fresh

    a = synthesize("yes", "en-us+m1", 170, 50)
    assert 0.1 * RATE < len(a) < RATE and np.abs(a).max() > 0.1
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_sample_fresh(tmp_path / name, voices=2, words=("yes", "no"))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert len(files) == 2 * 2 * 4 + 4  # words x voices x (rate, pitch) + generated noises
    for rel in files:  # byte-identical: the cached sample is the same on every machine
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_log_mel_at_telephone_band_keeps_only_bins_below_fmax(task):
    from suite_plugins.speech_commands.layers import LogMelSpectrogram

    layer = LogMelSpectrogram(fmax=4000.0)
    assert layer.n_bins < 257 // 2 + 3  # the upper half of the spectrum is dropped before the mel band
    assert int(layer._band_index.max()) < layer.n_bins and layer._band_index.shape[0] == 40
    wave = np.random.default_rng(2).uniform(-0.5, 0.5, (1, CLIP)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(wave)), _stft_log_mel(wave, 512, 4000.0), atol=2e-3)


def test_peak_normalised_features_ignore_the_recording_level():
    from suite_plugins.speech_commands.layers import LogMelSpectrogram

    t = np.arange(CLIP) / RATE
    word = (np.sin(2 * np.pi * 300 * t) * (np.abs(t - 0.5) < 0.2)).astype(np.float32)  # a tone, zero-padded
    quiet, loud = 0.03 * word[None], 0.9 * word[None]
    plain, peak = LogMelSpectrogram(), LogMelSpectrogram(peak_normalize=True)
    np.testing.assert_allclose(np.asarray(peak(quiet)), np.asarray(peak(loud)), atol=2e-3)
    assert np.abs(np.asarray(plain(quiet)) - np.asarray(plain(loud))).max() > 1.0  # the fixed floor sees the level


def test_banded_mel_is_the_dense_filterbank():
    from suite_plugins.speech_commands.layers import mel_band, mel_matrix

    for rate, fft, fmax in ((16000, 512, 4000.0), (16000, 512, 8000.0), (8000, 256, 4000.0), (16000, 400, 7600.0)):
        dense = mel_matrix(40, fft // 2 + 1, rate, 20.0, fmax)
        index, weight = mel_band(dense)
        rebuilt = np.zeros_like(dense)
        for j in range(dense.shape[1]):
            np.add.at(rebuilt[:, j], index[j], weight[j])
        np.testing.assert_array_equal(rebuilt, dense)
        assert index.shape[1] < dense.shape[0] // 4  # a band, not the whole spectrum


def test_speed_perturbation_shifts_pitch_about_the_centre():
    import tensorflow as tf

    from suite_plugins.speech_commands.task import _resample_about_centre

    t = np.arange(CLIP) / RATE
    wave = (np.sin(2 * np.pi * 440 * t) * np.hanning(CLIP)).astype(np.float32)
    freqs = np.fft.rfftfreq(CLIP, 1 / RATE)
    for rate in (0.9, 1.0, 1.1):
        out = np.asarray(_resample_about_centre(tf.constant(wave), tf.constant(rate), CLIP))
        assert out.shape == (CLIP,) and abs(freqs[np.argmax(np.abs(np.fft.rfft(out)))] - 440 * rate) <= 2
        assert abs(int(np.argmax(np.abs(out))) - CLIP // 2) < 0.02 * CLIP  # the word stays centred
    assert np.array_equal(np.asarray(_resample_about_centre(tf.constant(wave), tf.constant(1.0), CLIP)), wave)


def test_band_variance_normalisation_gives_every_band_unit_variance():
    from suite_plugins.speech_commands.layers import PerExampleNormalization

    x = np.random.default_rng(3).normal(size=(2, 50, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    per_band = np.asarray(PerExampleNormalization(per_band=True)(x))
    np.testing.assert_allclose(per_band.std(axis=1), 1.0, atol=5e-3)  # epsilon 1e-3
    global_ = np.asarray(PerExampleNormalization()(x))
    assert global_.std(axis=1)[:, -1].mean() > 2 * global_.std(axis=1)[:, 0].mean()  # one scale per clip


def test_time_stretch_is_log_uniform_both_ways_and_training_only():
    """A word twice as long must be as likely as one half as long: duration differs most between speakers."""
    from suite_plugins.speech_commands.layers import RandomStretch

    frames, bins, width = 101, 4, 20
    x = np.zeros((400, frames, bins), np.float32)
    x[:, 50 - width // 2 : 50 + width // 2, :] = 1.0  # a 20-frame "word" in the middle
    layer = RandomStretch(time_stretch=1.0, freq_warp=0.0, seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    ratio = (out[:, :, 0] > 0.5).sum(axis=1) / width  # stretched length of the word
    assert ratio.min() >= 0.45 and ratio.max() <= 2.1  # scales within [1/2, 2]
    assert (ratio > 1.5).mean() > 0.15 and (ratio < 1 / 1.5).mean() > 0.15  # both ways, often
    assert abs(np.median(np.log(ratio))) < 0.15  # symmetric in log scale


def test_synthetic_voices_join_the_training_split_only_and_are_cached(task, commands_folder, tmp_path, monkeypatch):
    """Each word class gets N espeak-ng renditions in train; "_silence_"/"_unknown_", val and test get none."""
    from suite.data import parse_source

    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path / "cache"))
    base = {"words": "yes,no", "unknown_fraction": 0.5, "silence_fraction": 0.5}
    plain = task.load_data(parse_source(str(commands_folder)), task.make_config({**base, "synthetic_voices": 0}))
    cfg = task.make_config({**base, "synthetic_voices": 3})
    b = task.load_data(parse_source(str(commands_folder)), cfg)
    assert b.meta["synthetic_train_examples"] == 6
    assert b.meta["class_counts"]["train"] == [n + 3 * (i < 2) for i, n in enumerate(plain.meta["class_counts"]["train"])]
    assert b.counts["val"] == plain.counts["val"] and b.counts["test"] == plain.counts["test"]
    files = sorted((tmp_path / "cache").rglob("*.wav"))
    assert len(files) == 6
    waves = [sf.read(p)[0] for p in files]
    assert all(0.1 * RATE < len(w) < RATE and np.abs(w).max() > 0.05 for w in waves)
    assert len({w.tobytes() for w in waves}) == 6  # six different voices, not one clip copied
    stamps = [p.stat().st_mtime_ns for p in files]
    task.load_data(parse_source(str(commands_folder)), cfg)  # a second load reuses the cached clips
    assert [p.stat().st_mtime_ns for p in files] == stamps
    with pytest.raises(ConfigError, match="synthetic_voices"):
        task.make_config({"synthetic_voices": -1})


def test_synthetic_voices_failure_is_one_line_naming_the_way_out(monkeypatch, tmp_path):
    import subprocess

    from suite_plugins.speech_commands import sample

    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "no espeak\n"))
    with pytest.raises(DataSourceError) as err:
        sample.voice_clips(["yes"], 2, RATE)
    assert "synthetic_voices=0" in str(err.value) and "\n" not in str(err.value)


def test_what_happens_to_a_clip_is_said_in_one_line(task):
    """A 5 s stereo recording at 44.1 kHz: mixed, resampled and cropped, all said; a clip already as the
    model hears it needs no note; a short one says it was padded."""
    long_stereo = io.BytesIO()
    sf.write(long_stereo, np.zeros((5 * 44100, 2), np.float32), 44100, format="WAV")
    (note,) = task.input_notes(long_stereo.getvalue(), META)
    assert note.startswith("The 5.00 s clip was mixed from 2 channels to mono, resampled from 44100 Hz to 16000 Hz,")
    assert "cropped to its loudest 1 s" in note
    exact, short = io.BytesIO(), io.BytesIO()
    sf.write(exact, np.zeros(CLIP, np.float32), RATE, format="WAV")
    sf.write(short, np.zeros(CLIP // 4, np.float32), RATE, format="WAV")
    assert task.input_notes(exact.getvalue(), META) == []
    assert task.input_notes(short.getvalue(), META) == [
        "The 0.25 s clip was padded with silence to 1 s (the model hears 1 s at 16000 Hz)."]
