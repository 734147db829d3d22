"""A runtime quantlens does not ship, added the way ARCHITECTURE.md says: this one module and
one ``register`` call. A model is a linear classifier saved as ``.lin`` (an ``.npz`` holding
``w``); its one quantized mode rounds the weights to int8 steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.results import BatchingDecision, ModelInfo, TensorSpec

MODES = {"int8-weights": ("weights rounded to 255 int8 steps", False)}
#: Kernel paths, the reference first: "dead" outputs zeros where the first feature is
#: negative, "nan" outputs NaN where the second is above 1.
KERNEL_PATHS = {"plain": "x @ w", "dead": "zeros for x[0] < 0", "nan": "NaN for x[1] > 1"}


class LinearModel:
    """The Model protocol over ``x @ w``."""

    format = "linear"

    def __init__(
        self, path: Path, *, num_threads: int | None = None, kernels: str | None = None
    ) -> None:
        self.kernels = kernels or "plain"
        with np.load(path, allow_pickle=False) as f:
            self.w = f["w"].astype(np.float32)
        self.path, self.name = str(path), path.stem
        self.inputs = (TensorSpec("x", (None, self.w.shape[0]), "float32"),)
        self.outputs = (TensorSpec("y", (None, self.w.shape[1]), "float32"),)
        self.batching = "resize"

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(inputs[0], dtype=np.float32).reshape(len(inputs[0]), -1)
        y = x @ self.w
        if self.kernels == "dead":
            y[x[:, 0] < 0] = 0
        if self.kernels == "nan":
            y[x[:, 1] > 1] = np.nan
        return [y]

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        return lambda: self.predict(inputs)

    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.path, self.format, Path(self.path).stat().st_size,
                         self.inputs, self.outputs, {"MATMUL": 1},
                         {"float32": int(self.w.size)})  # fmt: skip

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        return BatchingDecision("resize", "a matrix product treats rows apart")

    def set_batching(self, mode: str) -> None:
        self.batching = mode


def quantize_source(
    source: Path, mode: str, calibration: Any, input_names: list[str], reference: Any
) -> tuple[bytes, dict[str, Any]]:
    """Round the weights to 255 steps of their largest magnitude, as int8 weights would."""
    import io

    w = LinearModel(source).w
    step = float(np.abs(w).max()) / 127
    buffer = io.BytesIO()
    np.savez(buffer, w=np.round(w / step) * step)
    return buffer.getvalue(), {"step": step}


def keep_in_float_builder(*args: Any) -> Any:
    raise NotImplementedError("a linear model has one layer")
