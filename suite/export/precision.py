"""A float32 twin of a mixed-precision model, for the numeric export formats.

A model trained under ``mixed_bfloat16`` (the suite's choice on CPUs with native bfloat16, GPUs of compute
capability 8+ and TPUs) computes in bfloat16: traced as is, its TFLite graph holds bf16 Conv2D/MatMul ops that no
LiteRT kernel runs (the converter asks for Flex ops) and int8 calibration cannot start. Its variables are float32
already, so the same layers rebuilt under the ``float32`` policy take its weights unchanged; phones and ONNX
runtimes run float32 (or int8 from it) anyway.
"""

from __future__ import annotations

from typing import Any


def _policies_to_float32(obj: Any) -> tuple[Any, int]:
    """The config with every mixed dtype policy replaced by float32, and how many were replaced."""
    if isinstance(obj, list):
        out = [_policies_to_float32(v) for v in obj]
        return [o for o, _ in out], sum(n for _, n in out)
    if not isinstance(obj, dict):
        return obj, 0
    if obj.get("class_name") == "DTypePolicy" and str((obj.get("config") or {}).get("name", "")).startswith("mixed_"):
        return {**obj, "config": {**obj["config"], "name": "float32"}}, 1
    out = {k: _policies_to_float32(v) for k, v in obj.items()}
    return {k: o for k, (o, _) in out.items()}, sum(n for _, n in out.values())


def is_mixed(model) -> bool:
    return _policies_to_float32(model.get_config())[1] > 0


def float32_twin(model):
    """``model`` itself when it already computes in float32; else the same layers and weights in float32."""
    config, replaced = _policies_to_float32(model.get_config())
    if not replaced:
        return model
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
