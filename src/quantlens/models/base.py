"""The Model protocol every runtime backend implements, its value types, and load_model()."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from quantlens.results import (  # the value types, re-exported for the backends
    BatchingDecision,
    ModelInfo,
    TensorSpec,
)


@runtime_checkable
class Model(Protocol):
    """A loaded model that maps real-valued inputs to real-valued outputs.

    Backends quantize integer inputs and dequantize integer outputs themselves, so callers
    always work in real (float) space.
    """

    name: str
    path: str
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batching(self) -> str:
        """How batches run: "resize", "chunks" or "per-sample"."""
        ...

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch: one array per input (in ``inputs`` order), one per output."""
        ...

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """Set up one batch and return a function that runs the model on it, nothing else.

        This is what a benchmark times: input conversion and copies happen here, once.
        """
        ...

    def info(self) -> ModelInfo:
        """Describe the model."""
        ...

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        """Decide on the data's first samples how batches must run, and run them so from
        now on (see :mod:`quantlens.models.batching`)."""
        ...

    def set_batching(self, mode: str) -> None:
        """Run batches this way from now on: 'resize', 'chunks' or 'per-sample'."""
        ...


def unique_names(names: Sequence[str]) -> list[str]:
    """The names, with '#2', '#3', ... added where one repeats."""
    out: list[str] = []
    for n in names:
        name, k = n, 2
        while name in out:
            name, k = f"{n}#{k}", k + 1
        out.append(name)
    return out


def natural_key(name: str) -> list[Any]:
    """Sort key that puts 'output_2' before 'output_10'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def path_size(path: str | os.PathLike[str]) -> int:
    """Size on disk of a file, or of every file under a directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def gzip_size(path: str | os.PathLike[str]) -> int:
    """Bytes after gzip (level 9) of a file, or the sum over the files of a directory."""
    import gzip

    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9)) for f in files)


_TRUSTED: ContextVar[bool] = ContextVar("quantlens_trusted_models", default=False)


@contextmanager
def trusted_models(trust: bool = True) -> Iterator[None]:
    """Within the block, Keras models may run code to load (Lambda layers, custom objects).

    Off by default: a model file is data, and loading it must not execute what it carries.
    """
    token = _TRUSTED.set(trust)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def models_trusted() -> bool:
    """Whether loading may execute code a model file carries (see :func:`trusted_models`)."""
    return _TRUSTED.get()
