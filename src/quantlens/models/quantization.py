"""Converting between real values and a tensor's quantized integers."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from quantlens.results import ModelInfo, QuantParams, TensorSpec

INTEGER_IO_DTYPES = ("int8", "uint8", "int16")
#: Weight dtypes that mean "quantized"; activation dtypes likewise.
INTEGER_WEIGHTS = ("int8", "uint8", "int4", "int16")
INTEGER_ACTIVATIONS = ("int8", "uint8", "int16")
#: ONNX ops that carry quantized activations (QDQ and QOperator formats).
ONNX_QUANTIZED_OPS = ("QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul")


def integer_io(spec: TensorSpec) -> QuantParams | None:
    """How an input (or output) the runtime takes (or gives) as integers is quantized; None
    when it takes real values."""
    return spec.quantization if spec.dtype in INTEGER_IO_DTYPES else None


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


@dataclass(frozen=True)
class _Affine:
    """One tensor's quantization as the NumPy constants each batch uses (made once: on a
    model of a few µs per sample, building them every batch cost more than using them)."""

    inverse: np.ndarray  # float32 reciprocal of the scale, broadcastable
    zero_point: np.ndarray  # float32, broadcastable
    low: int  # the integer dtype's range
    high: int
    #: Per tensor: the real values that quantize inside the range, [first, last] (None per
    #: channel).
    fits: tuple[float, float] | None


@functools.lru_cache(maxsize=256)
def _affine(qp: QuantParams, dtype: np.dtype, ndim: int) -> _Affine:
    info = np.iinfo(dtype)
    # The float32 reciprocal of the scale, as the kernels compute it (a crafted zero scale
    # gives inf, as it does in the runtime).
    with np.errstate(divide="ignore"):
        inverse = (1.0 / _broadcast(qp.scale, qp.axis, ndim).astype(np.float32)).astype(np.float32)
    zp = _broadcast(qp.zero_point, qp.axis, ndim).astype(np.float32)
    for shared in (inverse, zp):
        shared.setflags(write=False)
    fits = None
    if inverse.ndim == 0 and np.isfinite(inverse) and inverse > 0:
        first = _first_at_least(inverse, zp, info.min)
        last = _first_at_least(inverse, -zp, -info.max)  # of -x: rint(-x·inv) = -rint(x·inv)
        if first is not None and last is not None:
            fits = (first, -last)
    return _Affine(inverse, zp, int(info.min), int(info.max), fits)


#: Float32 steps the edge search takes at most from its real-valued guess (a handful in
#: practice; a scale no real model has must not keep it walking).
_EDGE_STEPS = 64


def _first_at_least(inverse: np.ndarray, zp: np.ndarray, bound: int) -> float | None:
    """The smallest float32 ``x`` with ``rint(x · inverse) + zp >= bound``, computed in
    float32 as :func:`quantize` computes it (None if not found within a few steps): the
    expression only grows with ``x``, so a guess from the real-valued edge is walked one
    float32 step at a time onto the exact one."""

    def reaches(x: np.float32) -> bool:
        return bool(np.rint(np.float32(x * inverse)) + zp >= bound)

    x = np.float32((bound - float(zp) - 0.5) / float(inverse))
    up, down = np.float32(np.inf), np.float32(-np.inf)
    for _ in range(_EDGE_STEPS):
        if reaches(x):
            break
        x = np.nextafter(x, up)
    else:
        return None
    for _ in range(_EDGE_STEPS):
        below = np.nextafter(x, down)
        if not reaches(below):
            return float(x)
        x = below
    return None


def _ends_fit(a: _Affine, value_range: tuple[float, float]) -> bool:
    """A per-tensor quantization maps the batch's smallest and largest value inside the
    integer range (the quantized value only grows with the real one), so no value of the
    batch clips. Float32 rounding only moves a value towards its neighbours, never past a
    float32 edge, so float64 data compares with the float32 edges as it is."""
    if a.fits is None:
        return False
    return a.fits[0] <= value_range[0] and value_range[1] <= a.fits[1]  # False for NaN


def quantize(
    x: np.ndarray, qp: QuantParams, dtype: str | np.dtype,
    value_range: tuple[float, float] | None = None, out: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Real values to integers: ``q = clip(rint(x / scale) + zero_point)`` in ``dtype``'s range.

    Computed as LiteRT's QUANTIZE op computes it (its optimized and XNNPACK kernels, which
    run by default): ``x`` times the float32 reciprocal of the scale, in float32, rounded half
    to even, then the zero point added (only LiteRT's reference kernels round half away from
    zero). Data preprocessed as
    ``(p - 127.5) / 128`` with an input scale of 1/128 lands on exact ties, and an
    integer-I/O model must see the integers its float-I/O twin computes. ``value_range``, the
    smallest and largest value of ``x`` when known, spares the clip when both land in range;
    ``out``, an array of ``x``'s shape and ``dtype`` to write the integers into (a runtime's
    input buffer), spares a copy.
    """
    dt = np.dtype(dtype)
    x32 = np.asarray(x, dtype=np.float32)
    a = _affine(qp, dt, x32.ndim)
    # In float32, times the float32 reciprocal of the scale, as the kernels compute it: a
    # value a few ulps from a tie rounds the way the runtime rounds it. One buffer, updated
    # in place: adding the (small, integral) zero point to an integral float32 is exact
    # wherever the result is not clipped anyway.
    t = np.multiply(x32, a.inverse, dtype=np.float32)
    np.rint(t, out=t)
    if out is None:
        out = np.empty(t.shape, dt)
    if value_range is not None and _ends_fit(a, value_range):
        np.add(t, a.zero_point, out=out, casting="unsafe")  # all in range: the cast is exact
        return out
    np.add(t, a.zero_point, out=t)
    np.clip(t, a.low, a.high, out=t)
    np.copyto(out, t, casting="unsafe")
    return out


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
    x32 = np.asarray(x, dtype=np.float32)
    if x32.size == 0:
        return 0
    a = _affine(qp, np.dtype(dtype), x32.ndim)
    if a.fits is not None:
        ends = value_range if value_range is not None else (float(x32.min()), float(x32.max()))
        if _ends_fit(a, ends):
            return 0
    q = np.rint(np.multiply(x32, a.inverse, dtype=np.float32)) + a.zero_point
    return int(np.count_nonzero((q < a.low) | (q > a.high)))


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Integers to real values: ``(q - zero_point) * scale``, as float32.

    Up to 16-bit integers, ``q - zero_point`` is exact in float32 and the product of two
    float32 values is correctly rounded, so float32 arithmetic gives the float64 result
    rounded to float32 (the scales are float32 in the files); wider integers go through
    float64."""
    q = np.asarray(q)
    scale, zp = _dequantizing(qp, q.dtype.itemsize > 2, q.ndim)
    out: np.ndarray = q.astype(scale.dtype)
    np.subtract(out, zp, out=out)
    np.multiply(out, scale, out=out)
    return out if out.dtype == np.float32 else out.astype(np.float32)


@functools.lru_cache(maxsize=256)
def _dequantizing(qp: QuantParams, wide: bool, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) broadcastable to ``ndim``, in float32 unless the integers are
    ``wide`` or a scale is not a float32 value."""
    scales = np.asarray(qp.scale, dtype=np.float64)
    if not np.array_equal(scales, scales.astype(np.float32)):
        wide = True
    work = np.float64 if wide else np.float32
    scale = _broadcast(qp.scale, qp.axis, ndim).astype(work)
    zp = _broadcast(qp.zero_point, qp.axis, ndim).astype(work)
    for shared in (scale, zp):
        shared.setflags(write=False)
    return scale, zp
