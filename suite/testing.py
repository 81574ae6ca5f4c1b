"""The reusable plugin test suite: every plugin, built-in or third-party, runs the same checks with one class.

    from suite.testing import PluginTestSuite

    class TestMyPlugin(PluginTestSuite):
        task_name = "my_task"
        overrides = {"epochs": 1}          # keep it small: this trains a real model on the built-in sample
        bad_inputs = [b"", b"not an image"]

It checks (as KerasHub's ``TestCase.run_task_test`` does for its models): registration through the entry
point; config defaults, validation and help on every field; the built-in sample's datasets and metadata; that the model takes raw
inputs and builds and runs under mixed_bfloat16 (as on recent GPUs and TPUs); a short training run through the suite's trainer; reloading ``model.keras`` with ``safe_mode=True``
in a fresh process, with identical outputs; prediction on the plugin's own examples; bad inputs raising ``InputError``; every export format verified
against the Keras model; and the "Use this model" code of each export run in a fresh process.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ClassVar

import numpy as np
import pytest

from suite.errors import ConfigError, InputError
from suite.outputs import TEXT, text_of


class PluginTestSuite:
    task_name: ClassVar[str] = ""
    overrides: ClassVar[dict[str, Any]] = {"epochs": 1}
    bad_inputs: ClassVar[list[Any]] = []
    export_formats: ClassVar[tuple[str, ...]] = ("keras", "saved_model", "tflite", "onnx")
    min_export_agreement: ClassVar[float] = 0.95

    # ---- fixtures -------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def task(cls):
        from suite.registry import get_registry

        reg = get_registry()
        assert cls.task_name in reg, f"{cls.task_name} not registered; failures: {reg.failures}"
        return reg.get(cls.task_name)

    @pytest.fixture(scope="class")
    @classmethod
    def suite_home(cls, tmp_path_factory):
        home = tmp_path_factory.mktemp(f"runs-{cls.task_name}")
        old = os.environ.get("SUITE_HOME")
        os.environ["SUITE_HOME"] = str(home)
        yield home
        if old is None:
            os.environ.pop("SUITE_HOME", None)
        else:
            os.environ["SUITE_HOME"] = old

    @pytest.fixture(scope="class")
    @classmethod
    def trained_run(cls, task, suite_home):
        from suite.trainer import TrainOptions, train

        return train(task, "sample", dict(cls.overrides), options=TrainOptions(tensorboard=False))

    @pytest.fixture(scope="class")
    @classmethod
    def predictor(cls, trained_run):
        from suite.predictor import Predictor

        return Predictor(trained_run)

    # ---- contract -----------------------------------------------------------------------------
    def test_registered_with_all_parts(self, task):
        assert task.name == self.task_name
        assert type(task).missing_parts() == []
        assert task.title and task.description
        # users must learn what a sample model was trained on before they trust it with their input
        assert task.sample_description, "declare sample_description: what the built-in sample is"

    def test_config_defaults_validate_and_reject_unknown_keys(self, task):
        config = task.make_config()
        config.validate()
        assert task.config_class.from_dict(config.to_dict()) == config
        with pytest.raises(ConfigError):
            task.make_config({"no_such_key_anywhere": 1})
        with pytest.raises(ConfigError):
            task.make_config({"epochs": -1})
        # the app's help on each field and `suite settings`: a bare field name sends users to the source
        silent = [f["name"] for f in task.config_class.describe() if not f["help"]]
        assert not silent, f"say what these config fields do in field_help: {', '.join(silent)}"

    def test_sample_data_has_splits_and_meta(self, task):
        from suite.data import parse_source

        config = task.make_config(dict(self.overrides))
        bundle = task.load_data(parse_source("sample"), config)
        assert bundle.train is not None
        x, y = next(iter(bundle.train))
        assert x is not None and y is not None
        if task.output_kind == "classes":
            names = bundle.meta["class_names"]
            assert len(names) >= 2 and len(set(names)) == len(names)
        assert bundle.synthetic == task.sample_synthetic

    def test_model_builds_and_runs_under_mixed_precision(self, task):
        """GPUs from compute capability 8.0 (and TPUs) train in mixed_bfloat16: a layer that only works in
        float32 (a Normalization adapting its statistics, a hand-written op mixing dtypes) fails there, far
        from the author's CPU. Build and run the model on the sample under that policy."""
        import keras

        from suite.data import parse_source

        config = task.make_config(dict(self.overrides))
        bundle = task.load_data(parse_source("sample"), config)
        before = keras.config.dtype_policy().name
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            model = task.build_model(config, bundle)
            x, _ = next(iter(bundle.train.take(2).batch(2)))
            outputs = [keras.ops.convert_to_numpy(keras.ops.cast(o, "float32"))
                       for o in keras.tree.flatten(model(x, training=False))
                       if keras.backend.standardize_dtype(o.dtype).startswith(("float", "bfloat"))]
        finally:
            keras.config.set_dtype_policy(before)
        # a model whose output is text (a translation decoded in the graph) only has to run
        assert all(np.isfinite(o).all() for o in outputs), "non-finite outputs under mixed_bfloat16"

    # ---- training and the saved model ---------------------------------------------------------------
    def test_training_completes_and_writes_run_folder(self, trained_run):
        assert trained_run.status == "completed", trained_run.info.get("error")
        for name in ("run.json", "config.yaml", "meta.json", "events.jsonl", "history.csv", "model.keras",
                     "metrics.json", "README.md"):
            assert trained_run.file(name).is_file(), name
        assert trained_run.metrics.get("test"), "no test metrics"

    def test_model_reloads_in_safe_mode_with_identical_outputs(self, trained_run, predictor, tmp_path):
        """Reloaded as `suite eval`, `predict` and the app do, in a fresh process: a custom layer that only a
        lazy import inside the plugin registers is not known there, so forgetting it in keras_modules fails
        here rather than in front of a user."""
        import subprocess
        import sys

        import keras

        examples = predictor.task.examples(predictor.meta)
        assert examples, "a plugin must offer example inputs"
        out = tmp_path / "outputs.npy"
        proc = subprocess.run([sys.executable, "-c", _FRESH_RELOAD, str(trained_run.path), str(out)],
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 0, "model.keras does not reload in a fresh process: " + (
            proc.stderr.strip().splitlines() or ["no output"])[-1]
        if predictor.task.output_kind == "classes":
            x = predictor.task.stack_inputs([predictor.decode(e.value) for e in examples[:2]])
            np.testing.assert_allclose(np.load(out), np.asarray(predictor.forward(x)), rtol=1e-4, atol=1e-5)
        model = keras.saving.load_model(trained_run.model_path, safe_mode=True, compile=False)
        assert not _has_lambda(model), "models must not contain Lambda layers"

    def test_predict_examples_gives_readable_results(self, predictor):
        examples = predictor.task.examples(predictor.meta)
        results = predictor.predict([e.value for e in examples])
        assert len(results) == len(examples)
        for r in results:
            if predictor.task.output_kind == "classes":
                assert r["label"] in predictor.meta["class_names"]
                assert 0.0 <= r["score"] <= 1.0
                total = sum(t["score"] for t in r["top"])
                assert total <= 1.0 + 1e-4
            else:
                assert isinstance(r[TEXT], str), r

    def test_bad_inputs_raise_input_error(self, predictor):
        for bad in self.bad_inputs:
            with pytest.raises(InputError):
                predictor.predict([bad])
        # and the predictor still works afterwards
        example = predictor.task.examples(predictor.meta)[0]
        assert predictor.predict([example.value])

    # ---- export ---------------------------------------------------------------------------------------
    def test_every_export_is_verified(self, trained_run):
        export = pytest.importorskip("suite.export")
        reports = export.export_run(trained_run, formats=",".join(self.export_formats), quantize="none", examples=32)
        limits = trained_run.task().export_limits() or {}
        for fmt in self.export_formats:
            rep = reports[fmt]
            if rep.get("supported") is False:
                # only a format the plugin declares it cannot carry may be missing, and it says why in one line
                assert fmt in limits, f"{fmt} failed without being in export_limits(): {rep.get('reason')}"
                assert rep["reason"] and "\n" not in rep["reason"], f"{fmt}: an unsupported export must say why"
                continue
            assert (trained_run.exports_dir / fmt / "report.json").is_file()
            ver = rep["verification"]
            if "top1_agreement" in ver:
                assert ver["top1_agreement"] >= self.min_export_agreement, (fmt, ver)
        self._check_usage_snippets(trained_run, [f for f in self.export_formats if reports[f].get("supported")])

    def _check_usage_snippets(self, run, exported):
        """The "Use this model" code of each export, run as a user would (a fresh process, nothing but the
        snippet), on the plugin's first example: it prints what the Keras model predicts."""
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        from suite.predictor import Predictor
        from suite.usage import FILE_INPUTS, snippets

        task = run.task()
        examples = task.examples(run.meta)
        if not examples:
            return
        value = examples[0].value
        folder = Path(tempfile.mkdtemp(prefix="suite-usage-"))
        if task.input_kind in FILE_INPUTS:
            given = folder / ("input.png" if task.input_kind == "image" else "input.wav")
            given.write_bytes(value if isinstance(value, bytes) else Path(value).read_bytes())
            given = str(given)
        else:
            given = str(value)
        codes = snippets(run, given)
        missing = [f for f in exported if f != "keras" and f not in codes]  # keras: the "python" snippet
        # A classifier's exports all take one array; a text-output model's portable files are its own.
        assert not missing or task.output_kind != "classes", f"verified exports without a snippet: {missing}"
        expected = Predictor(run).predict_one(Path(given).read_bytes() if task.input_kind in FILE_INPUTS else given)
        for fmt, code in codes.items():
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            assert proc.returncode == 0, (fmt, proc.stderr[-1500:])
            last = proc.stdout.strip().splitlines()[-1]
            if task.output_kind == "classes":
                label, score = last.rsplit(" ", 1)
                assert label == str(expected["label"]), (fmt, last, expected)
                assert abs(float(score) - float(expected["score"])) < 1e-2, (fmt, last, expected)
            else:
                assert (text_of(expected) or "") in last, (fmt, last, expected)


def app_page_test(task_name: str, *, timeout: float = 90):
    """The suite's app in ``streamlit.testing.v1.AppTest``, opened on ``task_name``'s page and run once, for
    testing a plugin's page (its input widgets, ``input_views``, ``page_sections``). Set ``SUITE_HOME`` to a
    store holding a run of the task first, and ``SUITE_APP_PREPARE_SAMPLES=0`` to keep the app from training
    sample models in the background::

        at = app_page_test("my_task")
        assert not at.exception
        at.text_area(key="my_task:text").set_value("1,2,3").run()
    """
    from streamlit.testing.v1 import AppTest

    from suite.compat import apptest_open_page
    from suite.paths import app_launch_spec

    at = AppTest.from_file(app_launch_spec()["entry"], default_timeout=timeout).run()
    return apptest_open_page(at, task_name)


@contextlib.contextmanager
def app_plugins(tasks, home):
    """Inside: the app sees only ``tasks`` (task instances, registered as a plugin's ``register`` would) and the
    run store at ``home``, and trains no sample models; the registry and environment are restored after::

        with app_plugins([MyTask()], tmp_path / "runs"):
            at = app_page_test("my_task")
    """
    from suite.registry import Registry, set_registry

    saved = {k: os.environ.get(k) for k in ("SUITE_HOME", "SUITE_APP_PREPARE_SAMPLES")}
    os.environ.update(SUITE_HOME=str(home), SUITE_APP_PREPARE_SAMPLES="0")
    reg = Registry()
    for task in tasks:
        assert reg.register(task) is not None, reg.failures
    set_registry(reg)
    try:
        yield reg
    finally:
        set_registry(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def predicted_label(at) -> str | None:
    """The label in the page's "Prediction: ..." heading after ``at.run()``, or None when it shows none."""
    import re

    for m in at.markdown:
        found = re.match(r"### Prediction: (.+?)\s{2}", str(m.value))
        if found:
            return found.group(1)
    return None


# The core's own load path (registry -> the plugin's keras_modules -> safe_mode load) in a new interpreter, then
# the plugin's first two examples through the reloaded model.
_FRESH_RELOAD = """
import sys
from pathlib import Path
import numpy as np
from suite.runstore import RunStore
path = Path(sys.argv[1])
run = RunStore(path.parent).get(path.name)
task, meta = run.task(), run.meta
model = run.load_model()
x = task.stack_inputs([task.decode_input(e.value, meta) for e in task.examples(meta)[:2]])
if task.output_kind == "classes":
    np.save(sys.argv[2], np.asarray(model(x, training=False)))
"""


def _has_lambda(model) -> bool:
    import keras

    def walk(layer):
        if isinstance(layer, keras.layers.Lambda):
            return True
        return any(walk(sub) for sub in getattr(layer, "_layers", []) or [])

    return walk(model)
