"""Built-in machine-translation plugin: the suite hands ``register`` in, the plugin calls it."""


def register(register):
    # Importing the model modules registers the serialisable model, loss and metric classes: reloading a
    # ``model.keras`` in safe mode in a fresh process (``suite predict``, the app) needs them.
    from plugins.translation import model, pretrained  # noqa: F401
    from plugins.translation.task import Translation

    register(Translation())
