"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page, the error paths, and its settings."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tomllib

from suite.errors import DataSourceError, InputError
from suite.registry import PluginFailure, Registry, get_registry, set_registry
from suite.runstore import Run, RunStore
from suite.task import ClassificationTask, Drawing, Example, Explanation

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "apps" / "app.py"
TAB = "tabular_classification"

# One worker runs them all, so the trained run is made once.
pytestmark = pytest.mark.xdist_group("app")


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A store holding one tiny trained tabular run (about 5 s on an idle machine)."""
    from suite.trainer import TrainOptions, train

    root = tmp_path_factory.mktemp("app-store") / "runs"
    train(TAB, "sample", {"epochs": 3}, name="tab-small", store=RunStore(root),
          options=TrainOptions(tensorboard=False))
    return root


@pytest.fixture()
def home(trained_root, tmp_path, monkeypatch):
    """A private copy of the store as SUITE_HOME; no first-start sample training."""
    dst = tmp_path / "runs"
    shutil.copytree(trained_root, dst)
    monkeypatch.setenv("SUITE_HOME", str(dst))
    monkeypatch.setenv("SUITE_APP_PREPARE_SAMPLES", "0")
    return dst


@pytest.fixture()
def registry_of():
    """Install a test registry holding the given tasks (and failures); restore the real one after."""
    def make(*tasks, failures=()):
        reg = Registry()
        for t in tasks:
            assert reg.register(t) is not None, reg.failures
        reg.failures.extend(failures)
        set_registry(reg)
        return reg

    yield make
    set_registry(None)


def tabular():
    from suite_tabular.task import TabularClassification

    return TabularClassification()


def app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=90)


def open_page(at, url_path: str):
    """Go to an ``st.navigation`` page by its url path, as the browser does for /url_path."""
    from suite.compat import apptest_open_page

    return apptest_open_page(at, url_path)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def no_exceptions(at) -> None:
    assert not at.exception, texts(at.exception)


def prediction(at) -> str | None:
    from suite.testing import predicted_label

    return predicted_label(at)


def latency_ms(at) -> float | None:
    for c in at.caption:
        match = re.search(r"Answered in ([\d.]+) ms", str(c.value))
        if match:
            return float(match.group(1))
    return None


# ---- a tiny image task with a hand-made model (no training needed) -----------------------------------
def png(color, size=(12, 12)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


class HandMade(ClassificationTask):
    """A test task whose runs hold a model written by hand: nothing to load or build."""

    def load_data(self, source, config):
        raise DataSourceError(f"{self.name} has no data")

    def build_inputs(self, config, meta):
        raise NotImplementedError

    def build_backbone(self, config, meta):
        raise NotImplementedError


class TinyImage(HandMade):
    name = "tiny_image"
    title = "Tiny image"
    description = "A test task: red or blue."
    input_kind = "image"
    upload_types = ("png", "jpg")

    def decode_input(self, raw, meta):
        from PIL import Image, UnidentifiedImageError

        if not isinstance(raw, bytes) or not raw:
            raise InputError("an image must be non-empty file bytes")
        try:
            img = Image.open(io.BytesIO(raw))
            img.load()
        except (UnidentifiedImageError, OSError):
            raise InputError("the file is not a PNG, JPEG or other image this task reads") from None
        return np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32)

    def examples(self, meta):
        return [Example("red square", png("red"), expected="red")]

    def explain(self, model, x, meta):
        x = np.asarray(x)
        return Explanation("heatmap", {"image": x.astype(np.uint8), "heatmap": x[..., 0] / 255.0}, "red channel")


def make_image_run(root: Path, task_name: str = "tiny_image") -> Run:
    """A completed run of a tiny image model written by hand: red vs blue from the mean colour."""
    import keras

    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs, outputs)
    model.get_layer("logits").set_weights([np.array([[8.0, -8.0], [0, 0], [-8.0, 8.0]], np.float32),
                                           np.zeros(2, np.float32)])
    run = RunStore(root).create(f"{task_name}-run", task_name, data="sample")
    model.save(run.model_path)
    (run.path / "meta.json").write_text(json.dumps({"class_names": ["red", "blue"]}))
    run.update_info(status="completed")
    return run


# ---- Home ---------------------------------------------------------------------------------------
def test_home_shows_plugins_failures_machine_and_recent_runs(home, registry_of):
    registry_of(tabular(), failures=[PluginFailure("badplug", "badplug = bad.mod:register",
                                                   "import failed: SyntaxError: invalid syntax")])
    at = app().run()
    no_exceptions(at)
    body = "\n".join(texts(at.markdown))
    assert "Tabular classification" in body and f"`{TAB}`" in body
    assert any("badplug" in e and "SyntaxError" in e for e in texts(at.error))
    assert "--strategy auto" in body and "--precision auto" in body
    runs_table = at.dataframe[0].value
    assert "tab-small" in set(runs_table["run"])


# ---- the tabular page ---------------------------------------------------------------------------
def test_tabular_page_predicts_its_example_and_reports_latency(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    no_exceptions(at)
    assert not at.error, texts(at.error)
    classes = Run(home / "tab-small").meta["class_names"]
    assert prediction(at) in classes  # the first example is predicted on arrival
    assert at.text_area(key=f"{TAB}:text").value  # prefilled with an example row
    for row in ("5.1,3.5,1.4,0.2", "6.7,3.0,5.2,2.3"):
        at.text_area(key=f"{TAB}:text").set_value(row)
        at.button(key=f"{TAB}:predict").click().run()
        assert prediction(at) in classes
        assert latency_ms(at) is not None  # measured on the server and shown
    # The model the page loaded is cached (loaded once); a prediction on it is fast. A busy shared CI box
    # can stall any one call, so the best of ten is held to the 100 ms target.
    from suite_app.common import get_predictor, timed_predict

    predictor = get_predictor(Run(home / "tab-small"))
    assert get_predictor(Run(home / "tab-small")) is predictor
    timings = [timed_predict(predictor, "5.9,3.0,4.2,1.5")[1] for _ in range(10)]
    assert min(timings) < 100, timings


def test_tabular_page_empty_and_malformed_input_errors_then_keeps_serving(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    at.text_area(key=f"{TAB}:text").set_value("   ")
    at.button(key=f"{TAB}:predict").click().run()
    assert any("empty" in e for e in texts(at.error)), texts(at.error)
    assert prediction(at) is None
    at.text_area(key=f"{TAB}:text").set_value("1,2,not-a-number").run()
    assert any("cannot be used" in e for e in texts(at.error)), texts(at.error)
    at.text_area(key=f"{TAB}:text").set_value("5.0,3.4,1.5,0.2").run()
    no_exceptions(at)
    assert not at.error and prediction(at) is not None


def test_tabular_evaluate_tab_shows_metrics_confusion_and_per_class(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    test = Run(home / "tab-small").metrics["test"]
    labels = {m.label: m.value for m in at.metric}
    assert labels["accuracy"] == f"{test['accuracy']:.4g}"
    from suite_app.task_page import metric_text

    assert [metric_text(v) for v in (81.19, 209.3, 0.7083333, 150)] == ["81.19", "209.3", "0.7083", "150"]
    assert "**Confusion matrix** (rows: true class, columns: predicted)" in texts(at.markdown)
    assert len(at.get("vega_lite_chart")) >= 2  # top-k bars and the confusion matrix
    per_class = [d.value for d in at.dataframe if "precision" in d.value.columns][0]
    assert list(per_class["class"]) == test["class_names"]


def test_deleted_run_folder_shows_an_error_and_the_app_keeps_serving(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    assert prediction(at) is not None
    shutil.rmtree(home / "tab-small")
    at.run()
    no_exceptions(at)
    assert any("tab-small" in e and "deleted" in e for e in texts(at.error)), texts(at.error)
    assert any("No trained model" in str(i.value) for i in at.info)
    open_page(at, "runs")  # other pages still work
    no_exceptions(at)


def test_model_deleted_after_it_was_selected_is_reported_on_predict(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    (home / "tab-small" / "model.keras").unlink()
    at.button(key=f"{TAB}:predict").click().run()
    no_exceptions(at)
    assert prediction(at) is None
    assert any("tab-small" in e for e in texts(at.error)), texts(at.error)


def test_export_tab_exports_or_says_clearly_why_not(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    at.multiselect(key=f"{TAB}:export:formats").set_value(["keras", "tflite"])
    at.selectbox(key=f"{TAB}:export:quantize").set_value("dynamic")
    at.number_input(key=f"{TAB}:export:examples").set_value(10)
    at.button(key=f"{TAB}:export:go").click().run(timeout=180)
    no_exceptions(at)
    try:
        import suite.export  # noqa: F401
    except ImportError:
        assert any("Export is not available" in e for e in texts(at.error))
    else:
        report = [d.value for d in at.dataframe if "format" in d.value.columns]
        assert report and list(report[0]["format"]) == ["keras", "tflite"], texts(at.error)
        # each report's notes (inputs, quantization choices) are on the page, not only in report.json
        labels = [e.proto.label for e in at.get("expander")]
        assert "tflite: inputs and how it was built" in labels, labels
        # "Use this model": code for the run's own model and for the file just exported
        code = [c.value for c in at.code if "INPUT =" in c.value]
        assert len(code) == 2 and "Predictor(" in code[0] and "model.tflite" in code[1], code
    assert any("model.keras" in b.label for b in at.download_button)



def test_export_offers_only_the_formats_the_task_can_be_carried_in(home, registry_of):
    """A format the plugin declares impossible is not offered (choosing it gave a green "Exported" over an
    empty export); the page says why it is missing."""
    from suite_tabular.task import TabularClassification

    class NoOnnx(TabularClassification):
        def export_limits(self):
            return {"onnx": "ONNX cannot carry this model"}

    registry_of(NoOnnx())
    at = open_page(app().run(), TAB)
    formats = at.multiselect(key=f"{TAB}:export:formats")
    assert "onnx" not in formats.options and formats.value == ["keras", "saved_model", "tflite"]
    assert any(c == "Not offered: onnx: ONNX cannot carry this model" for c in texts(at.caption))

# ---- image inputs: checked by content ----------------------------------------------------------------
def test_image_page_checks_uploads_by_content_and_explains(home, registry_of):
    registry_of(tabular(), TinyImage())
    make_image_run(home)
    at = open_page(app().run(), "tiny_image")
    no_exceptions(at)
    assert prediction(at) == "red"  # the example
    at.radio(key="tiny_image:mode").set_value("Upload").run()
    at.file_uploader(key="tiny_image:upload").upload("cat.png", b"this is not an image", "image/png").run()
    no_exceptions(at)
    assert any("not a PNG" in e for e in texts(at.error)), texts(at.error)
    assert prediction(at) is None
    at.file_uploader(key="tiny_image:upload").clear().upload("photo.txt", png("blue"), "text/plain").run()
    assert not at.error and prediction(at) == "blue"
    at.toggle(key="tiny_image:explain").set_value(True).run()
    no_exceptions(at)
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs]
    assert "Where the model looked" in captions, captions
    at.radio(key="tiny_image:mode").set_value("Camera").run()
    assert len(at.camera_input) == 1


class DrawnImage(TinyImage):
    name = "drawn_image"
    title = "Drawn image"

    def drawing(self, meta):
        return Drawing(background="#000000", pen="#ffffff", hint="Draw a red or blue thing.")


def test_draw_is_offered_only_where_the_task_gives_a_pad_and_waits_for_a_drawing(home, registry_of):
    registry_of(tabular(), TinyImage(), DrawnImage())
    make_image_run(home)
    make_image_run(home, "drawn_image")
    at = open_page(app().run(), "tiny_image")
    assert "Draw" not in at.radio(key="tiny_image:mode").options  # no pad declared
    at = open_page(app().run(), "drawn_image")
    assert "Draw" in at.radio(key="drawn_image:mode").options
    at.radio(key="drawn_image:mode").set_value("Draw").run()
    no_exceptions(at)
    assert "Draw a red or blue thing." in texts(at.caption)
    assert prediction(at) is None and not at.error  # an empty pad is not an input


class TinyText(HandMade):
    """A test text task: "long" or "short" from the number of characters (no tokenizer to train)."""

    name = "tiny_text"
    title = "Tiny text"
    description = "A test task: long or short."
    input_kind = "text"

    def decode_input(self, raw, meta):
        return np.array([min(len(str(raw)), 40) / 10.0], np.float32)

    def examples(self, meta):
        return [Example("a long sentence", "This sentence is long enough to be long."), Example("short", "Hi")]


def test_predict_as_you_type_answers_from_the_live_box_and_keeps_the_text(home, registry_of):
    import keras

    inputs = keras.Input((1,), name="length")
    logits = keras.layers.Dense(2, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))
    model.get_layer("logits").set_weights([np.array([[2.0, -2.0]], np.float32), np.array([-4.0, 4.0], np.float32)])
    registry_of(tabular(), TinyText())
    run = RunStore(home).create("tiny_text-run", "tiny_text", data="sample")
    model.save(run.model_path)
    (run.path / "meta.json").write_text(json.dumps({"class_names": ["long", "short"]}))
    run.update_info(status="completed")
    at = open_page(app().run(), "tiny_text")
    assert prediction(at) == "long" and len(at.text_area) == 1
    at.text_area(key="tiny_text:text").set_value("Hi").run()
    assert prediction(at) == "short"
    at.toggle(key="tiny_text:as_you_type").set_value(True).run()
    no_exceptions(at)
    assert len(at.text_area) == 0 and "tiny_text:predict" not in [b.key for b in at.button]
    assert prediction(at) == "short"  # the live box starts from the text typed so far and answers at once
    at.toggle(key="tiny_text:as_you_type").set_value(False).run()
    assert at.text_area(key="tiny_text:text").value == "Hi" and prediction(at) == "short"


class TwoShapes(TinyImage):
    name = "two_shapes"

    def warmup_inputs(self, meta):
        return [png("red"), png("blue", size=(20, 9))]


def test_a_model_load_predicts_each_of_the_tasks_warmup_inputs(home, registry_of, monkeypatch):
    from suite.predictor import Predictor
    from suite_app import common

    registry_of(TwoShapes())
    run = make_image_run(home, "two_shapes")
    seen = []
    real = Predictor.predict
    monkeypatch.setattr(Predictor, "predict", lambda self, raws, **kw: seen.extend(raws) or real(self, raws, **kw))
    common._load_and_warm(str(run.path))
    assert seen == TwoShapes().warmup_inputs({})


# ---- plugin isolation ---------------------------------------------------------------------------------
def test_a_plugin_whose_predict_raises_breaks_only_its_own_page(home, registry_of):
    from suite_tabular.task import TabularClassification

    class BrokenPredict(TabularClassification):
        name = "broken_tabular"
        title = "Broken tabular"

        def predict_batch(self, forward, batch, meta):
            raise RuntimeError("the plugin's predict exploded")

    class BrokenPage(TinyImage):
        name = "broken_page"
        title = "Broken page"

        @staticmethod
        def page(task):
            raise ValueError("custom page crashed")

    registry_of(tabular(), BrokenPredict(), BrokenPage())
    src = home / "tab-small"
    shutil.copytree(src, home / "broken-run")
    info = json.loads((home / "broken-run" / "run.json").read_text())
    (home / "broken-run" / "run.json").write_text(json.dumps({**info, "task": "broken_tabular"}))

    at = open_page(app().run(), "broken_tabular")
    no_exceptions(at)
    assert any("predict exploded" in e for e in texts(at.error)), texts(at.error)
    assert [m for m in at.metric if m.label == "accuracy"]  # its Evaluate tab still renders
    open_page(at, "broken_page")
    no_exceptions(at)
    assert any("custom page crashed" in e for e in texts(at.error))
    open_page(at, TAB)
    no_exceptions(at)
    assert not at.error and prediction(at) is not None


def test_every_registered_plugin_page_renders(home):
    """The real registry (built-in plugins that exist by now, plus the example plugin)."""
    set_registry(None)
    try:
        reg = get_registry()
        assert TAB in reg
        at = app().run()
        no_exceptions(at)
        for task in reg.tasks():
            open_page(at, task.name)
            no_exceptions(at)
            assert task.title in [str(t.value) for t in at.title], task.name
            # the page's own tabs first (the Export tab holds the "Use this model" code tabs)
            assert [t.label for t in at.tabs][:4] == ["Try it", "Train", "Evaluate", "Export"]
    finally:
        set_registry(None)


# ---- Train tab: a separate process, live progress, stop and resume ------------------------------------
def _wait(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_train_tab_starts_a_process_streams_progress_stops_and_resumes(home, registry_of):
    from suite.events import read_events

    registry_of(tabular())
    at = open_page(app().run(), TAB)
    at.number_input(key=f"{TAB}:cfg:epochs").set_value(500)
    at.text_input(key=f"{TAB}:name").set_value("from-the-app")
    at.button(key=f"{TAB}:start").click().run()
    no_exceptions(at)
    assert any("separate process" in str(s.value) for s in at.success), texts(at.error)
    run_dir = home / "from-the-app"
    proc = at.session_state["procs"][str(run_dir)]
    try:
        _wait(lambda: any(e["event"] == "epoch_end" for e in read_events(run_dir / "events.jsonl")), 90,
              "the first epoch")
        at.run()
        bar = [p for p in at.get("progress") if "from-the-app" in p.proto.text]
        assert bar and "running" in bar[0].proto.text, [str(p.proto) for p in at.get("progress")]
        at.button(key="from-the-app:stop").click().run()
        assert (run_dir / "STOP").exists() or proc.poll() is not None
        proc.wait(timeout=60)
        _wait(lambda: Run(run_dir).status == "stopped", 10, "status stopped")
        at.run()
        # The stopped run is usable from its best checkpoint: listed as a model, one click selects it to try.
        labels = at.selectbox(key=f"{TAB}:run").options
        assert any(o.startswith("from-the-app") and "stopped · best checkpoint" in o for o in labels), labels
        at.button(key="from-the-app:try-now").click().run()
        no_exceptions(at)
        assert at.selectbox(key=f"{TAB}:run").value.startswith("from-the-app")
        assert at.session_state[f"{TAB}:tab"] == "Try it"
        at.button(key="from-the-app:resume").click().run()
        no_exceptions(at)
        proc = at.session_state["procs"][str(run_dir)]
        def resumed_training():
            events = read_events(run_dir / "events.jsonl")
            starts = [i for i, e in enumerate(events) if e["event"] == "run_start" and e.get("resumed")]
            return starts and any(e["event"] == "epoch_end" for e in events[starts[-1]:])

        _wait(resumed_training, 90, "the resumed run to train")  # the trainer clears STOP before fitting
        (run_dir / "STOP").write_text("stop")
        proc.wait(timeout=60)
        assert Run(run_dir).status == "stopped"
        assert "train" in (run_dir / "app-train.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_finished_run_is_distilled_from_its_page_into_a_student_run(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    at.selectbox(key=f"{TAB}:watch-select").set_value("tab-small").run()
    assert at.selectbox(key="tab-small:student").options == ["small"]
    at.button(key="tab-small:distill").click().run()
    no_exceptions(at)
    procs = at.session_state["procs"]
    (student_dir,) = [Path(p) for p in procs if Path(p).name.startswith("tab-small-student")]
    assert procs[str(student_dir)].wait(timeout=240) == 0, (student_dir / "app-train.log").read_text()[-2000:]
    info = Run(student_dir).info
    assert info["status"] == "completed" and info["distill"]["teacher_name"] == "tab-small"
    at.run()
    assert at.selectbox(key=f"{TAB}:watch-select").value == student_dir.name  # the page follows the student


def test_config_form_is_typed_from_describe(home, registry_of):
    registry_of(tabular())
    at = open_page(app().run(), TAB)
    from suite_tabular.task import TabularConfig

    for f in TabularConfig.describe():
        key = f"{TAB}:cfg:{f['name']}"
        widget = {"int": at.number_input, "float": at.number_input, "choice": at.selectbox,
                  "str": at.text_input, "bool": at.checkbox}[f["type"]](key=key)
        assert widget.value == f["default"], f
    at.number_input(key=f"{TAB}:cfg:learning_rate").set_value(50.0)
    at.button(key=f"{TAB}:start").click().run()
    assert any("learning_rate" in e for e in texts(at.error)), texts(at.error)  # refused before starting


# ---- Runs page ---------------------------------------------------------------------------------------
def test_runs_page_lists_compares_and_deletes(home, registry_of):
    registry_of(tabular())
    shutil.copytree(home / "tab-small", home / "tab-copy")
    RunStore(home).get("tab-copy").update_info(distill={"teacher": str(home / "tab-small"),
                                                        "teacher_name": "tab-small"})
    at = open_page(app().run(), "runs")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert {"tab-small", "tab-copy"} <= set(table["run"])
    assert table.set_index("run").loc["tab-copy", "distilled from"] == "tab-small"
    at.multiselect(key="runs:compare").set_value(["tab-small", "tab-copy"]).run()
    compared = at.dataframe[1].value
    assert compared.columns.tolist() == ["tab-small", "tab-copy"]
    # a teacher and its student side by side: which is which, and what each weighs
    assert compared.loc["distilled from"].tolist() == ["-", "tab-small"]
    size = (home / "tab-small" / "model.keras").stat().st_size / 1e6
    assert compared.loc["model.keras (MB)"].tolist() == [str(round(size, 2))] * 2
    latency = compared.loc["one input, warm (ms)"].tolist()  # measured at the end of training, per run
    assert all(float(v) > 0 for v in latency), latency
    shown = [v for v in at.dataframe[1].value["tab-small"] if v.replace(".", "", 1).isdigit() and "." in v]
    assert shown and all(len(v.split(".")[1]) <= 4 for v in shown), shown  # rounded, not 0.9553072625698324
    at.multiselect(key="runs:delete").set_value(["tab-copy"])
    at.checkbox(key="runs:sure").check().run()
    at.button(key="runs:go").click().run()
    no_exceptions(at)
    assert not (home / "tab-copy").exists() and (home / "tab-small").exists()
    assert any("Deleted tab-copy" in str(s.value) for s in at.success)
    # The choice is cleared, and the run still chosen for comparison stays chosen (the browser test checks
    # what the browser shows).
    assert at.multiselect(key="runs:delete").value == [] and at.checkbox(key="runs:sure").value is False
    assert at.multiselect(key="runs:compare").value == ["tab-small"]


# ---- first-start sample models --------------------------------------------------------------------------
def test_first_start_prepares_sample_models_for_plugins_without_one(tmp_path, monkeypatch, registry_of):
    from suite_app import samples

    registry_of(tabular())
    store = RunStore(tmp_path / "runs")
    assert samples.tasks_needing_samples(get_registry(), store) == [TAB]
    # The app starts it on its first run (captured here instead of spawning the process): on an empty store
    # before importing TensorFlow (the process finds the tasks itself), then with the tasks the registry names.
    started = []
    monkeypatch.setenv("SUITE_HOME", str(store.root))
    monkeypatch.setenv("SUITE_APP_PREPARE_SAMPLES", "1")
    monkeypatch.setattr(samples, "start_background", lambda tasks, s: started.append((tasks, s.root)))
    no_exceptions(app().run())
    assert started == [(None, store.root.resolve()), ([TAB], store.root.resolve())]
    monkeypatch.setenv("SUITE_APP_PREPARE_SAMPLES", "0")
    assert not samples.enabled()
    # What the background process does (one lane here): train each sample model, recording its times.
    states = samples.prepare_samples([TAB], store, extra_overrides={"epochs": 2})
    assert states == {TAB: "completed"}
    run = store.get(samples.sample_name(TAB))
    assert run.status == "completed" and run.has_model() and run.config["epochs"] == 2
    assert samples.tasks_needing_samples(get_registry(), store) == []
    times = samples.status(store)["times"][TAB]
    assert 0 < times["finished"] - times["started"] < 600


def test_a_store_with_runs_starts_sample_models_only_for_plugins_without_one(home, monkeypatch, registry_of):
    from suite_app import samples

    registry_of(tabular(), TinyImage())
    started = []
    monkeypatch.setenv("SUITE_APP_PREPARE_SAMPLES", "1")
    monkeypatch.setattr(samples, "start_background", lambda tasks, s: started.append(tasks))
    no_exceptions(app().run())
    assert started == [["tiny_image"]]  # no early start: the store is not empty


def test_only_one_sample_process_at_a_time(tmp_path, registry_of):
    from suite_app import samples

    store = RunStore(tmp_path / "runs")
    store.root.mkdir(parents=True)
    (store.root / samples.LOCK_NAME).write_text(str(os.getpid()))  # a live holder
    assert samples.start_background([TAB], store) is None
    assert samples.start_background(None, store) is None
    assert samples.start_background([], store) is None


def test_sample_lanes_balance_the_work_and_run_cheap_models_first():
    from suite_app.samples import plan_lanes

    four = ["translation", "speech_commands", "sentiment", "image_classification"]
    lanes = plan_lanes(four, 2)
    assert sorted(t for lane in lanes for t in lane) == sorted(four)
    assert lanes == [["sentiment", "translation"], ["image_classification", "speech_commands"]]
    assert plan_lanes(four, 1) == [["sentiment", "image_classification", "speech_commands", "translation"]]
    assert plan_lanes(["a"], 4) == [["a"]]  # never more lanes than models
    assert plan_lanes([], 2) == []


def _sample_state(store: RunStore, tasks: dict, plan: dict, times: dict | None = None) -> None:
    from suite_app import samples

    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / samples.STATUS_NAME).write_text(json.dumps(
        {"pid": os.getpid(), "started": time.time(), "tasks": tasks, "plan": plan, "times": times or {},
         "planned": time.time()}))


def test_sample_eta_counts_the_models_ahead_in_the_same_lane(tmp_path):
    from suite_app import samples

    store = RunStore(tmp_path / "runs")
    now = time.time()
    _sample_state(store, {"a": "training", "b": "waiting", "c": "waiting"},
                  {"a": {"lane": 0, "order": 0}, "b": {"lane": 0, "order": 1}, "c": {"lane": 1, "order": 0}},
                  {"a": {"started": now - 10}})
    state = samples.status(store)
    assert state["alive"]
    d = samples.DEFAULT_SECONDS
    eta_a, eta_b, eta_c = (samples.eta_seconds(state, t, store, now) for t in "abc")
    assert eta_a == pytest.approx(d - 10)  # no epoch finished yet: its typical time minus what it spent
    assert eta_b == pytest.approx(eta_a + d)  # waits for a, then trains
    assert eta_c == pytest.approx(d)  # its own lane is free
    assert re.fullmatch(r"sample model being prepared, ready in ~\d+ s", samples.describe(state, "b", store))
    assert samples.describe(state, "zzz", store) is None  # not planned
    _sample_state(store, {"a": "failed: boom"}, {"a": {"lane": 0, "order": 0}})
    assert samples.describe(samples.status(store), "a", store) == "the sample model could not be trained: boom"


def test_a_page_shows_its_sample_progress_then_predicts_as_soon_as_its_model_is_ready(home, trained_root,
                                                                                      registry_of):
    """While its sample model trains the page says so, with an estimate; once that model (and only that one)
    is done, the page predicts, even though another plugin's model is still training."""
    registry_of(tabular(), TinyImage())
    shutil.rmtree(home / "tab-small")  # no model yet for the tabular plugin
    store = RunStore(home)
    plan = {TAB: {"lane": 0, "order": 0}, "tiny_image": {"lane": 0, "order": 1}}
    _sample_state(store, {TAB: "training", "tiny_image": "waiting"}, plan, {TAB: {"started": time.time()}})
    at = open_page(app().run(), TAB)
    no_exceptions(at)
    banner = [str(p.proto.text) for p in at.get("progress")]
    assert any(re.search(r"Sample model being trained, ready in ~\d+ s", b) for b in banner), banner
    assert any("on its way" in str(i.value) for i in at.info)
    assert prediction(at) is None
    # The tabular sample model is done; the image one still waits.
    shutil.copytree(trained_root / "tab-small", home / "sample-tabular_classification")
    import suite_app.samples as samples

    (home / "sample-tabular_classification" / "run.json").write_text(json.dumps(
        {**json.loads((trained_root / "tab-small" / "run.json").read_text()), "name": "sample-tabular_classification"}))
    _sample_state(store, {TAB: "completed", "tiny_image": "training"}, plan)
    at.run()
    no_exceptions(at)
    assert prediction(at) is not None  # the example row, predicted by the sample model
    # the page says what the sample model was trained on, and so what to expect of it
    assert any("sample model" in str(c.value) and "iris flowers" in str(c.value) for c in at.info), texts(at.info)
    at = open_page(at, "tiny_image")
    banner = [str(p.proto.text) for p in at.get("progress")]
    assert any("ready in ~" in b for b in banner), banner
    assert samples.status(store)["alive"]


# ---- uploaded zips ---------------------------------------------------------------------------------
def _zip(members: dict[str, bytes], links=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_zip_upload_is_extracted_safely(tmp_path):
    from suite_app.training import extract_zip

    csv = b"a,b,label\n1,2,x\n3,4,y\n"
    path = extract_zip(_zip({"data/train.csv": csv}), tmp_path)
    assert path.name == "data" and (path / "train.csv").read_bytes() == csv
    assert extract_zip(_zip({"iris.csv": csv}), tmp_path / "one").read_bytes() == csv
    for bad, why in [(_zip({"../evil.txt": b"x"}), "outside"), (_zip({"/abs.txt": b"x"}), "outside"),
                     (_zip({}, links=["link"]), "symbolic link"), (b"not a zip", "not a zip"),
                     (_zip({"bomb.bin": b"\0" * 50_000_000}), "expands")]:
        with pytest.raises(DataSourceError, match=why):
            extract_zip(bad, tmp_path / "bad")
    assert not (tmp_path.parent / "evil.txt").exists()


# ---- server settings -------------------------------------------------------------------------------
def test_server_settings_are_safe_and_applied_by_suite_app(monkeypatch):
    from suite_app.settings import SERVER_SETTINGS, streamlit_flags

    toml = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{k}": v for section, opts in toml.items() for k, v in opts.items()}
    assert flat == SERVER_SETTINGS  # the file and what `suite app` passes agree
    assert flat["server.enableXsrfProtection"] is True
    assert flat["server.enableCORS"] is True
    assert flat["server.enableStaticServing"] is False
    assert flat["server.headless"] is True
    assert flat["browser.gatherUsageStats"] is False
    assert 0 < flat["server.maxUploadSize"] <= 1024
    # Streamlit itself accepts every flag and ends up with these values.
    from streamlit import config

    flags = {f[2:].split("=", 1)[0]: f.split("=", 1)[1] for f in streamlit_flags()}
    assert flags.keys() == SERVER_SETTINGS.keys()
    assert all(flags[k] == (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in SERVER_SETTINGS.items())
    config.get_config_options(force_reparse=True, options_from_flags=dict(SERVER_SETTINGS))
    try:
        for key, value in SERVER_SETTINGS.items():
            assert config.get_option(key) == value, key
    finally:
        config.get_config_options(force_reparse=True)
    # `suite app` runs streamlit with them, whatever the current directory.
    from suite import cli

    seen = []
    # Intercepted where the command is run, so the test never starts a real server.
    monkeypatch.setattr(cli, "run_process_group", lambda cmd: seen.append(cmd) or 0)
    with pytest.raises(SystemExit):
        cli.main(["app", "--port", "8765"])
    cmd = seen[0]
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and cmd[4].endswith("apps/app.py")
    assert "--server.enableXsrfProtection=true" in cmd and "--server.enableStaticServing=false" in cmd
    assert cmd[cmd.index("--server.port") + 1] == "8765"


# ---- explanation drawings --------------------------------------------------------------------------------
def test_explanation_views_draw_each_kind():
    from suite_app import charts

    image = np.zeros((6, 8, 3), np.uint8)
    heat = np.zeros((3, 4), np.float32)
    heat[0, 0] = 1.0
    overlay = charts.heatmap_overlay(image, heat)
    assert overlay.shape == (6, 8, 3) and overlay.dtype == np.uint8
    assert overlay[0, 0].tolist() != overlay[5, 7].tolist()  # the hot corner is coloured differently
    html_text = charts.token_html(["great", "<b>film</b>", "not"], [0.9, 0.1, -0.5])
    assert "&lt;b&gt;film&lt;/b&gt;" in html_text and "<b>" not in html_text  # tokens are escaped
    assert "rgba(34,160,70" in html_text and "rgba(220,50,50" in html_text
    chart = charts.attention_chart(["ich", "bin", "ich"], ["I", "am"], [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    values = chart.to_dict()["datasets"]
    rows = next(iter(values.values()))
    assert len(rows) == 6 and {r["source"] for r in rows} == {"0:ich", "1:bin", "2:ich"}
    # Word pieces join into words: a source word gets its pieces' total, an output word their mean.
    pieces = charts.attention_chart(["el", "tren", "##es"], ["the", "train", "##s"],
                                    [[0.8, 0.1, 0.1], [0.1, 0.5, 0.4], [0.1, 0.3, 0.6]]).to_dict()
    cells = {(r["target"], r["source"]): r["weight"] for r in next(iter(pieces["datasets"].values()))}
    assert set(cells) == {(t, s) for t in ("0:the", "1:trains") for s in ("0:el", "1:trenes")}
    assert cells[("1:trains", "1:trenes")] == pytest.approx((0.9 + 0.9) / 2)
    assert cells[("0:the", "1:trenes")] == pytest.approx(0.2)
    axis = pieces["encoding"]["x"]["axis"]
    assert axis["labelOverlap"] is False  # every word labelled, none hidden as overlapping
    cm = charts.confusion_chart([[3, 1], [0, 4]], ["a", "b"]).to_dict()
    assert sum(r["count"] for r in next(iter(cm["datasets"].values()))) == 8


def test_input_views_draw_a_line_over_seconds_and_a_heatmap_low_rows_at_the_bottom():
    """A plugin's input views (the speech page's waveform and spectrogram): a line chart over its x column and a
    heatmap image, low rows at the bottom, each with its caption."""
    from streamlit.testing.v1 import AppTest

    from suite_app import charts

    spec = np.zeros((40, 50), np.float32)
    spec[0, :] = 30.0  # energy in the lowest mel band only
    img = charts.spectrogram_image(spec, height=80)
    assert img.shape == (80, 50, 3) and img.dtype == np.uint8
    assert img[-1].mean() > img[0].mean()  # the bright band is drawn at the bottom

    def page():
        import numpy as np

        from suite.views import View
        from suite_app.task_page import draw_views

        t = np.arange(16000) / 16000
        draw_views([View("line", {"seconds": t, "amplitude": np.sin(200 * t)}, x="seconds", caption="1.00 s wave"),
                    View("heatmap", np.random.default_rng(0).normal(size=(40, 98)), caption="the spectrogram")])

    at = AppTest.from_function(page, default_timeout=60).run()
    no_exceptions(at)
    assert any("1.00 s wave" in str(c.value) for c in at.caption)
    assert at.get("vega_lite_chart"), "the line view should be a chart"
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs]
    assert any("spectrogram" in c for c in captions), captions


def test_a_views_x_column_must_be_in_its_data():
    from suite.views import View

    with pytest.raises(ValueError, match="x column 'seconds' is not in its data"):
        View("line", {"amplitude": [0, 1]}, x="seconds")
    with pytest.raises(ValueError, match="not one of"):
        View("pie", {})


def test_model_loads_in_different_sessions_take_turns(monkeypatch):
    """Keras deserialisation is not thread-safe: two sessions loading two models must not overlap."""
    import threading

    import suite.predictor
    from suite_app import common

    state = {"active": 0, "peak": 0}
    guard = threading.Lock()

    class SlowPredictor:
        def __init__(self, run):
            with guard:
                state["active"] += 1
                state["peak"] = max(state["peak"], state["active"])
            time.sleep(0.3)
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(suite.predictor, "Predictor", SlowPredictor)
    monkeypatch.setattr(common, "Run", lambda path: path)
    common._load_predictor.clear()
    try:
        threads = [threading.Thread(target=common._load_predictor, args=(f"/runs/model-{i}", 0.0)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        common._load_predictor.clear()
    assert state["peak"] == 1 and common.MODEL_LOADS >= 3


# ---- server log -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("installed", [False, True])
def test_a_browser_closed_mid_send_leaves_no_traceback_but_other_send_errors_are_logged(installed):
    """Streamlit's own session client, sending to a socket the browser has closed: with the app's filter
    installed nothing is logged; without it, "Error sending websocket payload" with a traceback (what every
    closed tab wrote to the server log). Any other send error is logged either way."""
    import asyncio
    import logging

    from starlette.websockets import WebSocketDisconnected
    from streamlit.web.server.starlette.starlette_websocket import StarletteSessionClient

    from suite_app import server_log

    logger = logging.getLogger(server_log.SEND_LOGGER)
    saved = list(logger.filters)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)

    class Socket:
        headers, cookies, client = {}, {}, None

        def __init__(self, error):
            self.error = error

        async def send_bytes(self, payload):
            raise self.error

    async def send_one(error):
        client = StarletteSessionClient(Socket(error))
        client._send_queue.put_nowait(b"delta")
        await asyncio.wait_for(client._sender_task, 5)

    # Pages run earlier in this process have installed it already.
    logger.filters[:] = [f for f in saved if not isinstance(f, server_log.ClosedBrowserFilter)]
    try:
        if installed:
            server_log.install()
            server_log.install()  # the entry file runs on every rerun: one filter, not many
            assert sum(isinstance(f, server_log.ClosedBrowserFilter) for f in logger.filters) == 1
        asyncio.run(send_one(WebSocketDisconnected('Cannot call "send" once a close message has been sent.')))
        closed = [r for r in records if r.exc_info]
        assert (closed == []) if installed else ("Error sending websocket payload" in closed[0].getMessage())
        records.clear()
        asyncio.run(send_one(ValueError("a real problem")))
        assert [r.exc_info[0] for r in records if r.exc_info] == [ValueError]
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = saved


# ---- plain language -------------------------------------------------------------------------------------
_INPUT_WIDGETS = ("checkbox", "toggle", "selectbox", "multiselect", "radio", "number_input", "text_input",
                  "text_area", "slider", "select_slider")


def _inputs_without_help(at) -> list[str]:
    return [f"{kind} {w.label!r}" for kind in _INPUT_WIDGETS for w in getattr(at, kind) if not (w.help or "").strip()]


def test_every_input_on_every_page_says_what_it_does_and_settings_carry_their_units(home, registry_of):
    """A field with no explanation, or a raw field name with a number and no unit (image_size 0), sends a user
    to the docs or the source. Every input widget of Home, a task page (all four tabs) and Runs has help; the
    Train form's labels are the config's readable labels with units, and each help names the CLI key."""
    registry_of(tabular())
    at = app().run()
    no_exceptions(at)
    missing = _inputs_without_help(at)
    for page in (TAB, "runs"):
        at = open_page(at, page)
        no_exceptions(at)
        missing += [f"{page}: {m}" for m in _inputs_without_help(at)]
    assert not missing, "\n".join(missing)
    at = open_page(at, TAB)
    described = {f["name"]: f for f in tabular().config_class.describe()}
    budget = at.number_input(key=f"{TAB}:cfg:time_budget_minutes")
    assert budget.label == "Time budget (minutes)"
    assert "--set time_budget_minutes=" in budget.help and described["time_budget_minutes"]["help"] in budget.help
    for name, f in described.items():
        assert f["help"], f"config field {name} has no help"
    box = at.text_area(key=f"{TAB}:text")  # a table row names its columns, in order
    assert "sepal length (cm), sepal width (cm), petal length (cm), petal width (cm)" in box.help
    # the built-in tasks' pages (no runs of theirs here: the data source and the Train form of every field)
    set_registry(None)
    at = app().run()
    for task in get_registry().tasks():
        at = open_page(at, task.name)
        no_exceptions(at)
        missing += [f"{task.name}: {m}" for m in _inputs_without_help(at)]
        labels = {w.label for w in at.number_input} | {w.label for w in at.selectbox} | {w.label for w in at.checkbox}
        assert {f["label"] for f in task.config_class.describe() if f["type"] != "list" and f["type"] != "str"} <= labels
    assert not missing, "\n".join(missing)
