"""Built-in machine-translation plugin: the suite hands ``register`` in, the plugin calls it."""


def register(register):
    from suite_plugins.translation.task import Translation

    register(Translation())
