"""The headline figures in README.md come from the saved benchmark results, and a quick run leaves them alone."""

import json
from pathlib import Path

import pytest

from bench import run as bench_run
from bench import summary

ROOT = Path(__file__).resolve().parent.parent


def test_readme_quotes_exactly_what_the_saved_results_say():
    """A figure typed into the README, or results saved without reassembling the docs, fails here."""
    readme = (ROOT / "README.md").read_text()
    assert summary.START in readme and summary.END in readme
    block = readme.split(summary.START, 1)[1].split(summary.END, 1)[0].strip()
    assert block == summary.table().strip()
    assert "No full benchmark results" not in block  # the committed results hold every plugin's full run
    # every headline the project claims has its row, each once
    assert [row[0] for row in summary.rows()] == [
        "image classification", "sentiment", "image classification, photos",
        "image classification, varying photos", "distilled student, sentiment", "distilled student, image",
        "distilled student, translation", "translation EN→ES", "speech commands", "speech, unseen speaker",
    ]


def _results(folder, accuracy=0.9876, predict_s=0.040, suite_s=0.002):
    latency = {"suite path": {"p50": suite_s}, "raw": {"p50": suite_s / 2}, "model.predict": {"p50": predict_s}}
    (folder / "image_classification.json").write_text(json.dumps({
        "machine": "test machine",
        "suite": {"test_accuracy": accuracy, "train_seconds_fit": 61.2},
        "baseline": {"test_accuracy": 0.95, "train_seconds": 10.0},
        "latency_s": latency, "serving_memory": {"peak_rss_mb": 512.4}}))
    (folder / "export_full.json").write_text(json.dumps({"plugins": {"image_classification": {
        "int8_size_ratio": 0.2904, "int8_accuracy_delta_points": -0.25}}}))


def test_the_table_is_drawn_from_the_result_files(tmp_path):
    assert summary.table(tmp_path).startswith("No full benchmark results yet")
    _results(tmp_path)
    (row,) = summary.rows(tmp_path)
    assert row[2] == "98.8% (61 s)" and row[3] == "95.0% keras.io simple convnet (10 s)"
    assert row[4] == "2.0 ms (20x faster)" and row[5] == "512 MB" and row[6] == "29% of float32, -0.25 pts"
    assert "test machine" in summary.table(tmp_path)
    _results(tmp_path, accuracy=0.5)
    assert summary.rows(tmp_path)[0][2].startswith("50.0%")


def test_cifar_row_quotes_the_default_command_when_measured_else_the_longest_budget(tmp_path):
    curve = {"machine": "other machine", "suite": [{"budget_min": 20, "test_accuracy": 0.863, "seconds": 792}],
             "recipes": {"keras_resnet20": [{"test_accuracy": 0.7546, "seconds": 1200.1}]}}
    (tmp_path / "cifar10.json").write_text(json.dumps(curve))
    (row,) = summary.rows(tmp_path)
    assert row[2] == "86.3% (20 min budget)" and row[3] == "75.5% Keras ResNet20 example (20 min)"
    curve["default"] = {"test_accuracy": 0.867, "wall_seconds": 712.6}
    (tmp_path / "cifar10.json").write_text(json.dumps(curve))
    assert summary.rows(tmp_path)[0][2] == "86.7% (12 min, whole command)"
    _results(tmp_path)
    assert "(the CIFAR-10 row on other machine)" in summary.table(tmp_path)


def test_photos_row_sets_the_default_against_the_tutorials_better_point(tmp_path):
    photos = {"machine": "photo machine", "counts": {"train": 3000, "test": 1000},
              "suite": {"test_accuracy": 0.61, "train_seconds": 840.0},
              "tutorial": {"recipe": {"test_accuracy": 0.42, "seconds": 400.0},
                           "equal_time": {"test_accuracy": 0.45, "seconds": 838.0}}}
    (tmp_path / "photos.json").write_text(json.dumps(photos))
    (row,) = summary.rows(tmp_path)
    assert row[2] == "61.0% (14 min)" and row[3] == "45.0% TF image classification tutorial (14 min)"
    _results(tmp_path)
    assert "(the varying photos row on photo machine)" in summary.table(tmp_path)


def test_speech_rows_give_accuracy_and_training_time_for_both_sides(tmp_path):
    protocol = {"suite_accuracy": 0.99, "baseline_accuracy": 0.9, "suite_train_seconds": 1000.4,
                "baseline_train_seconds": 17.7}
    (tmp_path / "speech_commands.json").write_text(json.dumps({"protocols": {
        "standard": protocol, "george": dict(protocol, suite_accuracy=0.8, suite_train_seconds=900.0),
        "lucas": dict(protocol, suite_accuracy=0.9, baseline_train_seconds=None)}}))
    standard, unseen = summary.rows(tmp_path)
    assert standard[2] == "99.0% (1000 s)" and standard[3] == "90.0% TF simple audio (18 s)"
    # the mean over held-out speakers: 950 s for the suite; the recipe's time is left out when one run lacks it
    assert unseen[2] == "85.0% (950 s)" and unseen[3] == "90.0% TF simple audio"


def test_only_the_marked_block_is_replaced():
    text = f"intro\n{summary.START}\nold table\n{summary.END}\noutro\n"
    new = summary.replace_block(text, "new table")
    assert new == f"intro\n{summary.START}\nnew table\n{summary.END}\noutro\n"
    assert summary.replace_block("no markers here", "x") == "no markers here"


def test_a_quick_run_writes_its_own_document_and_keeps_the_full_one(tmp_path, monkeypatch):
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    docs.mkdir()
    monkeypatch.setattr(bench_run, "RESULTS", results)
    monkeypatch.setattr(bench_run, "DOCS", docs)
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)
    (tmp_path / "README.md").write_text(f"# x\n{summary.START}\n{summary.END}\n")
    (results / "machine.md").write_text("## The machine's limit\n\nfull figure 208.9\n")
    _results(results)
    bench_run.write_doc(quick=False)
    full = (docs / "BENCHMARKS.md").read_text()
    assert "full figure 208.9" in full and "## At a glance" in full
    assert "98.8%" in (tmp_path / "README.md").read_text()

    (results / "quick").mkdir()
    (results / "quick" / "machine.md").write_text("## The machine's limit\n\nquick figure 1.0\n")
    (results / "quick" / "seconds.txt").write_text('{"seconds": 612, "jobs": 2}\n')  # what the last whole quick run took
    readme = (tmp_path / "README.md").read_text()
    bench_run.write_doc(quick=True)
    quick = (docs / "BENCHMARKS_QUICK.md").read_text()
    assert "quick figure 1.0" in quick and "full figure" not in quick and "BENCHMARKS.md" in quick
    assert "took 10.2 minutes here, 2 modules at a time" in quick
    assert "`python -m bench.run --only sentiment --quick`" in quick  # a module the quick run has not reached
    assert (docs / "BENCHMARKS.md").read_text() == full  # the figures the docs quote are untouched
    assert (tmp_path / "README.md").read_text() == readme


def test_an_unknown_benchmark_name_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as err:
        bench_run.main(["--quick", "--only", "machin"])
    assert err.value.code == 2
    assert "unknown benchmark(s) machin" in capsys.readouterr().err


def test_modules_run_in_lanes_with_machine_first_and_app_last(tmp_path, monkeypatch):
    import threading
    import time

    order, running, most = [], [0], [0]
    lock = threading.Lock()

    def fake(name, quick):
        with lock:
            order.append(name)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return f"## {name}\n"

    monkeypatch.setattr(bench_run, "run_module", fake)
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bench_run, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("no markers\n")
    assert bench_run.main(["--quick"]) == 0
    assert order[0] == "machine" and order[-1] == "app" and sorted(order) == sorted(bench_run.MODULES)
    assert most[0] == 2  # two lanes
    assert json.loads((tmp_path / "results" / "quick" / "seconds.txt").read_text())["jobs"] == 2
    assert "## speech_commands" in (tmp_path / "docs" / "BENCHMARKS_QUICK.md").read_text()
    order.clear()
    most[0] = 0
    assert bench_run.main(["--full"]) == 0
    assert order == bench_run.MODULES and most[0] == 1  # one at a time, in the documented order


def test_distilled_students_are_set_against_the_same_student_alone(tmp_path):
    run = {"model": "cnn_fast", "test_accuracy": 0.8, "macs": 8.0}
    parts = {"image": {"runs": {"teacher": {**run, "test_accuracy": 0.86, "macs": 32.0}, "alone": run,
                                "distilled": {**run, "test_accuracy": 0.81}},
                       "predict_ms_p50": {"teacher": 2.4, "distilled": 1.9},
                       "tflite_int8": {"distilled": {"supported": True, "size_bytes": 2048, "accuracy": 0.795,
                                                     "keras_accuracy": 0.8}}},
             "sentiment": {"skipped": "no data"}}
    (tmp_path / "distill.json").write_text(json.dumps({"machine": "m", "parts": parts}))
    (row,) = summary.rows(tmp_path)
    assert row[0] == "distilled student, image"
    assert row[2] == "81.0% cnn_fast (teacher cnn_fast 86.0%, 0.25x the teacher's multiply-adds)"
    assert row[3] == "80.0% same student trained alone" and row[6] == "2 KB, -0.50 pts"
