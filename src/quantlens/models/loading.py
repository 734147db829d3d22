"""load_model(): the backend for a model file, chosen by its type.

Apart from base.py so that the backends, which build on base.py, are imported only from here
(and only when a model of theirs is loaded): the layers point one way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from quantlens.errors import ModelLoadError
from quantlens.models.base import Model


def _load_tflite(path: Path, num_threads: int | None) -> Model:
    from quantlens.models.litert import LiteRTModel

    return LiteRTModel(path, num_threads=num_threads)


def _load_keras(path: Path, num_threads: int | None) -> Model:
    from quantlens.models.keras import KerasModel

    return KerasModel(path, num_threads=num_threads)


def _load_saved_model(path: Path, num_threads: int | None) -> Model:
    from quantlens.models.keras import SavedModelModel

    return SavedModelModel(path, num_threads=num_threads)


def _load_onnx(path: Path, num_threads: int | None) -> Model:
    from quantlens.models.onnx import OnnxModel

    return OnnxModel(path, num_threads=num_threads)


# Keyed on file suffix; a directory holding saved_model.pb is a SavedModel.
_LOADERS: dict[str, Callable[[Path, int | None], Model]] = {
    ".tflite": _load_tflite,
    ".onnx": _load_onnx,
    ".keras": _load_keras,
    ".h5": _load_keras,
    ".hdf5": _load_keras,
}

SUPPORTED = ".tflite, .onnx, .keras, .h5, or a SavedModel directory"


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
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return _with_io(_load_saved_model(p, num_threads))
        raise ModelLoadError(
            f"{p} is a directory but not a SavedModel (no saved_model.pb); give a {SUPPORTED}"
        )
    loader = _LOADERS.get(p.suffix.lower())
    if loader is None:
        raise ModelLoadError(
            f"unknown model type '{p.suffix or p.name}' for {p}; give a {SUPPORTED}"
        )
    return _with_io(loader(p, num_threads))


def _with_io(model: Model) -> Model:
    """A model quantlens can run takes at least one input and gives at least one output."""
    for kind, specs in (("inputs", model.inputs), ("outputs", model.outputs)):
        if not specs:
            raise ModelLoadError(f"{model.path} has no {kind}; give a model that takes an "
                                 "input and gives an output")  # fmt: skip
    return model
