"""Importing model files from strangers: every crafted attack file is refused with its own one-line reason,
nothing is extracted or kept, and a legitimate ``.keras`` model imports into a usable run.
"""

from __future__ import annotations

import base64
import json
import marshal
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from suite.errors import SuiteError
from suite.model_import import ImportLimits, ModelImportError, import_keras_model
from suite.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent
TASK = "tabular_classification"  # the example plugin the test session installs; takes a float vector


# ---- crafting files ----------------------------------------------------------------------------------
def _layer(class_name, config, module="keras.layers", registered_name=None):
    return {"module": module, "class_name": class_name, "config": config, "registered_name": registered_name}


def _functional(*layers) -> dict:
    return _layer("Functional", {"name": "m", "layers": list(layers), "input_layers": [], "output_layers": []},
                  module="keras.src.models.functional")


def _keras_zip(path: Path, config: dict | str, extra: dict[str, bytes] | None = None,
               compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def _lambda_config() -> dict:
    code = marshal.dumps((lambda x: __import__("os").system("touch /tmp/pwned") or x).__code__)
    fn = {"class_name": "__lambda__", "config": {"code": base64.b64encode(code).decode(), "defaults": None,
                                                 "closure": None}}
    return _functional(_layer("Lambda", {"name": "evil", "function": fn, "arguments": {}}))


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _refused(path, store, pattern, **kw) -> str:
    with pytest.raises(ModelImportError) as info:
        import_keras_model(path, name="attack", task=TASK, store=store, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert isinstance(info.value, SuiteError)
    # Nothing was kept: no run, and no staging folder left behind.
    assert not (store.root / "attack").exists()
    assert [p.name for p in store.root.iterdir()] == [] if store.root.exists() else True
    return message


# ---- config.json attacks -------------------------------------------------------------------------------
def test_lambda_layer_with_marshalled_code_is_refused(tmp_path, store):
    _refused(_keras_zip(tmp_path / "lambda.keras", _lambda_config()), store, r"Lambda layer")


def test_serialized_python_lambda_anywhere_is_refused(tmp_path, store):
    # A lambda hidden as a Dense layer's activation, not as a Lambda layer.
    fn = {"class_name": "__lambda__", "config": {"code": "AAAA"}}
    cfg = _functional(_layer("Dense", {"name": "d", "units": 2, "activation": fn}))
    _refused(_keras_zip(tmp_path / "act.keras", cfg), store, r"serialized Python lambda")


def test_tfsmlayer_is_refused(tmp_path, store):
    cfg = _functional(_layer("TFSMLayer", {"name": "sm", "filepath": "/tmp/outside_savedmodel",
                                           "call_endpoint": "serve"}))
    _refused(_keras_zip(tmp_path / "tfsm.keras", cfg), store, r"TFSMLayer")


@pytest.mark.parametrize("module,fn", [("os", "system"), ("subprocess", "Popen"), ("posix", "system"),
                                       ("evil_pkg.payload", "run")])
def test_unknown_module_is_refused(tmp_path, store, module, fn):
    cfg = _functional(_layer("Dense", {"name": "d", "units": 2,
                                       "activation": {"module": module, "class_name": "function",
                                                      "config": fn, "registered_name": fn}}))
    msg = _refused(_keras_zip(tmp_path / f"{module}.keras", cfg), store, r"module")
    assert repr(module) in msg


@pytest.mark.parametrize("fn", ["exec", "eval", "system", "__import__", "evil>run"])
def test_builtins_function_that_keras_would_not_resolve_is_refused(tmp_path, store, fn):
    cfg = _functional(_layer("TextVectorization", {"name": "t", "standardize": {
        "module": "builtins", "class_name": "function", "config": fn, "registered_name": "function"}}))
    _refused(_keras_zip(tmp_path / "fn.keras", cfg), store, r"neither a Keras built-in nor registered")


def test_builtins_function_by_keras_or_registered_name_is_accepted():
    from suite.model_import import check_config

    for fn, registered in (("relu", set()), ("suite_demo>clean", {"suite_demo>clean"})):
        cfg = _functional(_layer("Dense", {"name": "d", "activation": {
            "module": "builtins", "class_name": "function", "config": fn, "registered_name": "function"}}))
        check_config(cfg, {"keras"}, registered)


def test_unregistered_custom_object_is_refused(tmp_path, store):
    cfg = _functional(_layer("Payload", {"name": "p"}, module=None, registered_name="evil>Payload"))
    _refused(_keras_zip(tmp_path / "custom.keras", cfg), store, r"'evil>Payload'.*no installed suite plugin")


@pytest.mark.parametrize("layer,key", [("TextVectorization", "vocabulary"), ("StringLookup", "vocabulary"),
                                       ("IntegerLookup", "vocabulary")])
def test_vocabulary_file_path_is_refused(tmp_path, store, layer, key):
    cfg = _functional(_layer(layer, {"name": "v", key: "/etc/passwd"}))
    msg = _refused(_keras_zip(tmp_path / "vocab.keras", cfg), store, r"vocabulary.*file path")
    assert "/etc/passwd" in msg


def test_inline_vocabulary_list_is_not_a_path(tmp_path):
    from suite.model_import import check_config

    cfg = _functional(_layer("StringLookup", {"name": "v", "vocabulary": ["/etc/passwd", "b"]}))
    check_config(cfg, {"keras"}, set())  # a list of words is data, not a file: accepted


def test_config_that_is_not_json_is_refused(tmp_path, store):
    _refused(_keras_zip(tmp_path / "bad.keras", "{not json"), store, r"config.json is not valid JSON")


# ---- zip attacks ----------------------------------------------------------------------------------------
def test_zip_bomb_member_is_refused(tmp_path, store):
    # 64 MiB of zeros deflates to ~64 KiB: a ratio near 1000:1.
    path = _keras_zip(tmp_path / "bomb.keras", _functional(), extra={"assets/bomb.bin": b"\0" * (64 << 20)},
                      compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    _refused(path, store, r"'assets/bomb.bin'.*compression ratio \d+:1.*zip bomb")


def test_member_declaring_a_huge_size_is_refused(tmp_path, store):
    path = _keras_zip(tmp_path / "big.keras", _functional(), extra={"assets/big.bin": b"x" * (3 << 20)})
    _refused(path, store, r"'assets/big.bin' declares 3 MiB", limits=ImportLimits(max_member_bytes=1 << 20))


def test_too_many_members_is_refused(tmp_path, store):
    path = _keras_zip(tmp_path / "many.keras", _functional(), extra={f"assets/{i}": b"" for i in range(40)})
    _refused(path, store, r"43 zip members \(at most 20\)", limits=ImportLimits(max_members=20))


@pytest.mark.parametrize("member", ["../../evil.py", "/etc/cron.d/evil", "assets/../../x"])
def test_path_traversal_member_names_are_refused(tmp_path, store, member):
    path = _keras_zip(tmp_path / "trav.keras", _functional(), extra={member: b"x"})
    with zipfile.ZipFile(path) as zf:  # zipfile keeps the hostile name as written
        assert any(".." in n or n.startswith("/") for n in zf.namelist())
    _refused(path, store, r"(outside the archive|absolute path)")


def test_zip_without_config_is_refused(tmp_path, store):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.weights.h5", b"x")
    _refused(path, store, r"no config.json")


# ---- formats refused outright ------------------------------------------------------------------------
def test_h5_file_is_refused(tmp_path, store):
    path = tmp_path / "legacy.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 128)
    _refused(path, store, r"legacy HDF5 \(\.h5\) model")


def test_h5_bytes_renamed_to_keras_are_refused(tmp_path, store):
    path = tmp_path / "sneaky.keras"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 128)
    _refused(path, store, r"legacy HDF5")


def test_savedmodel_folder_is_refused(tmp_path, store):
    folder = tmp_path / "exported"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    _refused(folder, store, r"SavedModel folder")


def test_not_a_zip_is_refused(tmp_path, store):
    path = tmp_path / "junk.keras"
    path.write_bytes(b"PK not really a zip")
    _refused(path, store, r"not a valid \.keras file")


# ---- the child-process load ------------------------------------------------------------------------------
def _small_model(path: Path, n_features=4, n_classes=3) -> Path:
    import keras

    inp = keras.Input((n_features,), name="features")
    x = keras.layers.Normalization(mean=[0.0] * n_features, variance=[1.0] * n_features)(inp)
    x = keras.layers.Dense(8, activation="relu")(x)
    out = keras.layers.Dense(n_classes, activation="softmax")(x)
    keras.Model(inp, out).save(path)
    return path


def test_legit_model_imports_into_a_usable_run(tmp_path, store):
    src = _small_model(tmp_path / "legit.keras")
    run = import_keras_model(src, name="legit", task=TASK, store=store,
                             class_names=["setosa", "versicolor", "virginica"], meta={"n_features": 4})
    assert run.status == "completed" and run.task_name == TASK
    assert run.meta["class_names"] == ["setosa", "versicolor", "virginica"]
    assert run.meta["input_shape"] == [None, 4] and run.meta["output_size"] == 3
    assert run.model_path.read_bytes() == src.read_bytes()
    assert run.config and run.info["sha256"]
    assert sorted(p.name for p in store.root.iterdir()) == ["legit"]  # staging folder cleaned
    from suite.predictor import Predictor

    result = Predictor(run).predict(["5.1,3.5,1.4,0.2"])[0]
    assert result["label"] in run.meta["class_names"]
    with pytest.raises(ModelImportError, match="already exists"):
        import_keras_model(src, name="legit", task=TASK, store=store)


def _plugin_names() -> list[str]:
    return ["image_classification", "sentiment", "translation", "speech_commands", TASK]


@pytest.mark.parametrize("plugin", _plugin_names())
def test_each_plugins_own_model_passes_the_checks(tmp_path, store, plugin):
    """No false alarms: a model a plugin builds (registered preprocessing layers) is accepted; for one plugin
    the whole import runs (the child registers the plugin's layers) and the imported run predicts."""
    from suite.data import parse_source
    from suite.model_import import check_model_file
    from suite.registry import get_registry

    reg = get_registry()
    if plugin not in reg:
        pytest.skip(f"plugin {plugin!r} is not registered ({[f.reason for f in reg.failures if f.name == plugin]})")
    task = reg.get(plugin)
    config = task.make_config(task.sample_overrides)
    bundle = task.load_data(parse_source("sample"), config)
    path = tmp_path / f"{plugin}.keras"
    task.build_model(config, bundle).save(path)
    check_model_file(path)
    if plugin != "image_classification":
        return
    run = import_keras_model(path, name="own", task=plugin, store=store, meta=bundle.meta)
    from suite.predictor import Predictor

    example = task.examples(run.meta)[0]
    assert Predictor(run).predict([example.value])[0]["label"] in bundle.meta["class_names"]


def test_class_names_must_match_outputs(tmp_path, store, monkeypatch):
    import suite.model_import as mi

    # The child's report is faked here (the legit test above runs the real child): only the parent's check.
    fake = {"ok": True, "inputs": [{"name": "features", "shape": [None, 4], "dtype": "float32"}],
            "outputs": [{"shape": [None, 3], "dtype": "float32"}], "output_size": 3, "params": 1}
    monkeypatch.setattr(mi, "probe_load", lambda path, limits=None: fake)
    src = _keras_zip(tmp_path / "m.keras", _functional())
    _refused(src, store, r"3 outputs but 2 class names", class_names=["a", "b"])


def test_model_too_big_for_the_memory_limit_is_refused(tmp_path, store):
    # A config that asks Keras to build a 60000 x 60000 float32 kernel (~14 GB) before any weight is read.
    cfg = json.loads(zipfile.ZipFile(_small_model(tmp_path / "base.keras")).read("config.json"))
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] == "Dense" and layer["config"]["units"] == 8:
            layer["config"]["units"] = 60000
            layer["build_config"] = {"input_shape": [None, 60000]}
    path = _keras_zip(tmp_path / "huge.keras", cfg)
    _refused(path, store, r"(memory limit|failed to load safely)", limits=ImportLimits(memory_mb=4096))


def test_load_timeout_is_enforced(tmp_path, store):
    src = _small_model(tmp_path / "legit.keras")
    _refused(src, store, r"took longer than", limits=ImportLimits(timeout_s=0.5))


def test_cli_import_model_refuses_with_one_line(tmp_path):
    src = tmp_path / "legacy.h5"
    src.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 128)
    env = {**__import__("os").environ, "SUITE_HOME": str(tmp_path / "runs"), "SUITE_PLUGINS": TASK}
    proc = subprocess.run([sys.executable, "-m", "suite.cli", "import-model", str(src), "--task", TASK,
                           "--name", "x"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "legacy HDF5" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "x").exists()


# ---- the repository itself ---------------------------------------------------------------------------
def test_nothing_enables_unsafe_deserialization():
    needles = ["enable_unsafe_" + "deserialization", "safe_mode=" + "False", "safe_mode = " + "False"]
    offenders = []
    for folder in ("suite", "plugins", "apps", "bench", "examples", "tests", "scripts"):
        for path in (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir() else []:
            text = path.read_text(encoding="utf-8", errors="replace")
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert not offenders, offenders


def test_keras_is_past_the_deserialization_cves():
    import keras

    def version(text):
        return tuple(int(p) for p in re.findall(r"\d+", text)[:3])

    assert version(keras.__version__) >= (3, 14, 1), keras.__version__
    pins = re.findall(r"^keras==([\d.]+)", (ROOT / "requirements.txt").read_text(), flags=re.M)
    assert pins and version(pins[0]) >= (3, 14, 1), pins
    assert re.search(r'"keras>=3\.14\.1"', (ROOT / "pyproject.toml").read_text())
