"""One strategy-aware trainer that drives every task (TF Model Garden's ``official/core`` trainer, for Keras 3).

The path of a run: pick the strategy and precision -> open or resume the run folder -> load data through the
task -> build input pipelines (cache, shuffle, batch, prefetch; sharded per worker) -> build and compile the
model inside ``strategy.scope()`` -> ``model.fit`` with backup/restore, best checkpoint, progress events and a
divergence guard -> restore the best weights -> evaluate on the test split -> save ``model.keras`` and the
model card, atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite import atomic
from suite.config import load_config_file
from suite.data import DataBundle, parse_source
from suite.errors import RunError, SuiteError
from suite.events import EventWriter
from suite.runstore import Run, RunStore, now_iso
from suite.task import Task

RESUMABLE = ("created", "running", "interrupted", "failed", "stopped")


@dataclasses.dataclass
class TrainOptions:
    """How to train, as opposed to what (the task config): stored in ``run.json``."""

    strategy: str = "auto"
    devices: int = 0  # split the CPU into N logical devices (mirrored training without GPUs)
    precision: str = "auto"
    jit_compile: bool = False
    seed: int = 0
    steps_per_execution: int = 1
    cache: str = "auto"  # auto | memory | none
    tensorboard: bool = True
    deterministic: bool = False  # enable TF op determinism (slower)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_run_name(task: str, data: str, config: dict, options: TrainOptions) -> str:
    """A name derived from what is trained, so rerunning the same command finds (and resumes) the same run."""
    key = json.dumps({"task": task, "data": data, "config": config, "seed": options.seed}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{task}-{digest}"


def _resolve_task(task: Task | str) -> Task:
    if isinstance(task, Task):
        return task
    from suite.registry import get

    return get(task)


@contextlib.contextmanager
def _run_lock(run: Run):
    """An OS-level exclusive lock on the run folder (``flock`` on ``.lock``): a second trainer of the same run
    is refused at once, two started together cannot both pass, and a dead holder's lock is released by the OS.
    The file keeps the holder's PID for the message; it is never unlinked (that would let a third process lock a
    new file while the second still holds the old one)."""
    import fcntl

    fd = os.open(run.file(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise RunError(f"run {run.name!r} is already being trained by process {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _StopSignal:
    """SIGTERM/SIGINT ask the run to stop at the next batch instead of killing it mid-save."""

    def __init__(self, monitor):
        self.monitor = monitor
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM,):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.monitor.stop_flag = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def cache_kind(meta: dict, options: TrainOptions) -> str:
    """memory | disk | none: the plugin's choice for its streamed sources (``meta["cache"]``, made with
    ``suite.streaming.choose_cache``), else ``--cache``, else memory unless the plugin says it does not fit."""
    chosen = (meta.get("cache") or {}).get("kind")
    if chosen:
        return chosen
    if options.cache in ("memory", "disk", "none"):
        return options.cache
    return "memory" if meta.get("cacheable", True) else "none"


def build_pipeline(task: Task, ds, *, batch_size: int, training: bool, config, meta: dict, count: int | None,
                   options: TrainOptions, input_context=None, shard=None, split: str = "train"):
    """The tf.data pipeline of one split: shard, cache, shuffle, batch (by the task), repeat, prefetch.

    ``shard(workers, index)`` gives this worker's share read by file (streamed sources); without it the split
    is sharded by element. A disk cache (``suite.streaming.DiskCache``) is built here on first use.
    """
    import tensorflow as tf

    workers = input_context.num_input_pipelines if input_context is not None else 1
    if workers > 1:
        ds = shard(workers, input_context.input_pipeline_id) if shard is not None else \
            ds.shard(workers, input_context.input_pipeline_id)
        if count is not None:
            count = math.ceil(count / workers)
    kind = cache_kind(meta, options)
    if kind == "memory":
        ds = ds.cache()
    elif kind == "disk":
        ds = _disk_cached(ds, meta, split, count, options.seed if training else None,
                          worker=input_context.input_pipeline_id if workers > 1 else 0)
    if training:
        buffer = max(1, min(count or 10_000, 20_000))
        if kind != "memory" and meta.get("example_bytes"):
            # Streamed examples are shuffled by file before decoding; the buffer of decoded ones stays small.
            buffer = max(1, min(buffer, int(256e6 // max(1, int(meta["example_bytes"])))))
        if count is not None:
            # repeat() then one seeded shuffle stream: a new order every epoch, and the same order under every
            # strategy (a reshuffling seed's state differs once a strategy rewrites the dataset).
            ds = ds.repeat().shuffle(buffer, seed=options.seed, reshuffle_each_iteration=False)
        else:
            ds = ds.shuffle(buffer, seed=options.seed, reshuffle_each_iteration=True)
    ds = task.batch(ds, batch_size, training=training, config=config, meta=meta)
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    opts.deterministic = bool(options.deterministic)
    return ds.with_options(opts).prefetch(tf.data.AUTOTUNE)


def _disk_cached(ds, meta: dict, split: str, count: int | None, seed: int | None, worker: int):
    from suite.streaming import DiskCache

    key = meta.get("cache_key")
    if not key:
        return ds.cache()  # the plugin gave no key for its data: a memory cache is the safe fallback
    cache = DiskCache(f"{key}-{split}-w{worker}")
    if not cache.ready:
        spec = ds.element_spec[0]
        cache.build(ds, shape=tuple(spec.shape), dtype=spec.dtype.name, capacity=int(count or 0) or 1 << 40)
    return cache.dataset(shuffle_seed=seed)


def train(
    task: Task | str,
    data: str = "sample",
    overrides: dict[str, Any] | None = None,
    *,
    config_file: str | os.PathLike | None = None,
    name: str | None = None,
    resume: str | os.PathLike | None = None,
    options: TrainOptions | None = None,
    listeners: list[Callable[[dict], None]] | None = None,
    store: RunStore | None = None,
    bundle: DataBundle | None = None,
    callbacks: list[Any] | None = None,
    distill: Any = None,
) -> Run:
    """Train ``task`` on ``data`` and return the run. Raises SuiteError subclasses for user mistakes.

    ``callbacks`` are extra Keras callbacks, run after the trainer's own (a benchmark's mid-epoch snapshots,
    a user's logging); checkpointing, budgets and stop requests stay the trainer's.

    ``resume`` continues a run folder (or name) from its last finished epoch; without it, a run whose
    derived name matches an unfinished run is resumed too, so rerunning a killed command continues it.

    ``distill`` (a :class:`suite.distill.DistillSpec`) trains the model as a student of a teacher run; it is
    stored in ``run.json``, so a resume goes on distilling.
    """
    from suite import strategy as strat

    options = options or TrainOptions()
    store = store or RunStore()
    task = _resolve_task(task)

    # Only the chief writes the real run folder; other workers write to a temporary store, removed at the end.
    tf_config = strat.read_tf_config() or {}
    chief = strat.Hardware(cluster=tf_config.get("cluster"), task_type=(tf_config.get("task") or {}).get("type"),
                           task_index=int((tf_config.get("task") or {}).get("index", 0))).is_chief
    worker_tmp = None
    if not chief:
        worker_tmp = Path(tempfile.mkdtemp(prefix="suite-worker-"))
        store = RunStore(worker_tmp)
        resume = None

    # ---- what to train (pure Python, so mistakes fail fast, before TensorFlow starts) -----------------
    resumed = False
    run = None
    if resume is not None:
        run = store.get(resume)
        if run.task_name != task.name:
            raise RunError(f"run {run.name!r} is a {run.task_name!r} run, not {task.name!r}")
        if run.status in ("completed", "diverged"):
            raise RunError(f"run {run.name!r} is {run.status}; nothing to resume")
        data = run.info.get("data", data)
        config = task.config_class.from_dict({**run.config, **(overrides or {})})
        explicit = frozenset(config.to_dict())  # a resumed run keeps the choices its plan made
        saved = run.info.get("options") or {}
        options = dataclasses.replace(options, seed=saved.get("seed", options.seed))
        resumed = True
        if distill is None and run.info.get("distill"):
            from suite.distill import DistillSpec

            distill = DistillSpec(**run.info["distill"])
    else:
        values = load_config_file(config_file) if config_file else {}
        values.update(overrides or {})
        config = task.config_class.from_dict(values)
        explicit = frozenset(values)
    source = parse_source(data)
    base = None
    if run is None:
        base = name or default_run_name(task.name, source.spec, config.to_dict(), options)
        if store.exists(base):
            existing = store.get(base)
            requested = existing.info.get("requested_config") or existing.config
            same = existing.task_name == task.name and requested == config.to_dict() and (
                existing.info.get("data") == source.spec)
            if existing.status in RESUMABLE and same:
                run, resumed = existing, True
            elif name and existing.status in RESUMABLE and not same:
                raise RunError(
                    f"run {name!r} exists with a different task, data or config; pick another --name or --resume it"
                )
            else:
                base = store.unique_name(base)

    # ---- where to train ----------------------------------------------------------------------------
    if options.devices and options.devices > 1:
        strat.split_cpu(options.devices)  # before TensorFlow starts its runtime
    hw = strat.detect_hardware()
    choice = strat.choose_strategy(options.strategy, hw)
    precision = strat.choose_precision(options.precision, hw, choice.kind)
    strategy = strat.make_strategy(choice)  # MultiWorkerMirroredStrategy must come before other TF work
    # The policy is process-wide (per thread): put it back afterwards, or a model the same process builds
    # next (another task in the app, the next test) silently inherits this run's mixed precision.
    policy_before = strat.current_precision()
    strat.set_precision(precision.policy)
    created = run is None
    try:
        if created:
            run = store.create(base, task.name, data=source.spec)
        events = EventWriter(run.events_path, listeners if chief else [])
        with _run_lock(run):
            session = _Session(task, source, options, run, strategy, choice, precision, hw, events, resumed,
                               explicit=explicit, distill=distill)
            return _train_in_folder(session, config, bundle, list(callbacks or []))
    except SuiteError as err:
        # A source or config the task refused before training began leaves no run folder behind.
        if created and run is not None and getattr(err, "before_training", False):
            with contextlib.suppress(OSError, SuiteError):
                store.delete(run)
        raise
    finally:
        strat.set_precision(policy_before)
        if worker_tmp is not None:
            shutil.rmtree(worker_tmp, ignore_errors=True)


@dataclasses.dataclass
class _Session:
    """One training session in a run folder: what it trains, where, and what it reports to."""

    task: Task
    source: Any
    options: TrainOptions
    run: Run
    strategy: Any
    choice: Any
    precision: Any
    hw: Any
    events: EventWriter
    resumed: bool
    explicit: frozenset = frozenset()
    distill: Any = None
    teacher_output_seconds: float = 0.0  # decoding the teacher's outputs is not training time

    def update(self, **changes) -> None:
        self.run.update_info(**changes)

    def say(self, text: str) -> None:
        self.events.emit("message", text=text)


@dataclasses.dataclass
class _Pipelines:
    train: Any
    val: Any
    global_batch: int
    steps_per_epoch: int | None
    input_context: Any


def _train_in_folder(s: _Session, config, bundle, extra_callbacks) -> Run:
    """The steps of a run, each below; a failure marks the run (failed, interrupted) before it propagates."""
    try:
        _start(s)
        t0 = time.perf_counter()
        config, bundle = _prepare_data(s, config, bundle)
        t0 += s.teacher_output_seconds
        pipes = _pipelines(s, config, bundle)
        model = _compiled_model(s, config, bundle, pipes)
        callbacks, monitor, best = _callbacks(s, config, bundle, pipes)
        if not _fit(s, config, model, pipes, callbacks + extra_callbacks, monitor, best, t0):
            return s.run  # stopped: the best checkpoint is kept, the run can be resumed
        return _finish(s, config, bundle, model, best, train_seconds=time.perf_counter() - t0)
    except (SuiteError, KeyboardInterrupt) as err:
        if isinstance(err, KeyboardInterrupt):
            s.update(status="interrupted", epochs_done=_epochs_done(s.run))
            s.events.emit("run_end", status="interrupted")
        elif s.run.status == "running":
            s.update(status="failed", error=str(err))
            s.events.emit("run_end", status="failed", message=str(err))
        raise
    except Exception as err:
        line = f"{type(err).__name__}: {err}".splitlines()[0]
        s.update(status="failed", error=line)
        s.events.emit("run_end", status="failed", message=line)
        raise


def _start(s: _Session) -> None:
    """Seed, then record what this session runs with in run.json and say which strategy it takes."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(s.options.seed)
    if s.options.deterministic:
        tf.config.experimental.enable_op_determinism()
    s.update(
        status="running", task=s.task.name, data=s.source.spec, options=s.options.to_dict(),
        strategy=s.choice.to_dict(), precision=s.precision.to_dict(), hardware=s.hw.describe(), pid=os.getpid(),
        error=None, started=now_iso() if not s.resumed else s.run.info.get("started", now_iso()),
        distill=s.distill.to_dict() if s.distill is not None else None,
    )
    if s.distill is not None:
        from suite.distill import describe

        s.say(f"distilling from run {s.distill.teacher_name} ({describe(s.distill)})")
    c = s.choice
    s.say(f"strategy {c.kind} over {', '.join(c.devices)} ({c.replicas} replica(s)): {c.reason}")


def _prepare_data(s: _Session, config, bundle):
    """Load the data, apply the task's plan for it, settle the precision; write config.yaml and meta.json."""
    try:
        if bundle is None:
            bundle = s.task.load_data(s.source, config)
        bundle = bundle.take_train(config.max_train_examples)
        if s.distill is not None and s.distill.kind == "sequence":
            from suite.distill import TARGETS_FILE, with_teacher_targets

            started = time.perf_counter()
            bundle = with_teacher_targets(s.task, bundle, s.distill, s.run.file(TARGETS_FILE), s.say)
            s.teacher_output_seconds = time.perf_counter() - started
            s.update(teacher_output_seconds=round(s.teacher_output_seconds, 2))
        config, bundle, plan = _apply_plan(s.task, config, bundle, s.explicit, s.run, s.resumed)
    except SuiteError as err:
        err.before_training = True  # train() removes the folder it made for this run
        raise
    for reason in plan.reasons:
        s.say(f"plan: {reason}")
    s.precision = _precision_for_plan(s.precision, plan, s.options, s.hw, s.choice)
    s.say(f"precision {s.precision.policy}: {s.precision.reason}")
    s.update(precision=s.precision.to_dict(), plan=plan.to_dict(),
             requested_config=s.run.info.get("requested_config") or config_before_plan(config, plan, s.explicit))
    atomic.write_yaml(s.run.file("config.yaml"), config.to_dict())
    atomic.write_json(s.run.file("meta.json"), dict(bundle.meta))
    return config, bundle


def _pipelines(s: _Session, config, bundle) -> _Pipelines:
    """The batched train and val pipelines; on many workers each reads its own share (InputContext), batched
    by the global batch, which Keras' experimental_distribute_dataset then splits over the worker's replicas."""
    import tensorflow as tf

    meta, replicas = bundle.meta, s.choice.replicas
    global_batch = config.batch_size * replicas
    n_train = bundle.counts.get("train")
    steps_per_epoch = math.ceil(n_train / global_batch) if n_train else None
    input_context = None
    if s.choice.kind == "multi_worker" and s.hw.workers > 1:
        input_context = tf.distribute.InputContext(
            num_input_pipelines=s.hw.workers, input_pipeline_id=s.hw.worker_id, num_replicas_in_sync=replicas)
    if meta.get("cache"):
        s.say(f"data: {meta['cache']['reason']}")
    train_ds = build_pipeline(s.task, bundle.train, batch_size=global_batch, training=True, config=config,
                              meta=meta, count=n_train, options=s.options, input_context=input_context,
                              shard=bundle.shard_train)
    val_ds = None
    if bundle.val is not None:
        val_ds = build_pipeline(s.task, bundle.val, batch_size=global_batch, training=False, config=config,
                                meta=meta, count=bundle.counts.get("val"), options=s.options, split="val")
    s.update(global_batch=global_batch, replicas=replicas, steps_per_epoch=steps_per_epoch,
             counts=bundle.counts, synthetic=bool(bundle.synthetic),
             cache={"kind": cache_kind(meta, s.options), "reason": (meta.get("cache") or {}).get("reason", "")})
    s.events.emit("run_start", task=s.task.name, run=s.run.name, resumed=s.resumed, epochs=config.epochs,
                  steps_per_epoch=steps_per_epoch, global_batch=global_batch, replicas=replicas,
                  strategy=s.choice.kind, precision=s.precision.policy)
    return _Pipelines(train_ds, val_ds, global_batch, steps_per_epoch, input_context)


def _compiled_model(s: _Session, config, bundle, pipes: _Pipelines):
    """Build and compile the task's model (a student wrapped with its frozen teacher) in the strategy's scope;
    under a distributed strategy, build it on one probe batch before fit."""
    meta = bundle.meta
    with s.strategy.scope():
        model = s.task.build_model(config, bundle)
        if s.distill is not None:
            from suite.distill import wrap

            model = wrap(model, s.distill)  # the teacher loads in the same scope, frozen
        model.compile(
            optimizer=s.task.optimizer(config, pipes.steps_per_epoch or 100),
            loss=s.task.loss(config, meta),
            metrics=s.task.metrics(config, meta),
            jit_compile=s.options.jit_compile,
            steps_per_execution=s.options.steps_per_execution,
        )
    ctx = pipes.input_context
    if ctx is not None:
        from suite.compat import patch_keras_for_multi_worker

        patch_keras_for_multi_worker()
    if s.choice.kind in ("mirrored", "multi_worker", "tpu"):
        # From an unshuffled copy: iterating the train pipeline here would shift its shuffle order.
        source = bundle.train
        if ctx is not None and bundle.shard_train is not None:  # a streamed worker reads its own files
            source = bundle.shard_train(ctx.num_input_pipelines, ctx.input_pipeline_id)
        probe = s.task.batch(source.take(pipes.global_batch), pipes.global_batch, training=False, config=config,
                             meta=meta)
        _build_before_fit(model, s.strategy, probe)
    return model


def _callbacks(s: _Session, config, bundle, pipes: _Pipelines):
    """The trainer's callbacks: backup/restore, progress and stop requests, best checkpoint, history, and the
    optional TensorBoard, early stopping, time budget and skipped-file log."""
    import keras

    from suite.callbacks import (
        AtomicBackupAndRestore,
        BestCheckpoint,
        EarlyStoppingResumable,
        RunMonitor,
        TimeBudget,
    )

    run, has_val = s.run, pipes.val is not None
    monitor = RunMonitor(s.events, steps_per_epoch=pipes.steps_per_epoch, global_batch=pipes.global_batch,
                         epochs=config.epochs, stop_file=run.file("STOP"))
    best = BestCheckpoint(run.path, s.task.monitor if has_val else "loss", s.task.monitor_mode if has_val else "min")
    callbacks: list = [
        AtomicBackupAndRestore(str(run.file("backup")), delete_checkpoint=False),
        monitor,
        best,
        keras.callbacks.CSVLogger(str(run.file("history.csv")), append=True),
    ]
    if s.options.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run.file("tensorboard")), write_graph=False))
    if config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingResumable(run.file("early_stopping.json"), monitor=best.monitor,
                                                mode=best.mode, patience=config.early_stopping_patience))
    if config.time_budget_minutes > 0:
        spent = sum(float(e.get("seconds") or 0) for e in _events(run) if e.get("event") == "epoch_end")
        steps = pipes.steps_per_epoch
        callbacks.insert(1, TimeBudget(60 * config.time_budget_minutes, spent_s=spent, events=s.events,
                                       total_steps=config.epochs * steps if steps else None))
        s.say(f"time budget {config.time_budget_minutes:g} min ({spent / 60:.1f} spent before): at most "
              f"{config.epochs} epochs, the learning rate decays over it")
    if bundle.skips is not None:
        from suite.callbacks import SkippedFiles

        callbacks.append(SkippedFiles(bundle.skips, run.file("skipped.jsonl"), bundle.counts.get("train") or 0))
    return callbacks, monitor, best


def _fit(s: _Session, config, model, pipes: _Pipelines, callbacks, monitor, best, t0: float) -> bool:
    """``model.fit``; False when a stop was requested (the best checkpoint is then kept as the run's model)."""
    from suite.callbacks import Diverged, StopRequested
    from suite.modelcard import write_model_card

    run = s.run
    run.file("STOP").unlink(missing_ok=True)
    try:
        with _StopSignal(monitor):
            model.fit(pipes.train, validation_data=pipes.val, epochs=config.epochs,
                      steps_per_epoch=pipes.steps_per_epoch, callbacks=callbacks, verbose=0, shuffle=False)
        return True
    except Diverged as err:
        msg = f"run diverged: {err}; lower the learning rate (now {config.learning_rate}) and train again"
        s.events.emit("run_end", status="diverged", message=msg)
        s.update(status="diverged", error=msg, finished=now_iso())
        raise RunError(msg) from None
    except StopRequested:
        done = _epochs_done(run)
        kept = _keep_best_so_far(run, s.task, model, best, s.events, train_seconds=time.perf_counter() - t0)
        msg = f"stopped after {done} finished epoch(s); `suite train --resume {run.name}` continues"
        if kept:
            msg += f"; the best checkpoint (epoch {best.best_epoch}) can be tried, evaluated and exported"
        s.events.emit("run_end", status="stopped", message=msg)
        s.update(status="stopped", epochs_done=done, error=None)
        if kept:
            write_model_card(run, s.task)
        return False
    except KeyboardInterrupt:
        _keep_best_so_far(run, s.task, model, best, s.events, train_seconds=time.perf_counter() - t0)
        raise
    finally:
        # An epoch cut short (time budget, stop, divergence) leaves its tf.data iterator alive in a reference
        # cycle; if the collector first meets it during interpreter shutdown, a worker thread still inside a
        # tf.numpy_function waits for the GIL forever and the process never exits (tensorflow#21277).
        gc.collect()


def _finish(s: _Session, config, bundle, model, best, *, train_seconds: float) -> Run:
    """Best weights back, the test split evaluated, then model.keras, metrics.json and the model card."""
    from suite.modelcard import write_model_card

    run = s.run
    if best.restore(model):
        s.say(f"restored the best weights ({best.monitor} from epoch {best.best_epoch})")
    model = _deployable(model)
    result: dict[str, Any] = {"best_epoch": best.best_epoch, "monitor": best.monitor, "best_value": best.best}
    if bundle.test is not None:
        s.say("evaluating on the test split")
        result["test"] = s.task.evaluate(model, bundle.test, config, bundle.meta)
        latency = _latency(s, model, bundle)
        if latency is not None:
            result["serving_latency_ms_p50"] = latency
    result["train_seconds"] = round(train_seconds, 2)
    if bundle.skips is not None and bundle.skips.count:
        bundle.skips.write(run.file("skipped.jsonl"))
        result["skipped_files"] = bundle.skips.count
        s.say(f"skipped {bundle.skips.count} unreadable file(s), listed in skipped.jsonl")
    done = _epochs_done(run)
    # Every worker saves (Keras collectives may run during save); non-chief copies go to a temp store.
    with atomic.atomic_path(run.model_path, suffix=".keras") as tmp:
        model.save(tmp)
    atomic.write_json(run.file("metrics.json"), result)
    s.update(status="completed", epochs_done=done, finished=now_iso(), train_seconds=round(train_seconds, 2))
    write_model_card(run, s.task)
    s.events.emit("run_end", status="completed", metrics=_flat_metrics(result.get("test") or {}))
    return run


def _latency(s: _Session, model, bundle) -> float | None:
    """One input's serving time, for comparing runs (a teacher and its student); advice, so never fatal."""
    from suite.evaluation import serving_latency_ms

    try:
        return serving_latency_ms(s.task, model, bundle.test, bundle.meta)
    except Exception as err:  # noqa: BLE001 - the run is complete without it
        s.say(f"serving latency not measured: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        return None


def _deployable(model):
    from suite.distill import deployable

    return deployable(model)


def _keep_best_so_far(run, task, model, best, events, *, train_seconds: float) -> bool:
    """Save a run cut short (stopped, interrupted) from its best checkpoint, so it can be tried, evaluated and
    exported like a finished one; a resume trains on from its backup and overwrites this. Never raises: the
    stop itself must not fail because the disk is full or the weights are odd."""
    if not best.weights_path.exists():
        return False
    try:
        best.restore(model)
        with atomic.atomic_path(run.model_path, suffix=".keras") as tmp:
            _deployable(model).save(tmp)
        atomic.write_json(run.file("metrics.json"), {
            "best_epoch": best.best_epoch, "monitor": best.monitor, "best_value": best.best, "partial": True,
            "train_seconds": round(train_seconds, 2)})
    except Exception as err:  # noqa: BLE001 - the stop goes on; the run keeps its resumable backup
        events.emit("message", text=f"could not save the best checkpoint as a model: {err}".splitlines()[0])
        return False
    events.emit("message", text=f"saved the best checkpoint ({best.monitor} from epoch {best.best_epoch}) as the "
                                "run's model")
    return True


def _apply_plan(task, config, bundle, explicit, run, resumed):
    """The task's plan for this data (a resumed run reuses the one it saved): config values the user left open
    and meta such as the input size."""
    from suite.budget import TrainingPlan

    saved = run.info.get("plan") if resumed else None
    plan = TrainingPlan.from_dict(saved) if saved else (task.plan(config, bundle, explicit) or TrainingPlan())
    values = {k: v for k, v in plan.values.items() if k not in explicit}
    if values:
        config = config.replace(**values)
    if plan.meta:
        bundle = dataclasses.replace(bundle, meta={**bundle.meta, **plan.meta})
    return config, bundle, dataclasses.replace(plan, values=values)


def config_before_plan(config, plan, explicit) -> dict:
    """The config as the user asked for it: the planned values back at their defaults (auto-resume compares it)."""
    defaults = type(config)().to_dict()
    return {**config.to_dict(), **{k: defaults[k] for k in plan.values if k not in explicit}}


def _precision_for_plan(precision, plan, options, hw, choice):
    from suite import strategy as strat

    if not plan.cpu_bfloat16 or options.precision != "auto":
        return precision
    chosen = strat.choose_precision("auto", hw, choice.kind, cpu_bfloat16_model=True)
    if chosen.policy != precision.policy:
        strat.set_precision(chosen.policy)
    return chosen


def _build_before_fit(model, strategy, train_ds) -> None:
    """Build from one local batch before a distributed fit (see ``compat.build_from_one_batch``)."""
    from suite.compat import build_from_one_batch

    build_from_one_batch(model, strategy, next(iter(train_ds.take(1))))


def _epochs_done(run: Run) -> int:
    """The highest epoch number that finished (events of a resumed run repeat none it kept)."""
    return max((int(e.get("epoch", 0)) for e in _events(run) if e.get("event") == "epoch_end"), default=0)


def _events(run: Run):
    from suite.events import iter_events

    return iter_events(run.events_path)


def _flat_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
