"""Spending a training-time budget: pick the model size and epoch count that fit it, from the data and machine.

A plugin describes its candidate models by their training cost (FLOPs per example, forward + backward); the
core turns the number of training examples, the budget and the machine's measured speed into a choice. The
rule is the one the fast-training literature follows (Li et al. 2020, "Budgeted training"; the DAWNBench and
airbench recipes): a model needs some number of passes over the data to converge, so take the *largest* model
that still gets ``target_epochs`` passes within the budget, then spend what is left on extra epochs. The choice
is a pure function of its arguments (tested in tests/test_budget.py); only the two ``measure_*`` probes touch the
machine, and the trainer stores its result with the plan so a resumed run keeps the same choice.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One model a plugin could train: the config values that select it and its training cost."""

    name: str
    values: dict[str, Any]
    train_flops: float  # per training example, forward and backward (about 3x the forward pass)
    efficiency: float = 1.0  # this model's sustained speed as a fraction of the probe's (small layers run slower)


@dataclasses.dataclass(frozen=True)
class BudgetChoice:
    candidate: Candidate
    epochs: int
    seconds_per_epoch: float
    budget_s: float
    reasons: tuple[str, ...]

    @property
    def expected_seconds(self) -> float:
        return self.epochs * self.seconds_per_epoch


def seconds_per_epoch(candidate: Candidate, n_train: int, flops_per_s: float, overhead_s: float = 0.0) -> float:
    """Estimated wall seconds of one epoch: compute at the candidate's share of the measured speed, plus a fixed
    per-epoch overhead (validation, checkpoints)."""
    return n_train * candidate.train_flops / (flops_per_s * candidate.efficiency) + overhead_s


def choose_by_budget(candidates: Sequence[Candidate], *, n_train: int, budget_s: float, flops_per_s: float,
                     target_epochs: int, max_epochs: int, min_epochs: int = 1,
                     overhead_s: float = 0.0) -> BudgetChoice:
    """The largest candidate that gets ``target_epochs`` within ``budget_s``, with as many epochs as fit.

    ``candidates`` are ordered from cheapest to costliest. When not even the cheapest gets ``target_epochs``,
    the cheapest is taken with what fits (at least ``min_epochs``; the trainer's time budget still stops it).
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    if n_train <= 0 or budget_s <= 0 or flops_per_s <= 0:
        raise ValueError("n_train, budget_s and flops_per_s must be > 0")
    target_epochs = max(min_epochs, min(target_epochs, max_epochs))
    costs = [seconds_per_epoch(c, n_train, flops_per_s, overhead_s) for c in candidates]
    fitting = [i for i, s in enumerate(costs) if s * target_epochs <= budget_s]
    index = fitting[-1] if fitting else 0
    chosen, epoch_s = candidates[index], costs[index]
    epochs = int(min(max_epochs, max(min_epochs, math.floor(budget_s / epoch_s))))
    reasons = [f"{n_train} training examples, budget {budget_s / 60:.1f} min, the model family trains at "
               f"{flops_per_s / 1e9:.0f} GFLOP/s here (measured)"]
    if fitting:
        bigger = candidates[index + 1:index + 2]
        why_not = (f"; {bigger[0].name} would get only {budget_s / costs[index + 1]:.1f}" if bigger else "")
        reasons.append(f"{chosen.name} is the largest model that gets {target_epochs} epochs in the budget "
                       f"(about {epoch_s:.0f} s each{why_not})")
    else:
        reasons.append(f"even {chosen.name}, the smallest, gets only {budget_s / epoch_s:.1f} of the "
                       f"{target_epochs} epochs it wants: the budget stops it early")
    reasons.append(f"{epochs} epochs (about {epochs * epoch_s / 60:.1f} min; the time budget ends the run in any case)")
    return BudgetChoice(chosen, epochs, epoch_s, float(budget_s), tuple(reasons))


def target_epochs_for(n_train: int, *, at_50k: int = 16, low: int = 12, high: int = 100) -> int:
    """Passes a from-scratch model needs: about ``at_50k`` on 50,000 examples, more on fewer.

    Fewer examples give fewer optimiser steps per pass; growing the passes as 1/sqrt(n) keeps the step count
    from collapsing on small data sets (a few thousand photos get 50-60 passes).
    """
    return int(min(high, max(low, round(at_50k * math.sqrt(50_000 / max(1, n_train))))))


def measure_flops_per_s(dtype: str = "float32", seconds: float = 0.25, n: int = 1024, repeats: int = 3) -> float:
    """Sustained matmul FLOP/s of this machine in ``dtype``: the best of a few short probes (a busy machine
    slows some of them; the best is the closest to what a long training run gets)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()  # warm up: the first call traces and picks kernels
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or calls < 2:
            matmul(a).numpy()
            calls += 1
        best = max(best, 2.0 * n**3 * calls / (time.perf_counter() - start))
    return best


def measure_train_flops_per_s(build, input_shape: Sequence[int], train_flops: float, *, classes: int = 10,
                              batch: int = 128, seconds: float = 1.0, policy: str | None = None) -> float:
    """Sustained training speed of a real model on this machine, in FLOP/s of its own ``train_flops``.

    ``build(inputs)`` maps a ``keras.Input`` to the features a classifier head goes on; the probe trains the
    result on random data for about ``seconds`` after two warm-up steps (tracing, kernel choice) and returns
    ``train_flops * examples / second``. A matmul probe misjudges convolutions by a factor that depends on the CPU
    and precision (measured 1.8x on bf16 convolutions here: docs/BENCHMARKS.md, "Photos of varying size"), which
    made the plan leave a quarter of its budget unused; timing the model family itself removes that guess.
    ``policy`` is the dtype policy the run will train in (None: the current one); the global policy is restored.
    """
    import keras
    import numpy as np

    before = keras.config.dtype_policy().name
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        inputs = keras.Input(shape=tuple(input_shape))
        outputs = keras.layers.Dense(classes, dtype="float32")(build(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (batch, *input_shape)).astype(np.float32)
        y = rng.integers(0, classes, batch)
        for _ in range(2):
            model.train_on_batch(x, y)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or steps < 2:
            model.train_on_batch(x, y)
            steps += 1
        return train_flops * batch * steps / (time.perf_counter() - start)
    finally:
        keras.config.set_dtype_policy(before)


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What a task's ``plan`` hook decides once the data are loaded (see ``Task.plan``).

    ``values`` fill config fields the user did not set; ``meta`` is merged into the run's meta (input size,
    augmentation); ``reasons`` are printed at the start of the run, like the strategy choice;
    ``cpu_bfloat16`` says the chosen model runs faster in mixed bfloat16 on CPUs with native bfloat16.
    """

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    cpu_bfloat16: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "meta": dict(self.meta), "reasons": list(self.reasons),
                "cpu_bfloat16": self.cpu_bfloat16}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingPlan:
        return cls(dict(data.get("values") or {}), dict(data.get("meta") or {}), tuple(data.get("reasons") or ()),
                   bool(data.get("cpu_bfloat16")))
