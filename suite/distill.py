"""Knowledge distillation for any classification plugin: a small student learns a trained teacher's soft outputs.

`suite distill TEACHER_RUN [--student NAME] [--set model=... --set temperature=T --set alpha=A]` trains an
ordinary run of the teacher's task on the teacher's data (same source, seed and split), under the same trainer
(strategies, resume, events, time budget, best checkpoint). The loss is Hinton et al. (2015):

    alpha * hard_loss(labels, student) + (1 - alpha) * T^2 * KL(softmax(log p_teacher / T) || softmax(log p_student / T))

The teacher runs on each batch inside the train step (frozen, inference mode), so augmentation reaches both
models alike. Only the student is saved as ``model.keras``: evaluate, predict, export and the app use it
unchanged, and its model card names the teacher. A plugin declares good students in ``Task.distill_students``
(``{"small": {"model": "cnn_small"}}``); ``--set`` overrides any config field.

Text-output tasks (translation) distil at the sequence level (Kim and Rush 2016): the teacher decodes every
training source once, as it serves (greedy or its own beam size), into ``teacher_outputs.jsonl`` in the
student's run folder, written in chunks so a killed run resumes where it stopped; the student then trains with
its ordinary loss on (source, teacher output) pairs. Validation and test keep the real references, so the
student's scores compare with a student trained without a teacher. The plugin writes nothing for it: the
``Task.distill_sources`` and ``Task.with_train_targets`` defaults read and rebuild (source, target) pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import keras

from suite.errors import ConfigError, RunError

DEFAULT_TEMPERATURE = 4.0  # Hinton et al. use 1-20; 4 is the common choice for few- to 100-class image tasks
DEFAULT_ALPHA = 0.1  # weight of the hard labels; the rest goes to the teacher's soft targets (as keras.io's recipe)
SOFT, SEQUENCE = "soft", "sequence"  # soft targets for classifiers; the teacher's decoded outputs for text tasks
TARGETS_FILE = "teacher_outputs.jsonl"
DECODE_BATCH = 64  # teacher sources per predictor call, and per chunk written to TARGETS_FILE


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    teacher: str  # the teacher run's folder
    teacher_name: str
    temperature: float = DEFAULT_TEMPERATURE
    alpha: float = DEFAULT_ALPHA
    kind: str = SOFT

    def __post_init__(self):
        if self.kind not in (SOFT, SEQUENCE):
            raise ConfigError(f"distillation kind must be {SOFT!r} or {SEQUENCE!r}, got {self.kind!r}")
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


def describe(spec: DistillSpec) -> str:
    """One line on how the student learns from its teacher (the run's log and its model card)."""
    if spec.kind == SEQUENCE:
        return f"sequence-level, on run {spec.teacher_name}'s decoded outputs for the training sources"
    return f"temperature {spec.temperature:g}, alpha {spec.alpha:g} on the hard labels"


def _source_key(source) -> str:
    return hashlib.sha1(str(source).encode("utf-8", "replace")).hexdigest()[:12]


def read_teacher_outputs(path, sources) -> list[str]:
    """The cached teacher outputs that still match ``sources`` from the start, in order. A torn last line (a
    kill mid-write) or a source that changed ends the usable part; the caller rewrites the rest."""
    done: list[str] = []
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        for line, source in zip(f, sources, strict=False):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith("\n") or row.get("key") != _source_key(source):
                break
            done.append(str(row["text"]))
    return done


def teacher_outputs(spec: DistillSpec, sources: list, path, say: Callable[[str], None],
                    batch: int = DECODE_BATCH) -> list[str]:
    """The teacher's output for every source: the cached ones, then the rest decoded in chunks, each appended to
    ``path`` and flushed to disk before the next (a resumed run decodes only what is missing)."""
    from suite.outputs import text_of
    from suite.predictor import Predictor
    from suite.runstore import Run

    done = read_teacher_outputs(path, sources)
    if len(done) == len(sources):
        say(f"teacher outputs: all {len(sources)} read from {os.path.basename(path)}")
        return done
    rows = [json.dumps({"key": _source_key(src), "text": text}) + "\n" for src, text in zip(sources, done, strict=False)]
    with open(path, "w", encoding="utf-8") as f:  # the matching part, then the rest as it is decoded
        f.writelines(rows)
        f.flush()
        predictor = Predictor(Run(spec.teacher))
        say(f"teacher outputs: decoding {len(sources) - len(done)} training sources with run {spec.teacher_name}"
            + (f" ({len(done)} cached)" if done else ""))
        step = max(1, len(sources) // 10)
        for start in range(len(done), len(sources), batch):
            chunk = [str(x) for x in sources[start:start + batch]]
            texts = _decode(predictor, chunk, text_of)
            f.writelines(json.dumps({"key": _source_key(src), "text": t}) + "\n" for src, t in zip(chunk, texts, strict=True))
            f.flush()
            os.fsync(f.fileno())
            done.extend(texts)
            if len(done) // step != (len(done) - len(chunk)) // step:
                say(f"teacher outputs: {len(done)}/{len(sources)}")
    return done


def _decode(predictor, chunk: list[str], text_of) -> list[str]:
    """The teacher's text for each source; "" for a source it refuses (an empty line in the data), so one bad
    source costs its own pair, not its chunk."""
    from suite.errors import InputError

    try:
        return [text_of(r) or "" for r in predictor.predict(chunk)]
    except InputError:
        out = []
        for source in chunk:
            try:
                out.append(text_of(predictor.predict([source])[0]) or "")
            except InputError:
                out.append("")
        return out


def with_teacher_targets(task, bundle, spec: DistillSpec, path, say):
    """The bundle a sequence-level student trains on: its training targets replaced by the teacher's outputs
    (pairs the teacher gave no text for are left out, and the log says how many)."""
    sources = task.distill_sources(bundle)
    targets = teacher_outputs(spec, sources, path, say)
    kept = [(src, tgt) for src, tgt in zip(sources, targets, strict=True) if tgt.strip()]
    if len(kept) < len(sources):
        say(f"teacher outputs: {len(sources) - len(kept)} training source(s) left out (the teacher gave no text)")
    if not kept:
        raise RunError(f"run {spec.teacher_name!r} gave no text for any training source: nothing to distil")
    return task.with_train_targets(bundle, [s for s, _ in kept], [t for _, t in kept])


def deployable(model):
    """The model to evaluate and save: the student of a Distiller, else the model itself."""
    return model.student if isinstance(model, Distiller) else model


def wrap(student, spec: DistillSpec):
    """Inside the strategy scope: load the teacher (safe_mode) and wrap the student (soft targets only: a
    sequence-level student trains alone, on the targets ``with_teacher_targets`` gave it)."""
    from suite.runstore import Run

    if spec.kind == SEQUENCE:
        return student
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
    if not teacher.has_model():
        raise RunError(f"run {teacher.name!r} has no model.keras to teach with (status: {teacher.status})")
    overrides = dict(overrides or {})
    kind = SOFT if task.output_kind == "classes" else SEQUENCE
    if kind == SEQUENCE and {"temperature", "alpha"} & set(overrides):
        raise ConfigError("temperature and alpha weigh soft targets of classifiers; a text-output student learns "
                          "the teacher's decoded outputs (sequence-level distillation)")
    spec = DistillSpec(str(teacher.path.resolve()), teacher.name,
                       float(overrides.pop("temperature", DEFAULT_TEMPERATURE)),
                       float(overrides.pop("alpha", DEFAULT_ALPHA)), kind=kind)
    config = student_config(teacher, task, student, overrides)
    options = options or TrainOptions(seed=int((teacher.info.get("options") or {}).get("seed", 0)))
    if name is None:
        digest = hashlib.sha1(json.dumps([config, spec.to_dict()], sort_keys=True, default=str).encode())
        name = f"{teacher.name}-student-{digest.hexdigest()[:6]}"
    return train(task, teacher.info.get("data", "sample"), config, name=name, store=store, options=options,
                 listeners=listeners, callbacks=callbacks, distill=spec)
