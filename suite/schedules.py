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


def make_learning_rate(config, steps_per_epoch: int):
    """The config's ``lr_schedule`` as a float or a schedule over ``epochs * steps_per_epoch`` steps."""
    steps_per_epoch = max(1, int(steps_per_epoch))
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "constant":
        return float(config.learning_rate)
    warmup = int(config.warmup_epochs * steps_per_epoch) if config.lr_schedule == "warmup_cosine" else 0
    return WarmupCosine(config.learning_rate, warmup, total, alpha=0.01)
