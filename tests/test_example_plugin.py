"""The example third-party plugin, found through its entry point, passes the shared plugin test suite."""

from suite.testing import PluginTestSuite


class TestTabularExamplePlugin(PluginTestSuite):
    task_name = "tabular_classification"
    overrides = {"epochs": 3}
    bad_inputs = ["", "1,2", "a,b,c,d", b"\xff\xfe", "nan,1,2,3"]
