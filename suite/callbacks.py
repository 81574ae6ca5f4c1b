"""Keras callbacks the trainer adds to every run: progress events, divergence and stop guards, best model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from suite import atomic
from suite.events import EventWriter


class Diverged(Exception):
    """Raised inside ``fit`` so that no epoch-end hook (backup, checkpoint) saves non-finite weights."""


class StopRequested(Exception):
    """Raised inside ``fit`` when the user asked the run to stop (STOP file or SIGTERM)."""


class RunMonitor(keras.callbacks.Callback):
    """Per batch: stop on a NaN/inf or exploding loss, honour stop requests, emit throttled progress events."""

    def __init__(self, events: EventWriter, *, steps_per_epoch: int | None, global_batch: int, epochs: int,
                 stop_file: Path | None = None, explode_factor: float = 1e4, interval: float = 0.5):
        super().__init__()
        self.events = events
        self.steps = steps_per_epoch
        self.global_batch = global_batch
        self.epochs = epochs
        self.stop_file = stop_file
        self.explode_factor = explode_factor
        self.interval = interval
        self.stop_flag = False
        self.first_loss: float | None = None

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()
        self._examples = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.perf_counter()
        self._last_emit = 0.0
        self.events.emit("epoch_start", epoch=epoch + 1, epochs=self.epochs, steps=self.steps)

    def on_train_batch_end(self, batch, logs=None):
        loss = float(np.asarray((logs or {}).get("loss", 0.0)))
        if not math.isfinite(loss):
            raise Diverged(f"loss became {loss} at epoch {self._epoch + 1}, step {batch + 1}")
        if self.first_loss is None:
            self.first_loss = max(abs(loss), 1e-3)
        elif abs(loss) > self.explode_factor * self.first_loss:
            raise Diverged(
                f"loss exploded to {loss:.3g} (first batch {self.first_loss:.3g}) at epoch {self._epoch + 1}, "
                f"step {batch + 1}"
            )
        if self.stop_flag or (self.stop_file is not None and self.stop_file.exists()):
            raise StopRequested("stop requested")
        now = time.perf_counter()
        done = batch + 1
        if now - self._last_emit >= self.interval or (self.steps and done == self.steps):
            self._last_emit = now
            elapsed = now - self._epoch_start
            rate = done * self.global_batch / elapsed if elapsed > 0 else 0.0
            eta = None
            if self.steps and done:
                per_step = elapsed / done
                remaining = (self.steps - done) + self.steps * (self.epochs - self._epoch - 1)
                eta = round(per_step * remaining, 1)
            metrics = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
            self.events.emit(
                "step", epoch=self._epoch + 1, step=done, steps=self.steps, metrics=metrics,
                examples_per_sec=round(rate, 1), eta_s=eta,
            )

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._epoch_start
        metrics = {k: float(np.asarray(v)) for k, v in (logs or {}).items() if k != "learning_rate"}
        for key, value in metrics.items():
            if not math.isfinite(value) and key.endswith("loss"):
                raise Diverged(f"{key} became {value} at the end of epoch {epoch + 1}")
        lr = _current_lr(self.model)
        self.events.emit(
            "epoch_end", epoch=epoch + 1, epochs=self.epochs, metrics=metrics, seconds=round(elapsed, 3),
            examples_per_sec=round((self.steps or 0) * self.global_batch / elapsed, 1) if elapsed else None,
            learning_rate=lr,
        )


class TimeBudget(keras.callbacks.Callback):
    """Stop training once ``budget_s`` of training time (earlier attempts included) is spent.

    After every batch it also writes the spent fraction into a ``BudgetedWarmupCosine`` schedule's
    ``progress`` so the learning rate decays over the budget; the epoch in progress ends early, is validated
    and checkpointed like any other.
    """

    def __init__(self, budget_s: float, *, spent_s: float = 0.0, total_steps: int | None = None,
                 events: EventWriter | None = None):
        super().__init__()
        self.budget_s = float(budget_s)
        self.spent_before = float(spent_s)
        self.total_steps = total_steps
        self.events = events
        self.exhausted = False

    def _schedule(self):
        lr = getattr(self.model.optimizer, "_learning_rate", None)
        return lr if hasattr(lr, "progress") else None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._update(0)

    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self._start

    def _update(self, iterations: int) -> float:
        fraction = self.spent() / self.budget_s
        if self.total_steps:
            fraction = max(fraction, iterations / self.total_steps)
        schedule = self._schedule()
        if schedule is not None:
            schedule.progress.assign(min(1.0, fraction))
        return fraction

    def on_train_batch_end(self, batch, logs=None):
        self._update(int(np.asarray(self.model.optimizer.iterations)))
        if self.spent() >= self.budget_s and not self.exhausted:
            self.exhausted = True
            self.model.stop_training = True
            if self.events is not None:
                self.events.emit("message", text=f"time budget of {self.budget_s / 60:g} min spent: "
                                                 "finishing this epoch's validation and stopping")


def _current_lr(model) -> float | None:
    try:
        opt = model.optimizer
        lr = opt.learning_rate
        if callable(lr):
            lr = lr(opt.iterations)
        return float(np.asarray(lr))
    except Exception:
        return None


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's epoch backup, but each file written atomically (temp file + rename).

    Keras overwrites ``latest.weights.h5`` in place, so a full disk or a kill during that save left a truncated
    file and the next run could not resume. Here the previous epoch's backup stays whole until the new one is
    complete; a full disk raises :class:`suite.atomic.DiskFullError` (one line).
    """

    def __init__(self, *args, **kwargs):
        from suite.compat import backup_internals, require

        super().__init__(*args, **kwargs)
        require(keras.callbacks.BackupAndRestore, "_save_model", "atomic epoch backups")  # what this replaces
        backup_internals(self)

    def _save_model(self):
        from suite.compat import backup_internals, backup_position

        weights, metadata = backup_internals(self)
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(weights, suffix=".weights.h5") as tmp:
            self.model.save_weights(str(tmp), overwrite=True)
        atomic.write_json(metadata, backup_position(self))


class BestCheckpoint(keras.callbacks.Callback):
    """Keep the best weights by ``monitor``; its best-so-far value is stored so it survives a resume."""

    def __init__(self, folder: Path, monitor: str, mode: str = "max", enabled: bool = True):
        super().__init__()
        self.folder = Path(folder)
        self.monitor = monitor
        self.mode = mode
        self.enabled = enabled
        self.weights_path = self.folder / "best.weights.h5"
        self.state_path = self.folder / "best.json"

    def on_train_begin(self, logs=None):
        state = atomic.read_json(self.state_path, default=None) if self.weights_path.exists() else None
        self.best = state.get("value") if state else None
        self.best_epoch = state.get("epoch") if state else None

    def on_epoch_end(self, epoch, logs=None):
        if not self.enabled or not logs:
            return
        monitor = self.monitor if self.monitor in logs else ("val_loss" if "val_loss" in logs else "loss")
        mode = self.mode if monitor == self.monitor else "min"
        value = float(np.asarray(logs[monitor]))
        if not math.isfinite(value):
            return
        better = self.best is None or (value > self.best if mode == "max" else value < self.best)
        if better:
            with atomic.atomic_path(self.weights_path, suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.best, self.best_epoch = value, epoch + 1
            atomic.write_json(self.state_path, {"monitor": monitor, "mode": mode, "value": value, "epoch": epoch + 1})

    def restore(self, model) -> bool:
        if self.weights_path.exists():
            model.load_weights(self.weights_path)
            return True
        return False


class EarlyStoppingResumable(keras.callbacks.EarlyStopping):
    """Early stopping whose wait counter and best value survive a resume (kept in a small JSON file)."""

    def __init__(self, state_path: Path, **kwargs):
        super().__init__(**kwargs)
        self.state_path = Path(state_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = atomic.read_json(self.state_path, default=None)
        if state and state.get("best") is not None:
            self.wait = int(state["wait"])
            self.best = state["best"]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        best = self.best
        if best is not None and not math.isfinite(float(best)):
            best = None
        atomic.write_json(self.state_path, {"wait": int(self.wait), "best": None if best is None else float(best)})


class SkippedFiles(keras.callbacks.Callback):
    """Files of a streamed source that failed to decode: listed in ``skipped.jsonl`` after each epoch, and the
    run fails in one line once more than the allowed fraction of ``total`` is bad (``SkipLog.check``)."""

    def __init__(self, skips, path: Path, total: int):
        super().__init__()
        self.skips, self.path, self.total = skips, Path(path), int(total)

    def on_train_batch_end(self, batch, logs=None):
        if batch % 50 == 0:  # a source that is mostly broken fails early in the first epoch, not after it
            self.skips.check(self.total)

    def on_epoch_end(self, epoch, logs=None):
        if self.skips.count:
            self.skips.write(self.path)
        self.skips.check(self.total)
