"""Knowledge distillation (suite/distill.py): the loss, and a student trained end to end through the trainer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from suite.errors import ConfigError

TAB = "tabular_classification"


def test_soft_target_loss_is_zero_for_the_teacher_itself_and_grows_with_disagreement():
    from suite.distill import soft_target_loss

    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    same = np.asarray(soft_target_loss(teacher, teacher, 4.0))
    assert np.allclose(same, 0.0, atol=1e-5)
    near = np.asarray(soft_target_loss(teacher, np.array([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]], np.float32), 4.0))
    far = np.asarray(soft_target_loss(teacher, np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]], np.float32), 4.0))
    assert np.all(near > 0) and np.all(far > 3 * near)


def test_alpha_one_is_the_plain_loss_and_alpha_zero_follows_the_teacher_only():
    import keras

    from suite.distill import Distiller

    keras.utils.set_random_seed(0)
    def mlp(units):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="relu"),
                                 keras.layers.Dense(3, activation="softmax")])

    student, teacher = mlp(4), mlp(16)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 3, 3)
    plain = float(keras.losses.CategoricalCrossentropy()(y, student(x)))
    for alpha, expect in ((1.0, plain), (0.0, None)):
        d = Distiller(student, teacher, temperature=2.0, alpha=alpha)
        d.compile(loss=keras.losses.CategoricalCrossentropy())
        value = float(d.compute_loss(x=x, y=y, y_pred=student(x), training=True))
        if expect is not None:
            assert abs(value - expect) < 1e-5
        else:
            from suite.distill import soft_target_loss

            assert abs(value - float(np.mean(soft_target_loss(teacher(x), student(x), 2.0)))) < 1e-5
        # validation reports the student's own loss, whatever alpha
        assert abs(float(d.compute_loss(x=x, y=y, y_pred=student(x), training=False)) - plain) < 1e-5
    with pytest.raises(ConfigError, match="alpha"):
        from suite.distill import DistillSpec

        DistillSpec("t", "t", alpha=1.5)


def test_a_student_is_an_ordinary_run_that_names_its_teacher_and_resumes_distilling(tmp_path):
    import keras

    from suite.distill import distill
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    store = RunStore(tmp_path / "runs")
    options = TrainOptions(tensorboard=False)
    teacher = train(TAB, "sample", {"epochs": 8, "hidden_units": 64}, name="teacher", store=store, options=options)
    with pytest.raises(ConfigError, match="unknown student 'huge'"):
        distill(teacher.name, student="huge", store=store, options=options)

    class StopAfterOne(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            (store.root / "pupil" / "STOP").write_text("stop")

    cut = distill(teacher.name, {"epochs": 6, "temperature": 3}, name="pupil", store=store, options=options,
                  callbacks=[StopAfterOne()])
    assert cut.status == "stopped" and cut.info["distill"]["teacher_name"] == "teacher"
    student = train(TAB, resume=cut.path, store=store, options=options)  # the spec comes from run.json
    assert student.status == "completed"
    assert student.info["distill"] == {**cut.info["distill"]} and student.info["distill"]["temperature"] == 3.0
    assert student.config["hidden_units"] == 8 and student.config["hidden_layers"] == 1  # the declared student
    assert "Distilled from run `teacher` (temperature 3, alpha 0.1" in student.file("README.md").read_text()
    assert 0.0 <= student.metrics["test"]["accuracy"] <= 1.0
    sizes = {}
    for run in (teacher, student):
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from suite.runstore import Run; "
             "print(Run(sys.argv[1]).load_model().count_params())", str(run.path)],
            capture_output=True, text=True, timeout=300)
        assert probe.returncode == 0, probe.stderr[-2000:]
        sizes[run.name] = int(probe.stdout.split()[-1])
    assert sizes["pupil"] * 4 < sizes["teacher"], sizes  # only the student was saved


def test_cached_teacher_outputs_are_used_only_up_to_a_torn_line_or_a_changed_source(tmp_path):
    import json

    from suite.distill import _source_key, read_teacher_outputs

    path = tmp_path / "teacher_outputs.jsonl"
    sources = ["one", "two", "three", "four"]
    rows = [json.dumps({"key": _source_key(s), "text": s.upper()}) + "\n" for s in sources]
    path.write_text("".join(rows[:3]) + rows[3][:-5])  # the last line torn by a kill mid-write
    assert read_teacher_outputs(path, sources) == ["ONE", "TWO", "THREE"]
    assert read_teacher_outputs(path, ["one", "TWO?", "three", "four"]) == ["ONE"]  # the data changed
    assert read_teacher_outputs(tmp_path / "none.jsonl", sources) == []


def test_a_translation_student_learns_the_teachers_decoded_outputs_and_resumes_decoding(tmp_path):
    from suite.distill import TARGETS_FILE, DistillSpec, distill, read_teacher_outputs, teacher_outputs
    from suite.predictor import Predictor
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    task = get("translation")
    store = RunStore(tmp_path / "runs")
    options = TrainOptions(tensorboard=False)
    tiny = {**task.sample_overrides, "epochs": 3, "encoder_layers": 2, "decoder_layers": 2, "embed_dim": 32,
            "intermediate_dim": 64, "num_heads": 2, "max_train_examples": 300}
    teacher = train("translation", "sample", tiny, name="teacher", store=store, options=options)

    with pytest.raises(ConfigError, match="sequence-level"):
        distill(teacher.name, {"temperature": 2}, store=store, options=options)
    student = distill(teacher.name, {"epochs": 1}, name="pupil", store=store, options=options)
    assert student.status == "completed"
    assert student.config["encoder_layers"] == 1 and student.config["decoder_layers"] == 1  # the declared student
    assert student.info["distill"]["kind"] == "sequence"
    assert "sequence-level, on run teacher's decoded outputs" in student.file("README.md").read_text()
    # Decoding the teacher's outputs is timed apart: the training time (and so the budget's report) leaves it out.
    events = [json.loads(line) for line in student.file("events.jsonl").read_text().splitlines()]
    decoded, trained = student.info["teacher_output_seconds"], student.info["train_seconds"]
    assert decoded > 0 and trained + decoded <= events[-1]["time"] - events[0]["time"] + 0.5
    # The cache holds the teacher's own answer for each of the 300 training sources, in the split's order.
    sources = task.distill_sources(task.load_data(_sample_source(), task.make_config(tiny)).take_train(300))
    cached = read_teacher_outputs(student.file(TARGETS_FILE), sources)
    assert len(cached) == len(sources) == 300
    assert cached[:5] == [r["text"] for r in Predictor(teacher).predict(sources[:5])]
    # A run killed mid-decoding resumes: a torn cache decodes only what is missing, to the same outputs.
    path = student.file(TARGETS_FILE)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:100]) + lines[100][:7])
    said = []
    spec = DistillSpec(**student.info["distill"])
    assert teacher_outputs(spec, sources, path, said.append) == cached
    assert any("decoding 200 training sources" in line and "(100 cached)" in line for line in said), said
    said.clear()
    assert teacher_outputs(spec, sources, path, said.append) == cached
    assert said == [f"teacher outputs: all 300 read from {TARGETS_FILE}"]


def _sample_source():
    from suite.data import parse_source

    return parse_source("sample")
