"""Built-in machine-translation plugin: the suite hands ``register`` in, the plugin calls it."""

from plugins.translation.task import Translation


def register(register):
    register(Translation())
