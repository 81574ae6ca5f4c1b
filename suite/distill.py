"""Knowledge distillation for any classification plugin: a small student learns a trained teacher's soft outputs.

`suite distill TEACHER_RUN [--student NAME] [--set model=... --set temperature=T --set alpha=A]` trains an
ordinary run of the teacher's task on the teacher's data (same source, seed and split), under the same trainer
(strategies, resume, events, time budget, best checkpoint). The loss is Hinton et al. (2015):

    alpha * hard_loss(labels, student) + (1 - alpha) * T^2 * KL(softmax(log p_teacher / T) || softmax(log p_student / T))

The teacher runs on each batch inside the train step (frozen, inference mode), so augmentation reaches both
models alike. Only the student is saved as ``model.keras``: evaluate, predict, export and the app use it
unchanged, and its model card names the teacher. A plugin declares good students in ``Task.distill_students``
(``{"small": {"model": "cnn_small"}}``); ``--set`` overrides any config field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import keras

from suite.errors import ConfigError, RunError

DEFAULT_TEMPERATURE = 4.0  # Hinton et al. use 1-20; 4 is the common choice for few- to 100-class image tasks
DEFAULT_ALPHA = 0.1  # weight of the hard labels; the rest goes to the teacher's soft targets (as keras.io's recipe)


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    teacher: str  # the teacher run's folder
    teacher_name: str
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self):
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def soft_target_loss(teacher_probs, student_probs, temperature: float):
    """T^2 * KL between the temperature-softened distributions, per example. Models here output
    probabilities, so log-probabilities stand in for logits (softmax(log p / T) is the same softening)."""
    from keras import ops

    eps = 1e-7
    t = float(temperature)
    teacher_soft = ops.softmax(ops.log(ops.clip(ops.cast(teacher_probs, "float32"), eps, 1.0)) / t, axis=-1)
    student_log = ops.log_softmax(ops.log(ops.clip(ops.cast(student_probs, "float32"), eps, 1.0)) / t, axis=-1)
    kl = ops.sum(teacher_soft * (ops.log(ops.clip(teacher_soft, eps, 1.0)) - student_log), axis=-1)
    return kl * (t * t)


class Distiller(keras.Model):
    """The student, trained with the teacher's soft targets added to its compiled (hard-label) loss.

    Used only while training; never saved as a model (its checkpoints are weights files), so it needs no
    serialisation of its own.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, temperature: float, alpha: float, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        # Both parts are built functional models; checkpoint callbacks need the wrapper marked built too.
        self.built = bool(student.built and teacher.built)

    def call(self, x, training=False):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from keras import ops

        hard = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if not training:  # validation reports the student's own loss, comparable with a run without teacher
            return hard
        teacher_probs = ops.stop_gradient(self.teacher(x, training=False))
        soft = ops.mean(soft_target_loss(teacher_probs, y_pred, self.temperature))
        return self.alpha * hard + (1.0 - self.alpha) * soft


def deployable(model):
    """The model to evaluate and save: the student of a Distiller, else the model itself."""
    return model.student if isinstance(model, Distiller) else model


def wrap(student, spec: DistillSpec):
    """Inside the strategy scope: load the teacher (safe_mode) and wrap the student."""
    from suite.runstore import Run

    teacher = Run(spec.teacher).load_model()
    return Distiller(student, teacher, spec.temperature, spec.alpha, name="distiller")


def student_config(teacher_run, task, student: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The teacher's config (so the data, seed and split are the same), the plugin's named student, then
    the user's ``--set`` values."""
    config = dict(teacher_run.config)
    students = dict(getattr(task, "distill_students", {}) or {})
    if student is not None:
        if student not in students:
            known = ", ".join(students) or "none declared; use --set model=..."
            raise ConfigError(f"unknown student {student!r} for {task.name}; choose from: {known}")
        config.update(students[student])
    elif students:
        config.update(next(iter(students.values())))
    config.update(overrides)
    return config


def distill(teacher_ref, overrides: dict[str, Any] | None = None, *, student: str | None = None,
            name: str | None = None, store=None, options=None, listeners=None, callbacks=None):
    """Train a student run of the teacher's task on the teacher's data; returns the student's Run."""
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    store = store or RunStore()
    teacher = store.get(teacher_ref)
    task = teacher.task()
    if task.output_kind != "classes":
        raise RunError(f"run {teacher.name!r} is a {task.name} run: distillation here is for classifiers "
                       "(text-output students: see docs/DISTILL.md)")
    if not teacher.has_model():
        raise RunError(f"run {teacher.name!r} has no model.keras to teach with (status: {teacher.status})")
    overrides = dict(overrides or {})
    spec = DistillSpec(str(teacher.path.resolve()), teacher.name,
                       float(overrides.pop("temperature", DEFAULT_TEMPERATURE)),
                       float(overrides.pop("alpha", DEFAULT_ALPHA)))
    config = student_config(teacher, task, student, overrides)
    options = options or TrainOptions(seed=int((teacher.info.get("options") or {}).get("seed", 0)))
    if name is None:
        digest = hashlib.sha1(json.dumps([config, spec.to_dict()], sort_keys=True, default=str).encode())
        name = f"{teacher.name}-student-{digest.hexdigest()[:6]}"
    return train(task, teacher.info.get("data", "sample"), config, name=name, store=store, options=options,
                 listeners=listeners, callbacks=callbacks, distill=spec)
