"""The suite's shared plugin test suite, run against this plugin with one class."""

from suite.testing import PluginTestSuite


class TestTabularPlugin(PluginTestSuite):
    task_name = "tabular_classification"
    overrides = {"epochs": 3}
    bad_inputs = ["", "1,2", "a,b,c,d", b"\xff\xfe"]
