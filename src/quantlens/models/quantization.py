"""Converting between real values and a tensor's quantized integers."""

from __future__ import annotations

import numpy as np

from quantlens.models.base import QuantParams

INTEGER_IO_DTYPES = ("int8", "uint8", "int16")


def _broadcast(values: tuple[float, ...] | tuple[int, ...], axis: int, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * ndim
    shape[axis] = arr.size
    return arr.reshape(shape)


def quantize(x: np.ndarray, qp: QuantParams, dtype: str | np.dtype) -> np.ndarray:
    """Real values to integers: ``q = clip(round(x / scale + zero_point))`` in ``dtype``'s range.

    Rounding is half to even, as the runtimes' own QUANTIZE / QuantizeLinear kernels do
    (LiteRT rounds with ``std::round`` only in its reference *weight* quantizer; the op that
    quantizes activations at run time uses round-half-even, and so does onnxruntime): data
    preprocessed as ``(p - 127.5) / 128`` with an input scale of 1/128 lands on exact ties,
    and an integer-I/O model must see the same integers its float-I/O twin computes.
    """
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    x64 = np.asarray(x, dtype=np.float64)
    scale = _broadcast(qp.scale, qp.axis, x64.ndim)
    zp = _broadcast(qp.zero_point, qp.axis, x64.ndim)
    scaled = x64 / scale
    q = np.rint(scaled) + zp
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Integers to real values: ``(q - zero_point) * scale``, as float32."""
    q64 = np.asarray(q, dtype=np.float64)
    scale = _broadcast(qp.scale, qp.axis, q64.ndim)
    zp = _broadcast(qp.zero_point, qp.axis, q64.ndim)
    return ((q64 - zp) * scale).astype(np.float32)
