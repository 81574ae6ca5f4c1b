"""User-facing errors: each carries one clear line that the CLI and the app show as is, without a traceback."""

from __future__ import annotations


class SuiteError(Exception):
    """A mistake or a limit the user can act on. ``str(err)`` is the one line shown to them."""


class InputError(SuiteError):
    """An input to predict (bytes, text, audio) that cannot become a model input."""


class DataSourceError(SuiteError):
    """A ``--data`` source that cannot be read (missing path, bad layout, TFDS offline...)."""


class ConfigError(SuiteError):
    """An unknown or ill-typed config key, or a value outside its allowed range."""


class RunError(SuiteError):
    """A run that cannot be found, is incomplete, or diverged."""


class PluginError(SuiteError):
    """A plugin that is unknown, or failed to load."""


class ExportError(SuiteError):
    """An export that cannot be made or verified."""


def one_line(err: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type when it is not ours."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, SuiteError):
        return text
    return f"{type(err).__name__}: {text}"
