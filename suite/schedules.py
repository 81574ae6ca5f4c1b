"""Learning-rate schedules shared by every task (serialisable Keras schedules only)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="suite")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to ``alpha * peak``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, alpha: float = 0.0):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.alpha = float(alpha)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(1.0, float(self.warmup_steps))
        progress = (step - self.warmup_steps) / float(self.total_steps - self.warmup_steps)
        progress = keras.ops.clip(progress, 0.0, 1.0)
        cosine = self.peak * (self.alpha + (1 - self.alpha) * 0.5 * (1.0 + keras.ops.cos(3.141592653589793 * progress)))
        return keras.ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="suite")
class BudgetedWarmupCosine(WarmupCosine):
    """Warm-up over steps, then cosine decay over the *fraction of a time budget spent*.

    A run told "train for 60 minutes" cannot know its step count in advance; the ``TimeBudget`` callback writes
    the spent fraction (or the fraction of ``total_steps`` done, whichever is larger) into ``progress`` after
    every batch, so the rate reaches its floor as the budget runs out on any machine (Li et al. 2020,
    "Budgeted training").
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, alpha: float = 0.0):
        super().__init__(peak, warmup_steps, total_steps, alpha)
        import tensorflow as tf

        self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="budget_progress",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = keras.ops.minimum(1.0, (step + 1.0) / max(1.0, float(self.warmup_steps)))
        progress = keras.ops.clip(keras.ops.cast(self.progress, "float32"), 0.0, 1.0)
        cosine = self.alpha + (1 - self.alpha) * 0.5 * (1.0 + keras.ops.cos(3.141592653589793 * progress))
        return self.peak * warm * cosine


def make_learning_rate(config, steps_per_epoch: int):
    """The config's ``lr_schedule`` as a float or a schedule over ``epochs * steps_per_epoch`` steps.

    With ``time_budget_minutes`` the cosine runs over the budget instead (``BudgetedWarmupCosine``).
    """
    steps_per_epoch = max(1, int(steps_per_epoch))
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "constant":
        return float(config.learning_rate)
    warmup = int(config.warmup_epochs * steps_per_epoch) if config.lr_schedule == "warmup_cosine" else 0
    if getattr(config, "time_budget_minutes", 0) > 0:
        return BudgetedWarmupCosine(config.learning_rate, warmup, total, alpha=0.01)
    return WarmupCosine(config.learning_rate, warmup, total, alpha=0.01)
