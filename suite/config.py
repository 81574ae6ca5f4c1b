"""Typed task configs: a dataclass per task with defaults, validation and ``key=value`` overrides.

Modelled on TF Model Garden's ``official/core/config_definitions``: every field has a type and a default, a
YAML file or ``--set key=value`` strings override them, and ``validate`` rejects nonsense with one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml

from suite.errors import ConfigError


@dataclasses.dataclass
class TaskConfig:
    """Fields every task shares. Plugins subclass it and add their own fields with defaults."""

    epochs: int = 10
    batch_size: int = 64  # per replica; the global batch is this times the replica count
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["constant", "cosine", "warmup_cosine"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    early_stopping_patience: int = 0  # epochs without improvement before stopping; 0 turns it off
    max_train_examples: int = 0  # 0 = all; a cap for quick tries
    time_budget_minutes: float = 0.0  # > 0: stop when this much training time is spent (epochs is then a cap)
    val_fraction: float = 0.1  # used when the source has no validation split
    test_fraction: float = 0.1  # used when the source has no test split
    # Where decoded examples live while training: auto picks memory when they fit in a quarter of the free
    # memory, else a disk cache (suite.streaming.choose_cache); none decodes the files again every epoch.
    cache: Literal["auto", "memory", "disk", "none"] = "auto"
    max_bad_fraction: float = 0.01  # streamed files: the run fails once more than this share cannot be read

    # Fields shown first in the app's Train form. Plugins extend this tuple.
    ui_fields: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "learning_rate")

    # ---- validation ---------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError on the first bad value. Subclasses call ``super().validate()`` first."""
        _positive(self, "epochs", "batch_size")
        if not 0 < self.learning_rate < 10:
            raise ConfigError(f"learning_rate must be in (0, 10), got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")
        if (self.early_stopping_patience < 0 or self.max_train_examples < 0 or self.warmup_epochs < 0
                or self.time_budget_minutes < 0):
            raise ConfigError(
                "early_stopping_patience, max_train_examples, warmup_epochs and time_budget_minutes must be >= 0")
        for f in dataclasses.fields(self):
            choices = _literal_choices(type(self), f.name)
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"{f.name} must be one of {', '.join(map(str, choices))}; got {getattr(self, f.name)!r}"
                )

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, *, strict: bool = True):
        """Build a validated config from defaults plus ``values`` (coerced to each field's type)."""
        values = dict(values or {})
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown and strict:
            raise ConfigError(
                f"unknown config key {unknown[0]!r} for {cls.__name__}; known keys: {', '.join(sorted(known))}"
            )
        kwargs = {k: coerce(v, hints[k], k) for k, v in values.items() if k in known}
        config = cls(**kwargs)
        config.validate()
        return config

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Field name, type name, default and choices: what the app builds its form from."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(
                {
                    "name": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": _plain(default),
                    "choices": list(_literal_choices(cls, f.name)),
                    "help": f.metadata.get("help", ""),
                }
            )
        return out


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["epochs=3", "model=cnn"]`` into a dict of YAML-parsed values (types are fixed later)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    return data


# ---- helpers ------------------------------------------------------------------------------------
def _positive(config: TaskConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)}")


def _literal_choices(cls: type, name: str) -> tuple[Any, ...]:
    hint = typing.get_type_hints(cls)[name]
    return get_args(hint) if get_origin(hint) is Literal else ()


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "choice"
    if origin in (tuple, list):
        return "list"
    if hint in (int, float, bool, str):
        return hint.__name__
    return "str"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert ``value`` to the type ``hint`` names, or raise a ConfigError naming the key."""
    origin = get_origin(hint)
    try:
        if origin is Literal:
            choices = get_args(hint)
            if value not in choices:
                # numbers given as strings ("3") still match numeric literals
                for c in choices:
                    if str(c) == str(value):
                        return c
                raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
            return value
        if origin in (types.UnionType, typing.Union):
            args = [a for a in get_args(hint) if a is not type(None)]
            if value is None:
                return None
            return coerce(value, args[0], name)
        if origin in (tuple, list):
            (inner, *_rest) = get_args(hint) or (Any,)
            items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
            converted = [coerce(v, inner, name) if inner is not Any and inner is not Ellipsis else v for v in items]
            return tuple(converted) if origin is tuple else converted
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {_type_name(hint)}, got {value!r}") from None
    return value
