"""The suite trainer's overhead over a plain ``model.fit`` of the same model on the same in-memory data.

Both sides train the image plugin's default model (MNIST from the shared data; the built-in sample when that
is absent) for the same epochs with the same global batch; the first epoch (tracing, warm-up) is left out;
runs alternate suite/plain to share the machine's noise. Target: overhead <= 5%.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np

from bench.common import machine, md_table, save_results, shared_data

COMMAND = "python -m bench.run --only trainer_overhead"


def _bundle(task, config, n: int):
    import tensorflow as tf

    from suite.data import DataBundle, parse_source

    npz = shared_data("mnist", "mnist.npz")
    if npz is not None:
        with np.load(npz) as data:
            x, y = data["x_train"][:n], data["y_train"][:n].astype(np.int64)
        x = x[..., None]
        meta = dict(task.load_data(parse_source(str(npz)), config).meta)
        where = f"{npz.name} x_train[:{n}]"
    else:
        full = task.load_data(parse_source("sample"), config)
        xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in full.train.take(n)], strict=True)
        x, y, meta = np.stack(xs), np.array(ys, np.int64), dict(full.meta)
        where = f"built-in sample, {len(x)} images"
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return DataBundle(ds, None, None, meta, counts={"train": len(x)}), x, y, where


def run(quick: bool = True) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from suite.events import read_events
    from suite.registry import get
    from suite.trainer import TrainOptions, train

    task = get("image_classification")
    n, epochs, repeats = (4096, 3, 2) if quick else (20000, 4, 3)
    config = task.make_config({"epochs": epochs})
    bundle, x, y, where = _bundle(task, config, n)
    steps = int(np.ceil(len(x) / config.batch_size))

    def suite_rate() -> float:
        with tempfile.TemporaryDirectory() as home:
            os.environ["SUITE_HOME"] = home
            run_ = train(task, "sample", config.to_dict(), bundle=bundle, options=TrainOptions(tensorboard=False))
            ends = [e for e in read_events(run_.events_path) if e["event"] == "epoch_end"][1:]
            return statistics.median(steps / e["seconds"] for e in ends)

    def plain_rate() -> float:
        keras.utils.set_random_seed(0)
        model = task.build_model(config, bundle)
        model.compile(optimizer=task.optimizer(config, steps), loss=task.loss(config, bundle.meta),
                      metrics=task.metrics(config, bundle.meta))
        times = []

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t)

        y1 = keras.utils.to_categorical(y, len(bundle.meta["class_names"]))
        model.fit(x, y1, batch_size=config.batch_size, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
        return statistics.median(steps / t for t in times[1:])

    pairs = []
    for _ in range(repeats):
        pairs.append((suite_rate(), plain_rate()))
    ratios = [p[1] / p[0] for p in pairs]
    overhead = statistics.median(ratios) - 1.0
    save_results("trainer_overhead", {"pairs": pairs, "overhead": overhead, "data": where,
                                      "config": dataclasses.asdict(config), "quick": quick})
    rows = [[i + 1, f"{s:.2f}", f"{p:.2f}", f"{p / s - 1:+.1%}"] for i, (s, p) in enumerate(pairs)]
    return "\n".join([
        "## Trainer overhead",
        "",
        f"Steps per second (median over epochs 2..{epochs}, batch {config.batch_size}) of the suite's trainer "
        f"(`suite.trainer.train`: strategy scope, tf.data pipeline, progress events, divergence guard, backup "
        f"and best checkpoints, CSV log) against a plain `model.fit` on NumPy arrays, same model "
        f"(`image_classification` default) and data ({where}), alternating runs.",
        "",
        md_table(["pair", "suite steps/s", "plain fit steps/s", "suite overhead"], rows),
        "",
        f"**Median overhead: {overhead:+.1%}** (target: at most +5%).",
        "",
        f"Command: `{COMMAND}{' --full' if not quick else ' --quick'}` · machine: {machine()}",
        "",
    ])
