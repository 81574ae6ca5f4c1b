"""Built-in sentiment analysis plugin: the suite hands ``register`` in, the plugin calls it."""


def register(register):
    from suite_plugins.sentiment.task import SentimentTask

    register(SentimentTask())
