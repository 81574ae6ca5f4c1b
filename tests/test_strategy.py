"""Strategy and precision decisions for mocked device lists (the GPU/TPU/cluster paths, without the hardware)."""

import json

import pytest

from suite.errors import SuiteError
from suite.strategy import GPU, Hardware, choose_precision, choose_strategy, read_tf_config

A100 = GPU("A100", (8, 0))
V100 = GPU("V100", (7, 0))
K80 = GPU("K80", (3, 7))
CLUSTER = {"worker": ["h1:1", "h2:1"], "chief": ["h0:1"]}


@pytest.mark.parametrize(
    ("hw", "kind", "devices"),
    [
        (Hardware(), "default", ["/cpu:0"]),
        (Hardware(cpu_devices=2), "mirrored", ["/cpu:0", "/cpu:1"]),
        (Hardware(gpus=[A100]), "one_device", ["/gpu:0"]),
        (Hardware(gpus=[A100, A100]), "mirrored", ["/gpu:0", "/gpu:1"]),
        (Hardware(gpus=[A100], cluster=CLUSTER, task_type="worker", task_index=0), "multi_worker", ["/gpu:0"]),
        (Hardware(cluster=CLUSTER, task_type="chief"), "multi_worker", ["/cpu:0"]),
        (Hardware(gpus=[A100, A100], tpu="grpc://10.0.0.2:8470"), "tpu", ["grpc://10.0.0.2:8470"]),
    ],
)
def test_auto_strategy(hw, kind, devices):
    choice = choose_strategy("auto", hw)
    assert (choice.kind, choice.devices) == (kind, devices)
    assert choice.reason


def test_mirrored_without_gpu_says_it_uses_the_cpu():
    one = choose_strategy("mirrored", Hardware())
    assert one.devices == ["/cpu:0"] and "no GPU" in one.reason and "--devices" in one.reason
    two = choose_strategy("mirrored", Hardware(cpu_devices=2))
    assert two.devices == ["/cpu:0", "/cpu:1"] and "2 logical CPU" in two.reason


def test_explicit_choices_and_errors():
    assert choose_strategy("one_device", Hardware(gpus=[A100, A100])).devices == ["/gpu:0"]
    assert choose_strategy("default", Hardware()).kind == "default"
    assert "one worker" in choose_strategy("multi_worker", Hardware()).reason
    with pytest.raises(SuiteError, match="no TPU"):
        choose_strategy("tpu", Hardware())
    with pytest.raises(SuiteError, match="--strategy must be one of"):
        choose_strategy("horovod", Hardware())


@pytest.mark.parametrize(
    ("hw", "policy"),
    [
        (Hardware(), "float32"),
        (Hardware(gpus=[A100]), "mixed_bfloat16"),
        (Hardware(gpus=[V100, V100]), "mixed_float16"),
        (Hardware(gpus=[A100, V100]), "mixed_float16"),
        (Hardware(gpus=[K80]), "float32"),
        (Hardware(gpus=[GPU("unknown")]), "float32"),
        (Hardware(tpu="local"), "mixed_bfloat16"),
    ],
)
def test_auto_precision(hw, policy):
    assert choose_precision("auto", hw).policy == policy


def test_explicit_precision_and_bad_value():
    assert choose_precision("mixed_float16", Hardware()).policy == "mixed_float16"
    with pytest.raises(SuiteError):
        choose_precision("int4", Hardware())


def test_chief_and_worker_ids():
    cluster = {"worker": ["a:1", "b:1"]}
    w0 = Hardware(cluster=cluster, task_type="worker", task_index=0)
    w1 = Hardware(cluster=cluster, task_type="worker", task_index=1)
    assert w0.is_chief and not w1.is_chief and (w0.worker_id, w1.worker_id) == (0, 1)
    with_chief = Hardware(cluster=CLUSTER, task_type="worker", task_index=0)
    assert not with_chief.is_chief and with_chief.worker_id == 1 and with_chief.workers == 3


def test_tf_config_parsing(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}))
    assert read_tf_config()["task"]["index"] == 1
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        read_tf_config()


def test_hardware_is_described_in_cores_not_logical_devices(monkeypatch):
    from suite import strategy as strat

    monkeypatch.setattr(strat.os, "cpu_count", lambda: 2)
    assert strat.Hardware().describe() == "CPU (2 cores)"
    assert strat.Hardware(cpu_devices=2).describe() == "CPU (2 cores, split into 2 devices)"
