"""The CLI: one clear line and a non-zero exit for every user mistake; the happy paths on the example plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def suite(*args, home, check=False, timeout=240, env_extra=None):
    env = dict(os.environ, SUITE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-runs")
    suite("train", "tabular_classification", "--epochs", "3", "--name", "iris", home=home, check=True)
    return home


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "no_such_task"], "unknown task 'no_such_task'"),
        (["train", "tabular_clasification"], "did you mean 'tabular_classification'"),
        (["train", "tabular_classification", "--data", "/no/such/path"], "neither 'sample'"),
        (["train", "tabular_classification", "--data", "tfds:"], "tfds: needs a data set name"),
        (["train", "tabular_classification", "--set", "epochs"], "--set expects key=value"),
        (["train", "tabular_classification", "--set", "nope=1"], "unknown config key 'nope'"),
        (["train", "tabular_classification", "--set", "epochs=abc"], "epochs must be int"),
        (["train", "tabular_classification", "--set", "lr_schedule=weird"], "lr_schedule must be one of"),
        (["train", "tabular_classification", "--config", "/no/such.yaml"], "config file not found"),
        (["eval", "ghost"], "no run named 'ghost'"),
        (["predict", "ghost", "x"], "no run named 'ghost'"),
        (["runs", "show", "ghost"], "no run named 'ghost'"),
        (["train"], "give a TASK"),
        (["settings", "no_such_task"], "unknown task 'no_such_task'"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, needle):
    """In-process (fast): the same main() the console script runs."""
    from suite.cli import main

    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert not any(tmp_path.iterdir()) if tmp_path.exists() else True


def test_settings_lists_every_field_with_its_default_unit_and_help(tmp_path, monkeypatch, capsys):
    """What `--set KEY=VALUE` takes, without reading the source: every field, its default, unit, choices and
    what it does; --json gives the same as the app builds its form from."""
    from suite.cli import main
    from suite.registry import get

    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    main(["settings", "image_classification"])
    out = capsys.readouterr().out
    assert out.startswith("Fields left at their defaults are chosen")  # the config's own docstring first
    fields = get("image_classification").config_class.describe()
    keys = [ln.split("=", 1)[0] for ln in out.splitlines() if ln and not ln.startswith(" ") and "=" in ln]
    assert keys == [f["name"] for f in fields]
    assert "image_size=0 px\n    Side the model resizes every image to" in out
    assert "lr_schedule=warmup_cosine (one of constant, cosine, warmup_cosine)" in out
    main(["settings", "image_classification", "--json"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(fields))


def test_tfds_offline_is_one_clear_line(tmp_path):
    proc = suite("train", "tabular_classification", "--data", "tfds:mnist", home=tmp_path,
                 env_extra={"SUITE_OFFLINE": "1"})
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "tabular_classification reads 'sample' or a CSV path" in line


def test_plugins_lists_builtins_source_and_json(tmp_path):
    proc = suite("plugins", "--json", home=tmp_path, check=True)
    data = json.loads(proc.stdout)
    names = {p["name"] for p in data["plugins"]}
    assert "tabular_classification" in names
    row = next(p for p in data["plugins"] if p["name"] == "tabular_classification")
    assert row["source"] == "tabular_classification = suite_tabular:register"
    assert row["input"] == "table" and row["output"] == "classes"
    assert "CSV" in row["data_formats"] and "csv" in row["upload_types"]


def test_plugins_long_shows_each_plugins_data_layouts(tmp_path):
    proc = suite("plugins", "--long", home=tmp_path, check=True,
                 env_extra={"SUITE_PLUGINS": "tabular_classification"})
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["tabular_classification", "table", "classes"]
    assert any(line.strip().startswith("data:") and "CSV" in line for line in lines), proc.stdout
    assert any(line.strip().startswith("uploads:") for line in lines), proc.stdout


def test_plugins_env_filter_limits_what_loads(tmp_path):
    proc = suite("plugins", "--json", home=tmp_path, check=True,
                 env_extra={"SUITE_PLUGINS": "tabular_classification,not_installed"})
    data = json.loads(proc.stdout)
    assert [p["name"] for p in data["plugins"]] == ["tabular_classification"]
    assert [f["name"] for f in data["failed"]] == ["not_installed"]


def test_train_predict_eval_runs(trained):
    runs = json.loads(suite("runs", "--json", home=trained, check=True).stdout)
    assert [r["name"] for r in runs] == ["iris"] and runs[0]["status"] == "completed"
    out = suite("predict", "iris", "5.1,3.5,1.4,0.2", "6.7,3.0,5.2,2.3", "--json", home=trained, check=True)
    results = json.loads(out.stdout)
    assert [r["input"] for r in results] == ["5.1,3.5,1.4,0.2", "6.7,3.0,5.2,2.3"]
    assert all(r["label"] in ("setosa", "versicolor", "virginica") for r in results)
    assert all(isinstance(r["notices"], list) for r in results)  # one schema, notes or not
    bad = suite("predict", "iris", "1,2", home=trained)
    assert bad.returncode == 2 and "expected 4 numbers" in one_error_line(bad)
    report = json.loads(suite("eval", "iris", "--json", home=trained, check=True).stdout)
    assert report["examples"] == 15 and 0 <= report["accuracy"] <= 1
    assert len(report["confusion_matrix"]) == 3
    assert list((trained / "iris" / "eval").glob("test-*.json"))
    shown = suite("runs", "show", "iris", home=trained, check=True).stdout
    assert "Tabular classification" in shown and "## Test metrics" in shown


def test_snippets_print_code_that_runs_and_predicts_like_the_cli(trained):
    out = suite("snippets", "iris", "--format", "python", "--input", "6.7,3.0,5.2,2.3", home=trained, check=True)
    code = out.stdout.split("\n", 1)[1]
    assert code.startswith("INPUT = '6.7,3.0,5.2,2.3'")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, SUITE_HOME=str(trained), TF_CPP_MIN_LOG_LEVEL="3"))
    assert ran.returncode == 0, ran.stderr[-1500:]
    label = ran.stdout.strip().splitlines()[-1].rsplit(" ", 1)[0]
    predicted = json.loads(suite("predict", "iris", "6.7,3.0,5.2,2.3", "--json", home=trained, check=True).stdout)
    assert label == predicted[0]["label"]
    missing = suite("snippets", "iris", "--format", "onnx", home=trained)  # not exported yet
    assert missing.returncode == 2 and "export it first" in one_error_line(missing)


def test_distill_trains_a_student_run_of_the_teacher_on_its_data(trained):
    out = suite("distill", "iris", "--epochs", "2", "--name", "iris-pupil", "--json", home=trained, check=True)
    summary = json.loads(out.stdout)
    assert summary["name"] == "iris-pupil" and summary["status"] == "completed"
    info = json.loads((trained / "iris-pupil" / "run.json").read_text())
    assert info["distill"]["teacher_name"] == "iris" and info["data"] == json.loads(
        (trained / "iris" / "run.json").read_text())["data"]
    refused = suite("distill", "iris", "--set", "alpha=2", home=trained)
    assert refused.returncode == 2 and "alpha must be in [0, 1]" in one_error_line(refused)


def test_compare_and_delete(tmp_path):
    for name, lr in (("a", "0.01"), ("b", "0.02")):
        suite("train", "tabular_classification", "--epochs", "1", "--name", name, "--set", f"learning_rate={lr}",
              home=tmp_path, check=True)
    table = suite("runs", "compare", "a", "b", home=tmp_path, check=True).stdout
    assert "learning_rate" in table and "0.01" in table and "0.02" in table
    assert "epochs" not in table  # equal values are not shown
    latency = next(line for line in table.splitlines() if line.startswith("serving ms (p50)")).split()[3:]
    assert len(latency) == 2 and all(float(v) > 0 for v in latency), table  # one warm input, measured per run
    suite("runs", "delete", "a", "--yes", home=tmp_path, check=True)
    assert not (tmp_path / "a").exists() and (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".deleting-*"))


def test_same_command_after_completion_starts_a_new_run(tmp_path):
    args = ("train", "tabular_classification", "--epochs", "1")
    suite(*args, home=tmp_path, check=True)
    suite(*args, home=tmp_path, check=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == names[0] + "-2"


def test_new_plugin_scaffold_installs_registers_and_passes_its_tests(tmp_path):
    suite("new-plugin", "my-widget", "--dir", str(tmp_path), home=tmp_path, check=True)
    root = tmp_path / "suite-my-widget"
    assert (root / "pyproject.toml").is_file() and (root / "suite_my_widget" / "task.py").is_file()
    assert suite("new-plugin", "my-widget", "--dir", str(tmp_path), home=tmp_path).returncode == 2
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(root)]
    subprocess.run(pip, check=True, capture_output=True)
    try:
        env = dict(os.environ, SUITE_PLUGINS="my_widget", SUITE_HOME=str(tmp_path / "h"), TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests"),
                               "-k", "not export", "--rootdir", str(root)],
                              capture_output=True, text=True, env=env, timeout=300, cwd=root)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "passed" in proc.stdout
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "suite-my-widget"], capture_output=True)


def test_cli_is_quiet_by_default_and_verbose_brings_tensorflow_logs_back(tmp_path):
    """A newcomer's commands show no TensorFlow C++ lines (`I0000 ... oneDNN`, `E0000 ... cuInit`); -v shows them
    again. `suite data pack` imports TensorFlow (it writes TFRecords); `suite plugins` no longer needs it."""
    import re
    import subprocess
    import sys

    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "src" / label / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    tf_line = re.compile(r"^[IWEF]\d{4} |oneDNN|cuInit|absl::InitializeLog", re.M)

    def pack(*flags, out):
        return subprocess.run([sys.executable, "-m", "suite.cli", *flags, "data", "pack", str(tmp_path / "src"),
                               str(tmp_path / out), "--task", "image_classification"], capture_output=True,
                              text=True, env=env, timeout=120)

    quiet = pack(out="q")
    assert quiet.returncode == 0 and (tmp_path / "q").is_dir(), quiet.stderr[-500:]
    assert not tf_line.search(quiet.stderr), quiet.stderr[:500]
    loud = pack("-v", out="v")
    assert loud.returncode == 0
    raw = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                         timeout=120)
    if tf_line.search(raw.stderr):  # this TensorFlow build logs at import: -v must show it like a plain import
        assert tf_line.search(loud.stderr), loud.stderr[:500]


def test_listing_plugins_imports_no_tensorflow():
    """`suite plugins` reads the registry only: plugins declare their Keras modules (imported before a model
    loads) instead of importing TensorFlow when they register."""
    import subprocess
    import sys

    code = "import sys; from suite.cli import main; sys.argv = ['suite', 'plugins']\ntry:\n    main()\n" \
           "except SystemExit:\n    pass\nprint('TF', 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "image_classification" in proc.stdout and "TF False False" in proc.stdout, proc.stdout + proc.stderr


def test_eval_scores_a_whole_external_file_with_classes_matched_by_name(trained, tmp_path):
    """A CSV holding only two of the three classes (so its class indices differ from the model's) is scored
    whole with --split all; a class the model does not know is one clear line."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = ["sepal_l,sepal_w,petal_l,petal_w,label"]
    keep = [i for i in range(150) if iris.target[i] in (1, 2)]  # versicolor, virginica only
    rows += [",".join(f"{v:.1f}" for v in iris.data[i]) + f",{iris.target_names[iris.target[i]]}" for i in keep]
    path = tmp_path / "new.csv"
    path.write_text("\n".join(rows) + "\n")
    out = suite("eval", "iris", "--data", str(path), "--split", "all", "--json", home=trained, check=True)
    report = json.loads(out.stdout)
    assert report["examples"] == 100 and report["split"] == "all"
    assert "evaluating: 100/100 examples (100%)" in out.stderr  # the progress line, on stderr beside the JSON
    # Renumbered by name: versicolor (index 0 in the file) is scored as the model's class 1, so the model's
    # first class (setosa) gets no true examples.
    assert sum(report["confusion_matrix"][0]) == 0 and report["accuracy"] > 0.5
    rows.append("5.0,3.0,1.0,0.1,tulip")
    path.write_text("\n".join(rows) + "\n")
    bad = suite("eval", "iris", "--data", str(path), "--split", "all", home=trained)
    assert bad.returncode == 2 and "does not know: tulip" in one_error_line(bad)


def test_predict_tells_a_missing_file_from_text_and_takes_dash_inputs(trained, tmp_path):
    missing = suite("predict", "iris", "flowers.csv", home=trained)
    assert missing.returncode == 2 and "input file not found: flowers.csv" in one_error_line(missing)
    assert "--text" in one_error_line(missing)
    forced = suite("predict", "iris", "--text", "flowers.csv", home=trained)
    assert forced.returncode == 2 and "input file not found" not in forced.stderr  # the model read it as a row
    negative = suite("predict", "iris", "--json", "--", "-5.1,3.5,1.4,0.2", home=trained, check=True)
    assert json.loads(negative.stdout)[0]["input"] == "-5.1,3.5,1.4,0.2"
    env = dict(os.environ, SUITE_HOME=str(trained), TF_CPP_MIN_LOG_LEVEL="3")
    piped = subprocess.run([sys.executable, "-m", "suite.cli", "predict", "iris", "-", "--json"], input="6.7,3.0,5.2,2.3",
                           capture_output=True, text=True, env=env, timeout=240)
    assert piped.returncode == 0 and json.loads(piped.stdout)[0]["label"] in ("versicolor", "virginica")
    assert "--text" in suite("predict", "--help", home=trained, check=True).stdout
