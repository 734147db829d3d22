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


def _reciprocal(qp: QuantParams, ndim: int) -> np.ndarray:
    """The float32 reciprocal of the scale, as the kernels compute it, broadcastable to ``ndim``."""
    return (1.0 / _broadcast(qp.scale, qp.axis, ndim).astype(np.float32)).astype(np.float32)


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
    # value a few ulps from a tie rounds the way the runtime rounds it. One buffer, updated
    # in place: adding the (small, integral) zero point to an integral float32 is exact
    # wherever the result is not clipped anyway.
    t = np.multiply(x32, _reciprocal(qp, x32.ndim), dtype=np.float32)
    np.rint(t, out=t)
    np.add(t, _broadcast(qp.zero_point, qp.axis, x32.ndim).astype(np.float32), out=t)
    np.clip(t, info.min, info.max, out=t)
    return t.astype(dt)


def clipped_count(
    x: np.ndarray, qp: QuantParams, dtype: str | np.dtype,
    value_range: tuple[float, float] | None = None,
) -> int:  # fmt: skip
    """How many values of ``x`` fall outside what ``dtype`` holds once quantized with ``qp``
    as :func:`quantize` quantizes them (they clip to its min or max: information lost before
    the model starts).

    The quantized value only grows with ``x``, so a tensor quantized per tensor whose
    smallest and largest values (``value_range`` when known, else two reductions) both land
    in range has none, the usual case; otherwise each value is quantized and compared."""
    info = np.iinfo(np.dtype(dtype))
    x32 = np.asarray(x, dtype=np.float32)
    if x32.size == 0:
        return 0
    inverse = _reciprocal(qp, x32.ndim)
    zp = _broadcast(qp.zero_point, qp.axis, x32.ndim).astype(np.float32)
    if inverse.ndim == 0:
        low, high = value_range if value_range is not None else (x32.min(), x32.max())
        ends = np.array([low, high], dtype=np.float32)
        q_ends = np.rint(ends * inverse) + zp
        if not np.isnan(q_ends).any() and q_ends[0] >= info.min and q_ends[1] <= info.max:
            return 0
    q = np.rint(np.multiply(x32, inverse, dtype=np.float32)) + zp
    return int(np.count_nonzero((q < info.min) | (q > info.max)))


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Integers to real values: ``(q - zero_point) * scale``, as float32.

    Up to 16-bit integers, ``q - zero_point`` is exact in float32 and the product of two
    float32 values is correctly rounded, so float32 arithmetic gives the float64 result
    rounded to float32 (the scales are float32 in the files); wider integers go through
    float64."""
    q = np.asarray(q)
    scales = np.asarray(qp.scale, dtype=np.float64)
    wide = q.dtype.itemsize > 2 or not np.array_equal(scales, scales.astype(np.float32))
    work = np.float64 if wide else np.float32
    scale = _broadcast(qp.scale, qp.axis, q.ndim).astype(work)
    zp = _broadcast(qp.zero_point, qp.axis, q.ndim).astype(work)
    out: np.ndarray = q.astype(work)
    np.subtract(out, zp, out=out)
    np.multiply(out, scale, out=out)
    return out if out.dtype == np.float32 else out.astype(np.float32)
