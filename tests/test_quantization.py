"""Real <-> quantized integer conversion of model inputs and outputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlens.models.base import QuantParams
from quantlens.models.quantization import dequantize, quantize


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["int8", "uint8", "int16"]),
    scale=st.floats(1e-4, 10.0),
    zp_frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_is_within_half_a_step(
    dtype: str, scale: float, zp_frac: float, seed: int
) -> None:
    info = np.iinfo(dtype)
    zp = int(info.min + zp_frac * (int(info.max) - int(info.min)))
    qp = QuantParams((scale,), (zp,))
    lo, hi = (info.min - zp) * scale, (info.max - zp) * scale
    x = np.random.default_rng(seed).uniform(lo, hi, size=200)
    q = quantize(x, qp, dtype)
    assert q.dtype == np.dtype(dtype)
    # independent: the affine formula written out with NumPy
    expected = np.clip(np.round(x / scale) + zp, info.min, info.max)
    assert np.abs(q.astype(np.int64) - expected).max() <= 1  # ties may round either way
    back = dequantize(q, qp)
    float32_eps = np.abs(x) * np.finfo(np.float32).eps  # dequantized values are float32
    assert np.all(np.abs(back - x) <= scale / 2 * (1 + 1e-6) + float32_eps)


def test_values_outside_the_range_are_clipped() -> None:
    qp = QuantParams((0.1,), (-128,))
    q = quantize(np.array([-5.0, 0.0, 100.0]), qp, "int8")
    assert q.tolist() == [-128, -128, 127]
    assert dequantize(q, qp).tolist() == pytest.approx([0.0, 0.0, 25.5])


def test_halfway_values_round_away_from_zero_like_tflite() -> None:
    qp = QuantParams((1.0,), (0,))
    assert quantize(np.array([0.5, 1.5, -0.5, -2.5]), qp, "int8").tolist() == [1, 2, -1, -3]


def test_per_channel_parameters_apply_along_their_axis() -> None:
    qp = QuantParams((0.5, 2.0), (0, 10), axis=1)
    x = np.array([[1.0, 4.0], [-1.0, -4.0]])
    q = quantize(x, qp, "int8")
    assert q.tolist() == [[2, 12], [-2, 8]]
    assert dequantize(q, qp).tolist() == [[1.0, 4.0], [-1.0, -4.0]]
