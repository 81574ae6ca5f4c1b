"""Importing a ``.keras`` model from the app (Runs page): a good model becomes a usable run; a Lambda layer, a zip
bomb, a non-zip, an ``.h5`` and a SavedModel are refused with one line each; the page keeps working after.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import re
import zipfile
from pathlib import Path

import pytest

from suite.registry import Registry, set_registry
from suite.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "app.py"
TAB = "tabular_classification"

pytestmark = pytest.mark.xdist_group("app")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    from suite_tabular.task import TabularClassification

    root = tmp_path / "runs"
    monkeypatch.setenv("SUITE_HOME", str(root))
    monkeypatch.setenv("SUITE_APP_PREPARE_SAMPLES", "0")
    monkeypatch.setenv("SUITE_PLUGINS", TAB)  # the import child loads only the plugin it needs
    reg = Registry()
    assert reg.register(TabularClassification()) is not None
    set_registry(reg)
    yield root
    set_registry(None)


def runs_page():
    from streamlit.testing.v1 import AppTest

    from suite.compat import apptest_open_page

    return apptest_open_page(AppTest.from_file(str(APP), default_timeout=240), "runs")


def upload(at, filename: str, data: bytes, **fields):
    at.file_uploader(key="runs:import:file").upload(filename, data, "application/octet-stream").run()
    at.selectbox(key="runs:import:task").set_value(TAB)
    for key, value in fields.items():
        at.text_input(key=f"runs:import:{key}").set_value(value)
    return at.button(key="runs:import:go").click().run()


def errors(at) -> list[str]:
    return [str(e.value) for e in at.error]


def refused(at, pattern: str) -> str:
    assert not at.exception, [str(e.value) for e in at.exception]
    errs = errors(at)
    assert len(errs) == 1 and re.search(pattern, errs[0]), errs
    assert "\n" not in errs[0]
    return errs[0]


def no_runs(root: Path) -> None:
    # Nothing kept: no run, no staging folder.
    assert not root.exists() or [p.name for p in root.iterdir() if not p.name.startswith(".sample")] == []


# ---- files -------------------------------------------------------------------------------------------
def good_model_bytes(tmp_path: Path) -> bytes:
    import keras

    inp = keras.Input((4,), name="features")
    x = keras.layers.Dense(8, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(x)
    path = tmp_path / "made-elsewhere.keras"
    keras.Model(inp, out).save(path)
    return path.read_bytes()


def keras_zip(config: dict, extra: dict[str, bytes] | None = None, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def functional(*layers) -> dict:
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": None,
            "config": {"name": "m", "layers": list(layers), "input_layers": [], "output_layers": []}}


def lambda_model_bytes() -> bytes:
    code = marshal.dumps((lambda x: __import__("os").system("touch /tmp/pwned-by-app") or x).__code__)
    fn = {"class_name": "__lambda__", "config": {"code": base64.b64encode(code).decode(), "defaults": None,
                                                 "closure": None}}
    layer = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
             "config": {"name": "evil", "function": fn, "arguments": {}}}
    return keras_zip(functional(layer))


# ---- tests ---------------------------------------------------------------------------------------------
def test_good_model_imports_and_predicts_on_its_page(home, tmp_path):
    at = runs_page()
    assert not at.exception
    assert any("No runs yet" in str(i.value) for i in at.info)
    at = upload(at, "made-elsewhere.keras", good_model_bytes(tmp_path), name="imported-good",
                classes="setosa,versicolor,virginica", meta='{"n_features": 4}')
    assert not at.exception and not errors(at), errors(at)
    assert any("as run `imported-good`" in str(s.value) for s in at.success), [str(s.value) for s in at.success]
    run = RunStore(home).get("imported-good")
    assert run.status == "completed" and run.meta["class_names"] == ["setosa", "versicolor", "virginica"]
    assert "imported-good" in set(at.dataframe[0].value["run"])
    assert [p.name for p in home.iterdir() if p.name.startswith(".upload-import-")] == []  # staging removed
    # Usable on its plugin page: the newest run there, and it predicts.
    from suite.compat import apptest_open_page

    apptest_open_page(at, TAB)
    assert not at.exception
    assert at.selectbox(key=f"{TAB}:run").value.startswith("imported-good")
    at.text_area(key=f"{TAB}:text").set_value("5.1,3.5,1.4,0.2")
    at.button(key=f"{TAB}:predict").click().run()
    labels = [re.match(r"### Prediction: (\S+)", str(m.value)) for m in at.markdown]
    assert any(m and m.group(1) in ("setosa", "versicolor", "virginica") for m in labels)


def test_lambda_layer_is_refused_and_the_page_keeps_working(home):
    at = upload(runs_page(), "innocent.keras", lambda_model_bytes(), name="attack")
    refused(at, r"^Import: refused: Lambda 'evil' is a Lambda layer")
    no_runs(home)
    assert not Path("/tmp/pwned-by-app").exists()
    # The page still serves: a second, different refusal is reported the same way.
    at = upload(at, "notes.keras", b"just some text, not a model", name="attack2")
    refused(at, r"not a \.keras model \(not a zip archive\)")


def test_zip_bomb_is_refused(home):
    bomb = keras_zip(functional(), extra={"assets/bomb.bin": b"\0" * (64 << 20)}, compression=zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1 << 20
    at = upload(runs_page(), "bomb.keras", bomb, name="bomb")
    refused(at, r"'assets/bomb\.bin' has compression ratio \d+:1 .*zip bomb")
    no_runs(home)


@pytest.mark.parametrize(("filename", "data", "pattern"), [
    ("model.keras", b"\x89HDF\r\n\x1a\n" + b"\0" * 256, r"legacy HDF5 \(\.h5\) model"),
    ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 256, r"legacy HDF5 \(\.h5\) model"),
    ("model.zip", None, r"holds a SavedModel"),
    ("model.keras", b"", r"is empty"),
    ("weights.zip", None, r"zip but not a \.keras model"),
])
def test_h5_savedmodel_and_non_models_are_refused_by_content(home, filename, data, pattern):
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            if "SavedModel" in pattern:
                zf.writestr("my_model/saved_model.pb", b"\x08\x01")
                zf.writestr("my_model/variables/variables.index", b"")
            else:
                zf.writestr("weights.bin", b"\0" * 16)
        data = buf.getvalue()
    at = runs_page()
    if not data:
        # An empty upload never reaches the button in a browser; the check itself refuses it.
        from suite.model_import import ModelImportError
        from suite_app.importing import sniff

        with pytest.raises(ModelImportError, match=pattern):
            sniff(data, filename)
        return
    at = upload(at, filename, data, name="refused")
    refused(at, pattern)
    no_runs(home)


def test_a_model_trained_by_the_suite_imports_with_its_schedule(home, tmp_path):
    """The app's own export (optimizer on a suite schedule) must import: the import child is a fresh process,
    where nothing has imported ``suite.schedules`` before the config check."""
    import keras

    from suite.schedules import WarmupCosine
    from suite_app.importing import import_upload

    inp = keras.Input((4,), name="features")
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile(optimizer=keras.optimizers.Adam(WarmupCosine(1e-3, 2, 10)), loss="sparse_categorical_crossentropy")
    model.fit(keras.ops.ones((4, 4)), keras.ops.zeros((4,)), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    assert "suite.schedules" in zipfile.ZipFile(path).read("config.json").decode()
    run = import_upload(path.read_bytes(), "model.keras", task=TAB, name="own-export", store=RunStore(home),
                        meta={"n_features": 4})
    assert run.status == "completed" and run.meta["class_names"] == ["0", "1", "2"]
