"""Converting between real values and a tensor's quantized integers."""

from __future__ import annotations

import numpy as np

from quantlens.results import ModelInfo, QuantParams

INTEGER_IO_DTYPES = ("int8", "uint8", "int16")
#: Weight dtypes that mean "quantized"; activation dtypes likewise.
INTEGER_WEIGHTS = ("int8", "uint8", "int4", "int16")
INTEGER_ACTIVATIONS = ("int8", "uint8", "int16")
#: ONNX ops that carry quantized activations (QDQ and QOperator formats).
ONNX_QUANTIZED_OPS = ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul")


def count_of(counts: dict[str, int], keys: tuple[str, ...]) -> int:
    """The sum of ``counts`` over ``keys``."""
    return sum(counts.get(k, 0) for k in keys)


def integer_parts(info: ModelInfo) -> list[str]:
    """What in a model is already integer-quantized (empty for a float model)."""
    found = []
    if (n := count_of(info.weight_dtypes, INTEGER_WEIGHTS)) > 0:
        found.append(f"{n:,} integer weight elements")
    if (n := count_of(info.activation_dtypes, INTEGER_ACTIVATIONS)) > 0:
        found.append(f"{n} integer activation tensors")
    if (n := count_of(info.op_counts, ONNX_QUANTIZED_OPS)) > 0:
        found.append(f"{n} quantization ops")
    return found


def _broadcast(values: tuple[float, ...] | tuple[int, ...], axis: int, ndim: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * ndim
    shape[axis] = arr.size
    return arr.reshape(shape)


def quantize(x: np.ndarray, qp: QuantParams, dtype: str | np.dtype) -> np.ndarray:
    """Real values to integers: ``q = clip(rint(x / scale) + zero_point)`` in ``dtype``'s range.

    Computed as LiteRT's QUANTIZE op computes it (its optimized and XNNPACK kernels, which
    run by default): ``x`` times the float32 reciprocal of the scale, in float32, rounded half
    to even, then the zero point added (only LiteRT's reference kernels round half away from
    zero). Data preprocessed as
    ``(p - 127.5) / 128`` with an input scale of 1/128 lands on exact ties, and an
    integer-I/O model must see the integers its float-I/O twin computes.
    """
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    x32 = np.asarray(x, dtype=np.float32)
    # In float32, times the float32 reciprocal of the scale, as the kernels compute it: a
    # value a few ulps from a tie rounds the way the runtime rounds it.
    inverse = (1.0 / _broadcast(qp.scale, qp.axis, x32.ndim).astype(np.float32)).astype(np.float32)
    zp = _broadcast(qp.zero_point, qp.axis, x32.ndim)
    q = np.rint(x32 * inverse).astype(np.float64) + zp
    return np.clip(q, info.min, info.max).astype(dt)


def clipped_count(x: np.ndarray, qp: QuantParams, dtype: str | np.dtype) -> int:
    """How many values of ``x`` fall outside what ``dtype`` holds once quantized with ``qp``
    (they clip to its min or max: information lost before the model starts)."""
    info = np.iinfo(np.dtype(dtype))
    x64 = np.asarray(x, dtype=np.float64)
    q = np.rint(x64 / _broadcast(qp.scale, qp.axis, x64.ndim)) + _broadcast(
        qp.zero_point, qp.axis, x64.ndim
    )
    return int(np.count_nonzero((q < info.min) | (q > info.max)))


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Integers to real values: ``(q - zero_point) * scale``, as float32."""
    q64 = np.asarray(q, dtype=np.float64)
    scale = _broadcast(qp.scale, qp.axis, q64.ndim)
    zp = _broadcast(qp.zero_point, qp.axis, q64.ndim)
    return ((q64 - zp) * scale).astype(np.float32)
