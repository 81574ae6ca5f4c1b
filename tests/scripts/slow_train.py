"""Train a deliberately slow variant of the example tabular task (for kill-and-resume and divergence tests).

Usage: python slow_train.py SUITE_HOME [key=value ...]. Each batch sleeps ``SLOW_MS`` milliseconds in the
input pipeline, so a test can kill the process in the middle of a chosen epoch.
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

from suite.config import parse_overrides
from suite.trainer import TrainOptions, train
from suite_tabular.task import TabularClassification


class SlowTabular(TabularClassification):
    name = "tabular_classification"

    def batch(self, ds, batch_size, *, training, config, meta):
        ds = super().batch(ds, batch_size, training=training, config=config, meta=meta)
        delay = float(os.environ.get("SLOW_MS", "0")) / 1000.0

        def sleep(x):
            import time

            time.sleep(delay)
            return x

        if not training or delay <= 0:
            return ds
        def slow(x, y):
            out = tf.numpy_function(sleep, [x], tf.float32, stateful=True)
            out.set_shape(x.shape)
            return out, y

        return ds.map(slow)

    def optimizer(self, config, steps_per_epoch):
        if os.environ.get("PLAIN_SGD") == "1":  # no clipping: an absurd learning rate really diverges
            return keras.optimizers.SGD(learning_rate=config.learning_rate)
        return super().optimizer(config, steps_per_epoch)


if __name__ == "__main__":
    os.environ["SUITE_HOME"] = sys.argv[1]
    overrides = {"batch_size": 8, "epochs": 3, **parse_overrides(sys.argv[2:])}
    np.random.seed(0)
    run = train(SlowTabular(), "sample", overrides, options=TrainOptions(tensorboard=False))
    print("RUN", run.name, run.status)
