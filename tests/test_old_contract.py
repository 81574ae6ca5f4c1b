"""A plugin written against contract 0.1 still loads and works: its text results under the old ``translation``
key read in the predictor, the CLI and the app; its custom ``page`` callable still replaces the generic page;
a hook the core no longer calls (``predict_encoded``) is named by ``suite plugins`` instead of silently ignored."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from suite.errors import DataSourceError
from suite.outputs import text_of
from suite.runstore import RunStore
from suite.task import Example, Task
from suite.testing import app_page_test, app_plugins

pytestmark = pytest.mark.xdist_group("app")
WIDTH = 8


class OldShout(Task):
    """Contract 0.1's way: results as ``{"translation": ...}``, an in-graph ``predict_encoded`` fast path."""

    name = "old_shout"
    title = "Old shout"
    description = "A test task from contract 0.1: says a word backwards in capitals."
    input_kind = "text"
    output_kind = "text"
    sample_description = "no sample: a hand-made model"

    def load_data(self, source, config):
        raise DataSourceError("old_shout has no data")

    def build_model(self, config, data):
        raise NotImplementedError

    def decode_input(self, raw, meta):
        text = (raw.decode() if isinstance(raw, bytes) else str(raw))[:WIDTH]
        return np.asarray([ord(c) for c in text] + [0] * (WIDTH - len(text)), np.float32)

    def stack_inputs(self, inputs):
        return np.stack(inputs)

    def predict_encoded(self, forward, raw, meta):  # retired in 0.2: never called
        raise AssertionError("the core called a retired hook")

    def postprocess(self, outputs, meta, top_k=5):
        return [{"translation": "".join(chr(int(v)) for v in row if v > 0)[::-1].upper()}
                for row in np.asarray(outputs)]

    def examples(self, meta):
        return [Example("a word", "hola")]


class OldPage(OldShout):
    """Contract 0.1's ``page``: a callable that draws the whole page itself."""

    name = "old_page"
    title = "Old page"

    @staticmethod
    def page(task):
        import streamlit as st

        st.markdown(f"custom page of {task.name}")


def _run(root, task_name: str) -> str:
    import keras

    inputs = keras.Input((WIDTH,), name="codes")
    model = keras.Model(inputs, keras.layers.Identity(name="same")(inputs))
    run = RunStore(root).create(f"{task_name}-run", task_name, data="sample")
    model.save(run.model_path)
    (run.path / "meta.json").write_text(json.dumps({"width": WIDTH}))
    run.update_info(status="completed")
    return run.name


@pytest.fixture()
def old_plugins(tmp_path):
    with app_plugins([OldShout(), OldPage()], tmp_path / "runs"):
        yield tmp_path / "runs"


def test_an_old_text_result_reads_in_the_predictor_and_the_cli(old_plugins):
    from suite.cli import cli
    from suite.predictor import Predictor

    name = _run(old_plugins, "old_shout")
    result = Predictor(RunStore(old_plugins).get(name)).predict(["hola"])[0]
    assert text_of(result) == "ALOH"
    assert not any("no output" in n for n in result["notices"])  # the old key is not taken for an empty answer
    out = CliRunner().invoke(cli, ["predict", name, "hola"])
    assert out.exit_code == 0, out.output
    assert "hola\tALOH" in out.output


def test_suite_plugins_names_the_hook_an_old_plugin_can_drop(old_plugins):
    from suite.cli import cli

    assert [line.split(":")[0] for line in OldShout.retired_parts()] == ["predict_encoded"]
    assert Task.retired_parts() == []  # the contract's own classes define nothing retired
    out = CliRunner().invoke(cli, ["plugins"])
    assert out.exit_code == 0, out.output
    assert "note: defines predict_encoded: no longer called since 0.2" in out.output
    listed = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    assert {r["name"]: bool(r["retired"]) for r in listed["plugins"]} == {"old_shout": True, "old_page": True}


def test_an_old_plugin_shows_its_text_answer_and_its_own_page_in_the_app(old_plugins):
    _run(old_plugins, "old_shout")
    at = app_page_test("old_shout")
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "ALOH" for s in at.success), [s.value for s in at.success]  # the example, on arrival
    custom = app_page_test("old_page")
    assert not custom.exception, [e.value for e in custom.exception]
    assert any(m.value == "custom page of old_page" for m in custom.markdown)
