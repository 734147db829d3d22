"""load_model(): a model file loaded by the runtime :mod:`quantlens.backends` names for it
(a runtime's code is imported only when a model of its kind is loaded)."""

from __future__ import annotations

import os
from pathlib import Path

from quantlens.backends import backend_for
from quantlens.errors import ModelLoadError
from quantlens.models.base import Model


def load_model(path: str | os.PathLike[str], *, num_threads: int | None = None) -> Model:
    """Load a model from a file or SavedModel directory, chosen by its file type.

    Args:
        path: a ``.tflite``, ``.keras`` or ``.h5`` file, or a SavedModel directory.
        num_threads: threads the runtime may use (``None``: the runtime's default).

    Raises:
        ModelLoadError: the path does not exist, is of an unknown kind, or cannot be loaded.
    """
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model not found: {p} (check the path)")
    if not p.is_dir() and not p.is_file():  # a FIFO or a device would block or never end
        raise ModelLoadError(f"{p} is not a regular file; give a model file")
    if num_threads is not None and num_threads < 1:
        raise ModelLoadError(f"num_threads must be at least 1, got {num_threads}")
    return _with_io(backend_for(p).load(p, num_threads))


def _with_io(model: Model) -> Model:
    """A model quantlens can run takes at least one input and gives at least one output."""
    for kind, specs in (("inputs", model.inputs), ("outputs", model.outputs)):
        if not specs:
            raise ModelLoadError(f"{model.path} has no {kind}; give a model that takes an "
                                 "input and gives an output")  # fmt: skip
    return model
