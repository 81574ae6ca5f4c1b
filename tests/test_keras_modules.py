"""``Task.keras_modules``: the core imports a plugin's serializable classes right before it loads a model."""

from __future__ import annotations

import sys
import textwrap

import pytest

from suite.errors import RunError
from suite.registry import Registry, set_registry
from suite.runstore import RunStore
from suite.task import Task

LAYER_MODULE = textwrap.dedent("""
    import keras

    @keras.saving.register_keras_serializable(package="kmtest", name="Twice")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x
""")


def _task(name: str, modules: tuple[str, ...]) -> Task:
    class T(Task):
        keras_modules = modules

        def load_data(self, source, config):
            raise NotImplementedError

        def build_model(self, config, data):
            raise NotImplementedError

        def decode_input(self, raw, meta):
            raise NotImplementedError

    T.name, T.title, T.input_kind = name, name, "text"
    return T()


def test_a_keras_module_that_cannot_be_found_is_a_plugin_failure_not_a_late_crash():
    reg = Registry()
    assert reg.register(_task("typo", ("no_such_pkg.layers",))) is None
    assert "keras_modules names module(s) that cannot be found: no_such_pkg.layers" in reg.failures[0].reason
    assert reg.register(_task("fine", ("json",))) is not None


@pytest.fixture
def saved_run(tmp_path, monkeypatch):
    """A run whose model uses a layer from a module that is not imported (as in a fresh process)."""
    (tmp_path / "km_layers.py").write_text(LAYER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import keras
    import km_layers

    inp = keras.Input((3,))
    model = keras.Model(inp, km_layers.Twice()(inp))
    run = RunStore(tmp_path / "runs").create("r", "km")
    model.save(run.model_path)
    keras.saving.get_custom_objects().pop("kmtest>Twice")
    sys.modules.pop("km_layers")
    yield run
    set_registry(None)


def test_load_model_imports_the_tasks_keras_modules_first(saved_run):
    reg = Registry()
    reg.register(_task("km", ("km_layers",)))
    set_registry(reg)
    model = saved_run.load_model()
    assert [type(layer).__name__ for layer in model.layers][-1] == "Twice"


def test_an_unregistered_class_is_named_in_one_line(saved_run):
    reg = Registry()
    reg.register(_task("km", ()))
    set_registry(reg)
    with pytest.raises(RunError) as info:
        saved_run.load_model()
    assert str(info.value) == ("run 'r': its model uses the Keras class 'Twice', which no module in the 'km' "
                               "plugin's keras_modules registers")
