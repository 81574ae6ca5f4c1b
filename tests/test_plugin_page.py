"""A plugin of a new input kind gets a proper page from declared hooks alone, with nothing imported from the
app: a signal (comma-separated samples) typed or uploaded as CSV, drawn as a line under the prediction, and
a section of its own under the generic Evaluate tab. Tested as a plugin author would, with
``suite.testing.app_page_test``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from suite.errors import DataSourceError, InputError
from suite.runstore import RunStore
from suite.task import ClassificationTask, Example
from suite.testing import app_page_test, app_plugins, predicted_label
from suite.views import View

pytestmark = pytest.mark.xdist_group("app")
N = 8


class Signals(ClassificationTask):
    name = "signals"
    title = "Signals"
    description = "A test task: is a signal rising or falling?"
    input_kind = "table"
    upload_types = ("csv",)
    sample_description = "no sample: a hand-made model"

    def load_data(self, source, config):
        raise DataSourceError("signals has no data")

    def build_inputs(self, config, meta):
        raise NotImplementedError

    def build_backbone(self, config, meta):
        raise NotImplementedError

    def decode_input(self, raw, meta):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            values = [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
        except ValueError:
            raise InputError("a signal is numbers separated by commas or new lines") from None
        if len(values) != N:
            raise InputError(f"a signal has {N} samples, this one has {len(values)}")
        return np.asarray(values, np.float32)

    def examples(self, meta):
        return [Example("rising ramp", ",".join(str(v) for v in range(N)), expected="rising")]

    def input_views(self, x, meta):
        return [View("line", {"step": np.arange(x.size), "value": x}, x="step", caption="the signal as given")]

    def page_sections(self):
        def evaluate_section(ui, run):
            ui.markdown(f"**Signal checks** for `{run.name}`: {len(run.meta['class_names'])} classes")

        return {"Evaluate": evaluate_section}


def _signal_run(root) -> None:
    """A completed run of a hand-made model: the slope's sign decides rising against falling."""
    import keras

    inputs = keras.Input((N,), name="signal")
    logits = keras.layers.Dense(2, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))
    ramp = (np.arange(N, dtype=np.float32) - (N - 1) / 2)[:, None]
    model.get_layer("logits").set_weights([np.concatenate([ramp, -ramp], axis=1), np.zeros(2, np.float32)])
    run = RunStore(root).create("signals-run", "signals", data="sample")
    model.save(run.model_path)
    (run.path / "meta.json").write_text(json.dumps({"class_names": ["rising", "falling"]}))
    run.update_info(status="completed")


@pytest.fixture()
def signal_page(tmp_path):
    with app_plugins([Signals()], tmp_path / "runs"):
        _signal_run(tmp_path / "runs")
        yield app_page_test("signals")




def test_a_signal_plugin_gets_a_page_with_its_plot_upload_and_section(signal_page):
    at = signal_page
    assert not at.exception, [e.value for e in at.exception]
    assert predicted_label(at) == "rising"  # the example, predicted on arrival
    assert any(c.value == "the signal as given" for c in at.caption)  # its input view, under the result
    assert at.get("vega_lite_chart")
    assert any("**Signal checks** for `signals-run`: 2 classes" in str(m.value) for m in at.markdown)
    # A CSV file of the signal fills the box and is predicted.
    at.file_uploader(key="signals:text_upload").upload("falling.csv", b"7\n6\n5\n4\n3\n2\n1\n0\n", "text/csv").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert predicted_label(at) == "falling"
    # A bad file is one red line, and the page still works.
    at.file_uploader(key="signals:text_upload").clear().upload("short.csv", b"1,2,3", "text/csv").run()
    assert any("has 8 samples, this one has 3" in str(e.value) for e in at.error)
    at.text_area(key="signals:text").set_value("0,1,2,3,4,5,6,9").run()
    assert predicted_label(at) == "rising" and not at.error
