"""Export: every format and quantization of tiny image/text/audio-like models, verified against Keras.

The tiny tasks below are ClassificationTask subclasses registered into a test Registry; their runs are made
by hand (a few epochs of ``fit``) so the file stays well inside its time budget.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from suite import atomic
from suite.config import TaskConfig
from suite.data import DataBundle
from suite.errors import ExportError
from suite.registry import Registry, set_registry
from suite.task import ClassificationTask

N_CLASSES = 3


def _split(x, y):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    parts = np.split(order, [int(len(y) * 0.7), int(len(y) * 0.8)])
    return [tf.data.Dataset.from_tensor_slices((x[p], y[p])) for p in parts]


class _Tiny(ClassificationTask):
    description = "tiny test task"
    config_class = TaskConfig

    def make_xy(self):
        raise NotImplementedError

    def load_data(self, source, config):
        x, y = self.make_xy()
        train, val, test = _split(x, y)
        return DataBundle(train, val, test, {"class_names": ["left", "middle", "right"]},
                          counts={"train": int(len(y) * 0.7)})

    def decode_input(self, raw, meta):
        return raw


class TinyImage(_Tiny):
    """8x8 uint8 pixels; the class is where the bright column band is."""

    name, title, input_kind = "tiny_image", "Tiny image", "image"

    def make_xy(self):
        rng = np.random.default_rng(1)
        y = np.arange(240) % N_CLASSES
        x = rng.integers(0, 60, size=(240, 8, 8, 1))
        for i, c in enumerate(y):
            x[i, :, c * 3 : c * 3 + 2, 0] += 180
        return x.astype(np.uint8), y

    def build_inputs(self, config, meta):
        import keras

        return keras.Input(shape=(8, 8, 1), dtype="uint8", name="pixels")

    def build_preprocessor(self, config, data):
        import keras

        return keras.layers.Rescaling(1 / 255.0, name="rescale")

    def build_backbone(self, config, meta):
        import keras

        return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(96, activation="relu"),
                                 keras.layers.Dense(48, activation="relu")], name="mlp")


class TinyAudio(_Tiny):
    """A 256-sample float waveform; the class is its dominant frequency band."""

    name, title, input_kind = "tiny_audio", "Tiny audio", "audio"

    def make_xy(self):
        rng = np.random.default_rng(2)
        y = np.arange(180) % N_CLASSES
        t = np.arange(256) / 256.0
        x = np.stack([np.sin(2 * np.pi * (4 + 24 * c) * t + rng.uniform(0, 6)) for c in y])
        return (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32), y

    def build_inputs(self, config, meta):
        import keras

        return keras.Input(shape=(256,), dtype="float32", name="waveform")

    def build_backbone(self, config, meta):
        import keras

        return keras.Sequential([keras.layers.Reshape((256, 1)), keras.layers.Conv1D(8, 9, strides=2, activation="relu"),
                                 keras.layers.GlobalMaxPooling1D()], name="conv")


class TinyText(_Tiny):
    """Short strings; the class is the keyword they contain. String ops live inside the model."""

    name, title, input_kind = "tiny_text", "Tiny text", "text"
    WORDS = ("alpha", "bravo", "charlie")

    def make_xy(self):
        rng = np.random.default_rng(3)
        y = np.arange(150) % N_CLASSES
        fill = ["the", "a", "movie", "was", "quite", "so"]
        x = np.array([" ".join([*rng.choice(fill, 3), self.WORDS[c], *rng.choice(fill, 2)]) for c in y])
        return x, y

    def build_inputs(self, config, meta):
        import keras

        return keras.Input(shape=(), dtype="string", name="text")

    def build_preprocessor(self, config, data):
        import keras

        vec = keras.layers.TextVectorization(max_tokens=32, output_sequence_length=8, name="vectorize")
        vec.adapt(data.train.map(lambda x, y: x).batch(64))
        return vec

    def build_backbone(self, config, meta):
        import keras

        return keras.Sequential([keras.layers.Embedding(32, 8), keras.layers.GlobalAveragePooling1D()], name="bag")


class TinyLimited(TinyAudio):
    """Declares that TFLite cannot carry it, as an autoregressive decoder would."""

    name, title = "tiny_limited", "Tiny limited"

    def export_limits(self):
        return {"tflite": "the decoding loop is a Python while-loop"}


TASKS = [TinyImage(), TinyAudio(), TinyText(), TinyLimited()]


def make_run(task, name: str, *, epochs: int = 8, status: str = "completed", save_model: bool = True):
    """A finished run folder made by hand: config, meta, a briefly fitted model.keras, status."""
    import keras

    from suite.data import parse_source
    from suite.runstore import RunStore

    config = task.make_config({})
    bundle = task.load_data(parse_source("sample"), config)
    run = RunStore().create(name, task.name, data="sample")
    atomic.write_yaml(run.file("config.yaml"), config.to_dict())
    atomic.write_json(run.file("meta.json"), bundle.meta)
    atomic.write_text(run.file("README.md"), f"# {task.title}: run `{name}`\n")
    if save_model:
        keras.utils.set_random_seed(0)
        model = task.build_model(config, bundle)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        model.fit(bundle.train.batch(32), epochs=epochs, verbose=0)
        model.save(run.model_path)
    run.update_info(status=status, error="loss became NaN" if status == "diverged" else None)
    return run


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    old_home = os.environ.get("SUITE_HOME")
    os.environ["SUITE_HOME"] = str(tmp_path_factory.mktemp("export-runs"))
    import suite.registry

    previous = suite.registry._default  # restored as it was, without loading every installed plugin
    reg = Registry()
    for task in TASKS:
        assert reg.register(task) is task, reg.failures
    set_registry(reg)
    yield reg
    set_registry(previous)
    if old_home is None:
        os.environ.pop("SUITE_HOME", None)
    else:
        os.environ["SUITE_HOME"] = old_home


@pytest.fixture(scope="module")
def image_run(registry):
    return make_run(TASKS[0], "image")


@pytest.fixture(scope="module")
def image_reports(image_run):
    from suite.export import export_run

    lines = []
    reports = export_run(image_run, formats="all", quantize="none", examples=40, progress=lines.append)
    assert any("verifying" in line for line in lines)
    return reports


# ---- every format, float -------------------------------------------------------------------------
def test_all_formats_are_written_and_verified(image_run, image_reports):
    assert list(image_reports) == ["keras", "saved_model", "tflite", "onnx"]
    for fmt, rep in image_reports.items():
        assert rep["supported"], (fmt, rep.get("reason"))
        folder = image_run.exports_dir / fmt
        assert rep["path"].startswith(str(folder))
        assert rep["size_bytes"] > 1000
        for name in ("labels.txt", "README.md", "report.json", "meta.json"):
            assert (folder / name).is_file(), (fmt, name)
        assert (folder / "labels.txt").read_text().split() == ["left", "middle", "right"]
        assert json.loads((folder / "report.json").read_text())["verification"] == json.loads(
            json.dumps(rep["verification"]))
        ver = rep["verification"]
        assert ver["examples"] == 40 and ver["split"] == "test"
        assert ver["top1_agreement"] >= 0.95, (fmt, ver)
        assert 0 <= ver["max_abs_diff"] < 1e-3, (fmt, ver)
        assert ver["metric_name"] == "accuracy"
        assert abs(ver["metric"] - ver["keras_metric"]) <= 0.05, (fmt, ver)
        assert ver["keras_metric"] > 0.6, "the tiny model should have learned its easy task"
        assert ver["latency_ms_p50"] > 0
    # nothing temporary is left beside the exports
    assert not [p for p in image_run.exports_dir.iterdir() if p.name.startswith(".")]


def test_keras_reloads_in_fresh_process_with_safe_mode(image_reports):
    ver = image_reports["keras"]["verification"]
    assert ver["fresh_process_safe_mode_reload"] is True
    assert ver["max_abs_diff"] < 1e-5


def test_saved_model_serves_raw_pixels_to_probabilities_and_labels(image_run, image_reports):
    import tensorflow as tf

    loaded = tf.saved_model.load(image_reports["saved_model"]["path"])
    fn = loaded.signatures["serving_default"]
    x = np.zeros((2, 8, 8, 1), np.uint8)
    x[0, :, 6:8, 0] = 250  # the "right" band
    out = fn(pixels=tf.constant(x))
    assert set(out) >= {"probabilities", "label", "score"}
    probs = out["probabilities"].numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels = [s.decode() for s in out["label"].numpy()]
    assert labels[0] == ["left", "middle", "right"][int(probs[0].argmax())]
    np.testing.assert_allclose(out["score"].numpy(), probs.max(axis=1), atol=1e-6)


# ---- quantization ------------------------------------------------------------------------------
def test_tflite_quantizations_shrink_and_stay_close(image_run, image_reports):
    from suite.export import export_run

    float_size = image_reports["tflite"]["size_bytes"]
    sizes = {}
    for mode in ("float16", "dynamic", "int8"):
        rep = export_run(image_run, formats="tflite", quantize=mode, examples=40)["tflite"]
        assert rep["supported"], rep.get("reason")
        assert rep["quantize"] == mode
        ver = rep["verification"]
        sizes[mode] = rep["size_bytes"]
        floor = 0.95 if mode == "float16" else 0.85
        assert ver["top1_agreement"] >= floor, (mode, ver)
        assert ver["max_abs_diff"] < (0.01 if mode == "float16" else 0.25), (mode, ver)
        assert abs(ver["metric"] - ver["keras_metric"]) <= 0.1, (mode, ver)
        saved = json.loads((image_run.exports_dir / "tflite" / "report.json").read_text())
        assert saved["quantize"] == mode
    assert sizes["int8"] < 0.5 * float_size, (sizes, float_size)
    assert sizes["dynamic"] < 0.5 * float_size
    assert sizes["float16"] < 0.75 * float_size
    int8_notes = " ".join(rep["notes"])
    assert "calibrated on training examples" in int8_notes


def test_quantize_is_reported_as_float_for_other_formats(image_run):
    from suite.export import export_run

    rep = export_run(image_run, formats="onnx", quantize="dynamic", examples=10)["onnx"]
    assert rep["quantize"] == "none"
    assert any("tflite only" in n for n in rep["notes"])


# ---- other input kinds -------------------------------------------------------------------------
def test_audio_like_model_exports_to_tflite_and_onnx(registry):
    from suite.export import export_run

    run = make_run(TASKS[1], "audio")
    reports = export_run(run, formats="tflite,onnx", examples=30)
    assert list(reports) == ["tflite", "onnx"]
    for fmt, rep in reports.items():
        assert rep["supported"], (fmt, rep.get("reason"))
        assert rep["verification"]["top1_agreement"] >= 0.95
        assert rep["verification"]["max_abs_diff"] < 1e-3


def test_string_input_model_serves_strings_and_names_limits(registry):
    import tensorflow as tf

    from suite.export import export_run

    run = make_run(TASKS[2], "text")
    reports = export_run(run, formats="saved_model,tflite,onnx", examples=20)
    sm = reports["saved_model"]
    assert sm["supported"], sm.get("reason")
    assert sm["verification"]["top1_agreement"] == 1.0
    fn = tf.saved_model.load(sm["path"]).signatures["serving_default"]
    out = fn(text=tf.constant(["so the charlie movie"]))
    assert out["label"].numpy()[0].decode() in ("left", "middle", "right")
    for fmt in ("tflite", "onnx"):
        rep = reports[fmt]
        if rep["supported"]:
            assert rep["verification"]["top1_agreement"] >= 0.95
        else:  # string ops: one line that names the format that can carry it
            assert "\n" not in rep["reason"] and "use saved_model" in rep["reason"], rep["reason"]
            assert not (run.exports_dir / fmt).exists()


def test_export_limits_are_reported_with_the_format_that_can(registry):
    from suite.export import export_run

    run = make_run(TASKS[3], "limited", epochs=1)
    rep = export_run(run, formats="tflite", examples=5)["tflite"]
    assert rep["supported"] is False
    assert rep["reason"] == "the decoding loop is a Python while-loop; use saved_model"


# ---- bad input ---------------------------------------------------------------------------------
def test_unknown_format_and_quantization(image_run):
    from suite.export import export_run, parse_formats

    with pytest.raises(ExportError, match="unknown export format 'gguf'"):
        export_run(image_run, formats="tflite,gguf")
    with pytest.raises(ExportError, match="unknown quantization"):
        export_run(image_run, formats="tflite", quantize="int4")
    assert parse_formats("onnx, keras") == ["keras", "onnx"]
    assert parse_formats("all") == ["keras", "saved_model", "tflite", "onnx"]


def test_run_without_model_diverged_run_and_missing_run(registry):
    from suite.export import export_run

    empty = make_run(TASKS[1], "nomodel", save_model=False)
    with pytest.raises(ExportError, match="has no model.keras"):
        export_run(empty, formats="tflite")
    diverged = make_run(TASKS[1], "diverged", epochs=1, status="diverged")
    with pytest.raises(ExportError, match="diverged") as err:
        export_run(diverged, formats="tflite")
    assert "\n" not in str(err.value)
    with pytest.raises(ExportError, match="no run named"):
        export_run("no-such-run", formats="tflite")
    for run in (empty, diverged):
        assert not run.exports_dir.exists() or not any(run.exports_dir.iterdir())


def test_non_finite_model_is_refused(registry):
    from suite.export import export_run

    run = make_run(TASKS[1], "nan", epochs=1)
    import keras

    model = keras.saving.load_model(run.model_path, safe_mode=True, compile=False)
    model.get_layer("logits").kernel.assign(np.full(model.get_layer("logits").kernel.shape, np.nan, np.float32))
    model.save(run.model_path)
    with pytest.raises(ExportError, match="not finite"):
        export_run(run, formats="onnx")
    assert not (run.exports_dir / "onnx").exists()


def test_read_only_output_folder(image_run, monkeypatch):
    import tempfile

    from suite.export import export_run

    exports = image_run.exports_dir
    exports.mkdir(parents=True, exist_ok=True)  # exists only if an earlier test exported: run alone, it may not
    before = sorted(p.name for p in exports.iterdir())
    os.chmod(exports, 0o555)
    try:
        if os.geteuid() == 0:  # root ignores permission bits: make creating the temp folder fail as it would
            def denied(*a, **k):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkdtemp", denied)
        with pytest.raises(ExportError, match="cannot write exports to .*Permission denied") as err:
            export_run(image_run, formats="tflite")
        assert "\n" not in str(err.value)
    finally:
        os.chmod(exports, 0o755)
    assert sorted(p.name for p in exports.iterdir()) == before


# ---- atomicity ---------------------------------------------------------------------------------
def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_failure_mid_export_keeps_the_previous_export(image_run, image_reports, monkeypatch):
    import suite.export as export_mod
    from suite.export import export_run

    target = image_run.exports_dir / "onnx"
    before = _snapshot(target)

    def disk_full(*a, **k):  # fails after the artifact is written and verified, before the swap
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "_write_side_files", disk_full)
    with pytest.raises(ExportError, match="No space left on device"):
        export_run(image_run, formats="onnx", examples=5)
    assert _snapshot(target) == before
    assert not [p for p in image_run.exports_dir.iterdir() if p.name.startswith(".")]


def test_converter_crash_is_one_line_and_keeps_the_previous_export(image_run, image_reports, monkeypatch):
    import suite.export as export_mod
    from suite.export import export_run

    target = image_run.exports_dir / "onnx"
    before = _snapshot(target)

    def broken(*a, **k):  # a converter that blows up halfway
        raise RuntimeError("converter crashed\nwith a long trace")

    monkeypatch.setitem(export_mod.BUILDERS, "onnx", broken)
    rep = export_run(image_run, formats="onnx", examples=5)["onnx"]
    assert rep["supported"] is False
    assert rep["reason"] == "onnx conversion failed: RuntimeError: converter crashed; use saved_model"
    assert _snapshot(target) == before
    assert not [p for p in image_run.exports_dir.iterdir() if p.name.startswith(".")]


def test_reexport_replaces_the_folder_whole(image_run, image_reports):
    from suite.export import export_run

    target = image_run.exports_dir / "onnx"
    (target / "stale.txt").write_text("left over from an older export")
    rep = export_run(image_run, formats="onnx", examples=5)["onnx"]
    assert rep["supported"]
    assert not (target / "stale.txt").exists()
    assert json.loads((target / "report.json").read_text())["verification"]["examples"] == 5


def test_cli_prints_one_line_for_bad_format(image_run, capsys):
    from suite.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(image_run.path), "--format", "pickle"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown export format 'pickle'")


def test_cli_prints_each_export_with_its_notes(image_run, capsys):
    from suite.cli import main

    main(["export", str(image_run.path), "--format", "tflite", "--quantize", "dynamic", "--examples", "5"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("tflite") and "top-1 agreement" in out[0]
    assert any(line.strip().startswith("- ") for line in out[1:]), out  # e.g. the names-stripped note


def test_front_end_layers_are_the_weightless_preprocessing(registry):
    from suite.data import parse_source
    from suite.export.formats import front_end_layers

    task = TASKS[0]
    config = task.make_config({})
    model = task.build_model(config, task.load_data(parse_source("sample"), config))
    assert front_end_layers(model) == ["rescale"]


def test_tflite_tensor_names_are_stripped_and_the_signature_still_runs(tmp_path):
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from suite.export.formats import strip_tensor_names, write_archive

    inputs = keras.Input((8,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, name="a_rather_long_layer_name_for_the_test")(inputs))
    fn = tf.function(lambda x: {"scores": model(x)}, input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    write_archive(model, {"serving_default": fn}, tmp_path / "sm")
    content = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    stripped, saved = strip_tensor_names(content)
    assert saved > 0 and len(stripped) == len(content) - saved
    x = np.random.default_rng(0).random((1, 8)).astype("float32")
    outs = []
    for blob in (content, stripped):
        interpreter = Interpreter(model_content=blob)
        outs.append(np.array(interpreter.get_signature_runner()(x=x)["scores"]))
    np.testing.assert_allclose(outs[0], np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outs[0], outs[1])
    details = Interpreter(model_content=stripped).get_tensor_details()
    assert not any("a_rather_long_layer_name" in d["name"] for d in details)


def _weight_scale_counts(path) -> list[int]:
    """Number of quantization scales of each int8 constant (weight) tensor in a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    counts = []
    for d in interp.get_tensor_details():
        scales = d["quantization_parameters"]["scales"]
        if d["dtype"] == np.int8 and len(d["shape"]) >= 2 and len(scales):
            try:
                interp.get_tensor(d["index"])  # constants are readable before invoke; activations are not
            except ValueError:
                continue
            counts.append(len(scales))
    return counts


@pytest.mark.parametrize("accept", [True, False])
def test_int8_uses_per_tensor_scales_only_when_they_keep_agreement(image_run, monkeypatch, accept):
    """Per-tensor int8 drops a scale and zero point per channel; it is kept only within the agreement budget."""
    from suite.export import export_run, formats

    # accept: any loss of agreement is tolerated; refuse: even an equal agreement is not enough.
    monkeypatch.setattr(formats, "PER_TENSOR_MAX_LOSS", 1.0 if accept else -1.0)
    rep = export_run(image_run, formats="tflite", quantize="int8", examples=40)["tflite"]
    assert rep["supported"], rep.get("reason")
    counts = _weight_scale_counts(rep["path"])
    assert counts, "no int8 weight tensors found"
    notes = " ".join(rep["notes"])
    if accept:
        assert set(counts) == {1}, counts
        assert "per-tensor int8 scales" in notes
    else:
        assert max(counts) > 1, counts  # one scale per output channel
        assert "per-channel int8 scales" in notes
    assert rep["verification"]["top1_agreement"] >= 0.85


def test_a_mixed_precision_model_exports_through_its_float32_twin(registry):
    """A model trained under mixed_bfloat16 traces to bf16 ops that LiteRT cannot run (int8 calibration cannot
    even start): the numeric formats are built from the same weights in float32 and say so."""
    import keras

    from suite.export import export_run
    from suite.export.precision import float32_twin, is_mixed

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        run = make_run(TASKS[0], "image-bf16", epochs=2)
    finally:
        keras.config.set_dtype_policy(previous)
    model = run.load_model()
    assert is_mixed(model)
    twin = float32_twin(model)
    assert not is_mixed(twin) and float32_twin(twin) is twin
    x = np.random.default_rng(0).integers(0, 255, (4, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(model(x), dtype=np.float32), atol=0.05)
    reports = export_run(run, formats="tflite,onnx", quantize="int8", examples=30)
    for fmt, rep in reports.items():
        assert rep["supported"], (fmt, rep.get("reason"))
        assert any("computed in float32" in n for n in rep["notes"]), rep["notes"]
        assert rep["verification"]["top1_agreement"] >= 0.9
