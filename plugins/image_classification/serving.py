"""One encoded PNG straight into the model: decoding inside the compiled graph instead of in Python.

For a 28x28 digit the Python decode (PIL) cost 0.3-0.4 ms next to a 1.4 ms forward call when calls alternate
with other work (caches cold), against 0.04-0.07 ms for ``tf.io.decode_png`` inside the same graph. Only files
that :func:`suite_plugins.image_classification.images.plain_png` accepts come here, so the pixels are the same.
"""

from __future__ import annotations


def png_forward(forward, channels: int):
    """``bytes -> model outputs`` for one PNG, compiled once per (predictor, channels).

    Kept on the predictor's compiled call (``forward.model`` is the model), so it goes when the predictor goes.
    """
    import tensorflow as tf

    graphs = getattr(forward, "png_graphs", None)
    if graphs is None:
        graphs = forward.png_graphs = {}
    fn = graphs.get(channels)
    if fn is None:
        model = forward.model

        def decode_and_forward(png):
            return model(tf.io.decode_png(png, channels=channels)[None], training=False)

        fn = graphs[channels] = tf.function(decode_and_forward, input_signature=[tf.TensorSpec([], tf.string)],
                                            autograph=False)
    return fn
