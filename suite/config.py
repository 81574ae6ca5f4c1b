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
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["constant", "cosine", "warmup_cosine"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    early_stopping_patience: int = 0
    max_train_examples: int = 0
    time_budget_minutes: float = 0.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    cache: Literal["auto", "memory", "disk", "none"] = "auto"
    max_bad_fraction: float = 0.01

    # Fields shown first in the app's Train form. Plugins extend this tuple.
    ui_fields: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "learning_rate")

    # What each field does, in a user's words: the app's help on every field, ``suite config TASK`` and the
    # generated reference. A subclass adds its own fields' help (merged over the class hierarchy, so a plugin
    # that only changes a default keeps the core's text) and may reword an inherited one.
    field_help: ClassVar[dict[str, str]] = {
        "epochs": "Passes over the training data (with a time budget: the most it may take).",
        "batch_size": "Examples per training step on each device; the global batch is this times the device "
                      "count.",
        "learning_rate": "Peak step size of the optimizer; the schedule warms up to it and decays from it.",
        "weight_decay": "Decoupled weight decay (AdamW), pulling weights towards zero each step.",
        "lr_schedule": "How the learning rate changes over training: constant, cosine decay, or a linear warm-up "
                       "then cosine decay.",
        "warmup_epochs": "Epochs of linear warm-up at the start (warmup_cosine); fractions allowed.",
        "label_smoothing": "Share of each target spread over the other classes (0 = none); makes confidence "
                           "less extreme.",
        "early_stopping_patience": "Stop after this many epochs without a better validation score; 0 = never "
                                   "stop early. The best epoch's weights are kept either way.",
        "max_train_examples": "Train on at most this many examples (a quick try on big data); 0 = all.",
        "time_budget_minutes": "Stop training after this much time; the plan sizes the model and schedule to "
                               "it. 0 = no limit (epochs decide).",
        "val_fraction": "Share of the data held out for validation when the source has no validation split.",
        "test_fraction": "Share of the data held out for the final test when the source has no test split.",
        "cache": "Where decoded examples live while training: auto (memory when they fit in a quarter of the "
                 "free memory, else disk), memory, disk (a reusable cache folder), or none (decode every epoch).",
        "max_bad_fraction": "Unreadable files are skipped and listed in skipped.jsonl; the run fails once more "
                            "than this share of them is bad.",
    }
    # The unit of a field whose name does not already end in one (``_ms``, ``_seconds``, ``_minutes``,
    # ``_db``): the app puts it in the label.
    field_units: ClassVar[dict[str, str]] = {}
    field_labels: ClassVar[dict[str, str]] = {  # where the name read as words says too little
        "lr_schedule": "Learning-rate schedule", "val_fraction": "Validation fraction",
        "max_bad_fraction": "Bad-file limit (fraction)", "max_train_examples": "Max training examples",
    }

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
        """Field name, type name, default, choices, help, unit and label: what the app builds its form from."""
        hints = typing.get_type_hints(cls)
        helps, units, labels = cls._merged("field_help"), cls._merged("field_units"), cls._merged("field_labels")
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append(
                {
                    "name": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": _plain(default),
                    "choices": list(_literal_choices(cls, f.name)),
                    "help": f.metadata.get("help") or helps.get(f.name, ""),
                    "unit": units.get(f.name) or _unit_in_name(f.name),
                    "label": labels.get(f.name) or field_label(f.name, units.get(f.name, "")),
                }
            )
        return out

    @classmethod
    def _merged(cls, attr: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get(attr) or {})
        return merged


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
_NAME_UNITS = {"ms": "ms", "seconds": "s", "minutes": "minutes", "db": "dB", "hz": "Hz"}


def _unit_in_name(name: str) -> str:
    return _NAME_UNITS.get(name.rsplit("_", 1)[-1], "")


def field_label(name: str, unit: str = "") -> str:
    """``time_budget_minutes`` -> "Time budget (minutes)", ``fmax`` with unit Hz -> "Fmax (Hz)"."""
    words = name.split("_")
    if not unit and len(words) > 1 and words[-1] in _NAME_UNITS:
        unit = _NAME_UNITS[words.pop()]
    text = " ".join(words)
    return text[:1].upper() + text[1:] + (f" ({unit})" if unit else "")


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
