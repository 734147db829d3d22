"""Inputs for a benchmark: a batch from the user's data, or random values in each input's range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quantlens.data import load_dataset
from quantlens.errors import ConfigError
from quantlens.results import TensorSpec

SEED = 0


def real_range(spec: TensorSpec) -> tuple[float, float]:
    """The real values an input can take: from its quantization for integer inputs,
    [-1, 1] for float inputs (as LiteRT's benchmark tool uses), [0, 1] for raw integers."""
    q = spec.quantization
    if q is not None and np.issubdtype(np.dtype(spec.dtype), np.integer):
        info = np.iinfo(spec.dtype)
        scale, zp = q.scale[0], q.zero_point[0]
        return (info.min - zp) * scale, (info.max - zp) * scale
    if np.issubdtype(np.dtype(spec.dtype), np.floating):
        return -1.0, 1.0
    return 0.0, 1.0


def synthetic_inputs(specs: Sequence[TensorSpec], batch: int, seed: int = SEED) -> list[np.ndarray]:
    """Uniform random real values spanning each input's range.

    Raises:
        ConfigError: an input leaves a dimension open (an audio length, an image size): only
            data says which shape is deployed.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        if None in s.sample_shape:
            dims = ", ".join("?" if d is None else str(d) for d in s.sample_shape)
            raise ConfigError(
                f"input '{s.name}' leaves dimensions open ({dims}); give --data with samples of "
                "the shape you deploy, so the benchmark times that shape"
            )
        shape = (batch, *(d for d in s.sample_shape if d is not None))
        lo, hi = real_range(s)
        if np.issubdtype(np.dtype(s.dtype), np.integer) and s.quantization is None:
            arrays.append(rng.integers(int(lo), int(hi) + 1, size=shape).astype(s.dtype))
        else:
            arrays.append(rng.uniform(lo, hi, size=shape).astype(np.float32))
    return arrays


def data_inputs(data: Any, specs: Sequence[TensorSpec], batch: int) -> list[np.ndarray]:
    """The first ``batch`` samples of ``data`` (repeated when the data has fewer).

    NaN or inf is let through: timing needs no finite values, and the evaluation that calls
    the benchmark has already refused them unless the user allowed them.
    """
    dataset = load_dataset(data)
    first = dataset.head(specs, batch, allow_nonfinite=True)
    arrays = first.inputs
    if len(first) < batch:
        reps = -(-batch // len(first))
        arrays = [np.concatenate([a] * reps)[:batch] for a in arrays]
    return [np.ascontiguousarray(a) for a in arrays]
