"""Keras Task Suite: a plugin registry of Keras 3 task models with one trainer, run store and exporter.

The public API most users need::

    from suite import registry, train, load_run
    task = registry.get("image_classification")
    run = train("image_classification", data="sample", overrides={"epochs": 2})
    print(run.predict(["digit.png"]))
"""

from __future__ import annotations

import os

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from suite.errors import DataSourceError, InputError, SuiteError  # noqa: E402

__all__ = ["SuiteError", "InputError", "DataSourceError", "__version__", "train", "load_run"]


def train(*args, **kwargs):
    """Train a task; see :func:`suite.trainer.train`."""
    from suite.trainer import train as _train

    return _train(*args, **kwargs)


def load_run(ref):
    """Open a run folder or run name; see :class:`suite.runstore.Run`."""
    from suite.runstore import RunStore

    return RunStore().get(ref)
