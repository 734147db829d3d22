"""Errors a user can cause. The CLI prints their message on one line and exits 2."""

from __future__ import annotations


class QuantlensError(Exception):
    """Base class for every error caused by user input; the message says what to do."""


class ModelLoadError(QuantlensError):
    """A model file is missing, of an unknown kind, corrupt or needs what the runtime lacks."""


class ModelRunError(QuantlensError):
    """The runtime refused to run a model it had loaded (a corrupt or unsupported graph)."""


class DataError(QuantlensError):
    """A data source is missing, empty, malformed, or does not fit the model."""


class ModelMismatchError(QuantlensError):
    """A reference and a candidate cannot be compared (different inputs or outputs)."""


class ConfigError(QuantlensError):
    """An option or configuration value is invalid."""


class ConversionError(QuantlensError):
    """A model could not be converted or quantized in the requested mode."""


class WorkerDiedError(QuantlensError):
    """A worker process or Ray task died before finishing its shard."""


class MissingDependencyError(QuantlensError):
    """An optional dependency needed for this request is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency, or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package: pip install 'quantlens[{extra}]'"
        ) from exc


#: How much of what a library said goes into our one-line error.
BRIEF_LIMIT = 300


def brief(exc: BaseException, *, first_line: bool = False) -> str:
    """What a library's exception said, on one line and at most BRIEF_LIMIT characters: its
    whitespace collapsed, or with ``first_line`` only its first line (TensorFlow and LiteRT
    put the cause there and a trace after); its type's name when it said nothing."""
    text = str(exc).strip()
    if first_line and text:
        text = text.splitlines()[0]
    return " ".join(text.split())[:BRIEF_LIMIT] or type(exc).__name__
