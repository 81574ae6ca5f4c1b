"""Entry point of the example plugin: the suite hands ``register`` in, the plugin calls it."""

from suite_tabular.task import TabularClassification


def register(register):
    register(TabularClassification())
