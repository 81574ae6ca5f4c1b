"""The suite trainer's overhead over a plain ``model.fit`` of the same model on the same data.

For each plugin, both sides train the plugin's default model on the same examples (the shared real data: MNIST,
SST-2, FSDD, spa-eng; the built-in sample when it is absent) for the same epochs with the same global batch;
the first epoch (tracing, warm-up) is left out; runs alternate suite/plain to share the machine's noise. The
classification plugins' plain side fits in-memory arrays; speech turns off its tf.data augmentation (noise,
shift, speed) on the suite side, which a plain ``fit`` on arrays cannot have. Translation batches by length,
which arrays cannot do, so its plain side fits the task's own batching of a repeated, shuffled dataset for the
same steps per epoch: what is left is the trainer. Target: overhead <= 5%.

    BENCH_OVERHEAD_PLUGINS=sentiment,speech_commands python -m bench.run --only trainer_overhead --full
measures only those plugins and keeps the other plugins' last figures.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, load_results, machine, md_table, save_results, shared_data

COMMAND = "python -m bench.run --only trainer_overhead"
PLUGINS = ("image_classification", "sentiment", "speech_commands", "translation")
# (examples, epochs, alternating pairs), quick and full
SIZES = {
    "image_classification": {True: (2048, 2, 1), False: (20000, 4, 3)},
    "sentiment": {True: (1024, 2, 1), False: (6000, 3, 3)},
    "speech_commands": {True: (256, 2, 1), False: (2000, 3, 3)},
    "translation": {True: (512, 2, 1), False: (6000, 3, 3)},
}
OVERRIDES = {"speech_commands": {"noise_prob": 0.0, "time_shift_ms": 0.0, "speed_perturb": 0.0, "synthetic_voices": 0}}
DATA = {"image_classification": ("mnist", "mnist.npz"), "sentiment": ("sst2",), "speech_commands": ("fsdd", "recordings"),
        "translation": ("spa-eng",)}


def _bundle(task, config, n: int):
    """The first ``n`` training examples as arrays, and a bundle that feeds exactly those to the trainer."""
    import tensorflow as tf

    from suite.data import DataBundle, parse_source

    path = shared_data(*DATA[task.name])
    if task.name == "translation":  # no arrays: the first n pairs, vocabularies learned from them
        config = dataclasses.replace(config, max_train_examples=n, vocab_sample=n)
        full = task.load_data(parse_source(str(path) if path is not None else "sample"), config)
        train = full.train.take(n)
        count = sum(1 for _ in train)
        where = (f"`spa-eng/train.tsv`, the first {count} pairs" if path is not None
                 else f"built-in sample, {count} pairs")
        return DataBundle(train, None, None, dict(full.meta), counts={"train": count}), None, None, where
    if task.name == "image_classification" and path is not None:  # x_train itself, not the suite's split of it
        with np.load(path) as data:
            x, y = data["x_train"][:n][..., None], data["y_train"][:n].astype(np.int64)
        meta = dict(task.load_data(parse_source(str(path)), config).meta)
        where = f"{path.name} x_train[:{n}]"
    else:
        spec = str(path) if path is not None else "sample"
        if task.name == "speech_commands" and path is not None:  # FSDD names its files; the suite reads a manifest
            from bench.speech_commands import fsdd_files, write_manifest

            spec = str(write_manifest(fsdd_files(path), Path(tempfile.mkdtemp()) / "fsdd.csv", "standard"))
        full = task.load_data(parse_source(spec), config)
        xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in full.train.take(n)], strict=True)
        x = np.array([s.decode("utf-8") for s in xs], dtype=object) if isinstance(xs[0], bytes) else np.stack(xs)
        y, meta = np.array(ys, np.int64), dict(full.meta)
        where = (f"`{'/'.join(DATA[task.name])}`, the first {len(x)} examples of the suite's training split"
                 if path is not None else f"built-in sample, {len(x)} examples")
    ds = tf.data.Dataset.from_tensor_slices((x.astype(str) if x.dtype == object else x, y))
    return DataBundle(ds, None, None, meta, counts={"train": len(x)}), x, y, where


def measure(name: str, quick: bool) -> dict:
    import keras
    import tensorflow as tf

    from suite.events import read_events
    from suite.registry import get
    from suite.trainer import TrainOptions, train

    task = get(name)
    n, epochs, repeats = SIZES[name][quick]
    config = task.make_config({"epochs": epochs, **OVERRIDES.get(name, {})})
    bundle, x, y, where = _bundle(task, config, n)
    n = bundle.counts["train"]
    steps = int(np.ceil(n / config.batch_size))

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

        if x is None:  # the task's own batching of a repeated, shuffled stream, as a careful user would write
            ds = bundle.train.cache().repeat().shuffle(min(n, 20_000), seed=0, reshuffle_each_iteration=False)
            ds = task.batch(ds, config.batch_size, training=True, config=config, meta=bundle.meta)
            model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, steps_per_epoch=steps, verbose=0,
                      callbacks=[EpochTimer()])
        else:
            y1 = keras.utils.to_categorical(y, len(bundle.meta["class_names"]))
            xs = tf.constant(x.astype(str)) if x.dtype == object else x  # Keras takes text as a string tensor
            model.fit(xs, y1, batch_size=config.batch_size, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
        return statistics.median(steps / t for t in times[1:])

    pairs = [(suite_rate(), plain_rate()) for _ in range(repeats)]
    return {"pairs": pairs, "overhead": statistics.median(p / s for s, p in pairs) - 1.0, "data": where,
            "examples": n, "epochs": epochs, "batch_size": config.batch_size,
            "overrides": OVERRIDES.get(name, {}), "config": dataclasses.asdict(config)}


def _previous(quick: bool) -> dict:
    name = "trainer_overhead" + ("_quick" if quick else "")
    if not (RESULTS / f"{name}.json").exists():
        return {}
    old = load_results(name)
    if "pairs" in old:  # the single-plugin layout of earlier runs: the image plugin's figures
        return {"image_classification": {**old, "examples": 20000 if not quick else 4096,
                                         "epochs": old["config"]["epochs"], "batch_size": old["config"]["batch_size"],
                                         "overrides": {}}}
    return old.get("plugins", {})


def run(quick: bool = True) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    chosen = [p for p in os.environ.get("BENCH_OVERHEAD_PLUGINS", ",".join(PLUGINS)).split(",") if p]
    plugins = {k: v for k, v in _previous(quick).items() if k not in chosen}
    for name in chosen:
        plugins[name] = measure(name, quick)
    plugins = {k: plugins[k] for k in PLUGINS if k in plugins}
    save_results("trainer_overhead" + ("_quick" if quick else ""), {"quick": quick, "plugins": plugins})
    rows, medians = [], []
    for name, r in plugins.items():
        for i, (s, p) in enumerate(r["pairs"]):
            b = r["examples"] / np.ceil(r["examples"] / r["batch_size"])  # examples per step over an epoch
            rows.append([name if i == 0 else "", i + 1, f"{s:.2f}", f"{p:.2f}", f"{s * b:.0f}", f"{p * b:.0f}",
                         f"{p / s - 1:+.1%}"])
        medians.append(f"{name} **{r['overhead']:+.1%}**")
    data_lines = [f"- `{name}`: {r['data']}; {r['epochs']} epochs at batch {r['batch_size']}"
                  + (f"; suite side with `{r['overrides']}`" if r["overrides"] else "") for name, r in plugins.items()]
    return "\n".join([
        "## Trainer overhead",
        "",
        "Steps per second (median over epochs 2 and later) of the suite's trainer (`suite.trainer.train`: "
        "strategy scope, tf.data pipeline, progress events, divergence guard, backup and best checkpoints, CSV "
        "log) against a plain `model.fit` on in-memory arrays (translation: on the task's own length-bucketed "
        "batches of a repeated, shuffled dataset, the same steps per epoch), same model (each plugin's default) "
        "and examples, alternating runs. Examples/s is steps/s times the examples an epoch holds over its steps:",
        "",
        *data_lines,
        "",
        md_table(["plugin", "pair", "suite steps/s", "plain fit steps/s", "suite examples/s", "plain fit examples/s",
                  "suite overhead"], rows),
        "",
        f"**Median overhead**: {', '.join(medians)} (target: at most +5%).",
        "",
        f"Command: `{COMMAND}{' --full' if not quick else ' --quick'}` (`BENCH_OVERHEAD_PLUGINS=a,b` measures only "
        f"those and keeps the others' last figures) · machine: {machine()}",
        "",
    ])
