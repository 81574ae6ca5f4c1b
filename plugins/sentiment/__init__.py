"""Built-in sentiment analysis plugin: the suite hands ``register`` in, the plugin calls it."""


def register(register):
    # Importing the task module also registers the plugin's serialisable text layers, which reloading a
    # ``model.keras`` in safe mode needs.
    from plugins.sentiment.task import SentimentTask

    register(SentimentTask())
