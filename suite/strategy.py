"""Choosing the ``tf.distribute`` strategy and the precision policy for this machine.

The choice is a pure function of a :class:`Hardware` description, so every branch (TPU, many workers, many
GPUs, one GPU, CPU) is unit-tested with mocked device lists; :func:`detect_hardware` reads the real machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from suite.errors import SuiteError

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class GPU:
    name: str
    compute_capability: tuple[int, int] | None = None


@dataclasses.dataclass
class Hardware:
    cpu_devices: int = 1  # logical CPU devices (>1 after --devices N)
    gpus: list[GPU] = dataclasses.field(default_factory=list)
    tpu: str | None = None  # a TPU address/name when a TPU cluster resolver found one
    cluster: dict[str, Any] | None = None  # TF_CONFIG["cluster"]
    task_type: str | None = None
    task_index: int = 0
    cpu_bf16: bool = False  # the CPU computes bfloat16 natively (AVX512_BF16 or AMX)

    @property
    def workers(self) -> int:
        if not self.cluster:
            return 1
        return len(self.cluster.get("worker", [])) + len(self.cluster.get("chief", []))

    @property
    def worker_id(self) -> int:
        """This task's position among all workers (chief first), for sharding input."""
        if not self.cluster or self.task_type is None:
            return 0
        if self.task_type == "chief":
            return 0
        return self.task_index + len(self.cluster.get("chief", []))

    @property
    def is_chief(self) -> bool:
        """The chief writes the run folder: task ``chief``, or worker 0 when the cluster has no chief."""
        if self.workers <= 1 or self.task_type is None:
            return True
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_index == 0 and "chief" not in (self.cluster or {})

    def describe(self) -> str:
        cores = os.cpu_count() or 1
        devices = f", split into {self.cpu_devices} devices" if self.cpu_devices > 1 else ""
        parts = [f"{len(self.gpus)} GPU(s)"] if self.gpus else [f"CPU ({cores} core{'s' * (cores > 1)}{devices})"]
        if self.tpu:
            parts.append(f"TPU {self.tpu}")
        if self.workers > 1:
            parts.append(f"{self.workers} workers (this: {self.task_type}:{self.task_index})")
        return ", ".join(parts)


@dataclasses.dataclass
class StrategyChoice:
    kind: str  # default | one_device | mirrored | multi_worker | tpu
    devices: list[str]
    reason: str
    replicas: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PrecisionChoice:
    policy: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- reading the machine ------------------------------------------------------------------------
def read_tf_config() -> dict[str, Any] | None:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise SuiteError("TF_CONFIG is not valid JSON") from None
    if not isinstance(value, dict) or "cluster" not in value:
        raise SuiteError('TF_CONFIG must be {"cluster": {...}, "task": {"type": ..., "index": ...}}')
    return value


def _tpu_hint() -> bool:
    """Only probe for a TPU where one may exist: probing elsewhere can wait on a metadata server."""
    if any(os.environ.get(v) for v in ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_ACCELERATOR_TYPE")):
        return True
    return Path("/dev/accel0").exists() or Path("/dev/vfio/0").exists()


def detect_tpu() -> str | None:
    if not _tpu_hint():
        return None
    try:
        import tensorflow as tf

        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        return resolver.master() or "local"
    except Exception:
        return None


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when /proc/cpuinfo lists a native bfloat16 instruction set (oneDNN then runs bf16 convolutions)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def detect_hardware() -> Hardware:
    import tensorflow as tf

    gpus = []
    for dev in tf.config.list_physical_devices("GPU"):
        details: dict[str, Any] = {}
        try:
            details = tf.config.experimental.get_device_details(dev)
        except Exception:
            pass
        gpus.append(GPU(name=details.get("device_name", dev.name), compute_capability=details.get("compute_capability")))
    # Read the logical-device *configuration*, not the devices: listing devices would start the runtime,
    # and MultiWorkerMirroredStrategy must be created before that.
    try:
        cpus = tf.config.list_physical_devices("CPU")
        cpu_devices = len(tf.config.get_logical_device_configuration(cpus[0]) or []) or 1
    except (RuntimeError, IndexError):
        cpu_devices = 1
    tf_config = read_tf_config()
    task = (tf_config or {}).get("task", {})
    return Hardware(
        cpu_devices=max(1, cpu_devices),
        gpus=gpus,
        tpu=detect_tpu(),
        cluster=(tf_config or {}).get("cluster"),
        task_type=task.get("type"),
        task_index=int(task.get("index", 0)),
        cpu_bf16=cpu_has_bf16(),
    )


def split_cpu(n: int) -> None:
    """Split the first CPU into ``n`` logical devices. Must run before TensorFlow's runtime starts."""
    if n <= 1:
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        current = tf.config.get_logical_device_configuration(cpus[0])
        if current and len(current) == n:
            return
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise SuiteError(
                f"--devices {n}: TensorFlow already started with {have} CPU device(s) in this process; "
                "pass --devices on a fresh process"
            ) from None


# ---- decisions (pure) ----------------------------------------------------------------------------
def choose_strategy(requested: str, hw: Hardware) -> StrategyChoice:
    """Which strategy to use, and why, for the ``--strategy`` value and this hardware."""
    if requested not in STRATEGIES:
        raise SuiteError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {requested!r}")
    gpus = [f"/gpu:{i}" for i in range(len(hw.gpus))]
    cpus = [f"/cpu:{i}" for i in range(hw.cpu_devices)]
    if requested == "auto":
        if hw.tpu:
            return StrategyChoice("tpu", [hw.tpu], f"a TPU was found ({hw.tpu})")
        if hw.workers > 1:
            return StrategyChoice(
                "multi_worker", gpus or ["/cpu:0"], f"TF_CONFIG names {hw.workers} workers"
            )
        if len(gpus) > 1:
            return StrategyChoice("mirrored", gpus, f"{len(gpus)} GPUs are visible")
        if len(gpus) == 1:
            return StrategyChoice("one_device", gpus, "one GPU is visible")
        if len(cpus) > 1:
            return StrategyChoice("mirrored", cpus, f"no GPU; mirroring over {len(cpus)} logical CPU devices")
        return StrategyChoice("default", ["/cpu:0"], "no GPU or TPU: the default strategy on the CPU")
    if requested == "tpu":
        if not hw.tpu:
            raise SuiteError("--strategy tpu: no TPU was found by the TPU cluster resolver")
        return StrategyChoice("tpu", [hw.tpu], "requested")
    if requested == "multi_worker":
        if hw.workers <= 1:
            return StrategyChoice(
                "multi_worker", gpus or ["/cpu:0"], "requested; TF_CONFIG names no other worker, so one worker"
            )
        return StrategyChoice("multi_worker", gpus or ["/cpu:0"], f"requested; {hw.workers} workers")
    if requested == "mirrored":
        if gpus:
            return StrategyChoice("mirrored", gpus, f"requested; over {len(gpus)} GPU(s)")
        # Unlike Model Garden, say plainly that this mirrors over CPU devices.
        note = (
            f"requested; no GPU, so over {len(cpus)} logical CPU device(s)"
            if len(cpus) > 1
            else "requested; no GPU, so over the one CPU (pass --devices N to split it)"
        )
        return StrategyChoice("mirrored", cpus, note)
    if requested == "one_device":
        return StrategyChoice("one_device", gpus[:1] or ["/cpu:0"], "requested")
    return StrategyChoice("default", ["/cpu:0"] if not gpus else gpus[:1], "requested")


def choose_precision(requested: str, hw: Hardware, strategy_kind: str = "default", *,
                     cpu_bfloat16_model: bool = False) -> PrecisionChoice:
    """bfloat16 on TPUs and GPUs of compute capability >= 8.0, float16 on 7.x; float32 on CPU, except bfloat16
    for a model its plan marks as faster in it (convolutions) on a CPU with native bfloat16."""
    if requested not in PRECISIONS:
        raise SuiteError(f"--precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    if strategy_kind == "tpu" or hw.tpu:
        return PrecisionChoice("mixed_bfloat16", "TPU: bfloat16 is native")
    if hw.gpus:
        caps = [g.compute_capability for g in hw.gpus]
        if all(c is not None and tuple(c) >= (8, 0) for c in caps):
            return PrecisionChoice("mixed_bfloat16", f"GPU compute capability {min(caps)} >= 8.0")
        if all(c is not None and tuple(c) >= (7, 0) for c in caps):
            return PrecisionChoice("mixed_float16", f"GPU compute capability {min(caps)} is 7.x: float16 tensor cores")
        return PrecisionChoice("float32", "GPU compute capability below 7.0 (or unknown)")
    if cpu_bfloat16_model and hw.cpu_bf16 and hw.workers <= 1:
        return PrecisionChoice("mixed_bfloat16", "CPU with native bfloat16 (avx512_bf16/amx) and a model whose "
                                                 "convolutions run faster in it")
    if cpu_bfloat16_model:
        return PrecisionChoice("float32", "CPU without native bfloat16: mixed precision would slow it down")
    return PrecisionChoice("float32", "CPU: mixed precision does not speed it up")


# ---- building ------------------------------------------------------------------------------------
def make_strategy(choice: StrategyChoice):
    import tensorflow as tf

    if choice.kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="" if choice.devices[0] == "local" else choice.devices[0])
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    elif choice.kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif choice.kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=choice.devices)
    elif choice.kind == "one_device":
        strategy = tf.distribute.OneDeviceStrategy(choice.devices[0])
    else:
        strategy = tf.distribute.get_strategy()
    choice.replicas = int(strategy.num_replicas_in_sync)
    return strategy


def set_precision(policy: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy(policy)


def current_precision() -> str:
    import keras

    return keras.mixed_precision.global_policy().name


def describe_auto() -> dict[str, Any]:
    """What ``auto`` would choose on this machine (the app's Home page and ``suite plugins``)."""
    hw = detect_hardware()
    choice = choose_strategy("auto", hw)
    precision = choose_precision("auto", hw, choice.kind)
    return {"hardware": hw.describe(), "strategy": choice.to_dict(), "precision": precision.to_dict()}
