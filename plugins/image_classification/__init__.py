"""Built-in image classification plugin: the suite hands ``register`` in, the plugin calls it."""


def register(register):
    from suite_plugins.image_classification.task import ImageClassificationTask

    register(ImageClassificationTask())
