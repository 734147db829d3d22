"""Real <-> quantized integer conversion of model inputs and outputs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlens.models.quantization import dequantize, quantize
from quantlens.results import QuantParams


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
    # Quantizing works in float32 as the runtime does (x, its product with the reciprocal of
    # the scale: a few float32 roundings of |x|) and dequantized values are float32.
    float32_eps = np.abs(x) * np.finfo(np.float32).eps
    assert np.all(np.abs(back - x) <= scale / 2 * (1 + 1e-5) + 8 * float32_eps)


def test_values_outside_the_range_are_clipped() -> None:
    qp = QuantParams((0.1,), (-128,))
    q = quantize(np.array([-5.0, 0.0, 100.0]), qp, "int8")
    assert q.tolist() == [-128, -128, 127]
    assert dequantize(q, qp).tolist() == pytest.approx([0.0, 0.0, 25.5])


def test_halfway_values_round_half_to_even_then_add_the_zero_point() -> None:
    qp = QuantParams((1.0,), (0,))
    assert quantize(np.array([0.5, 1.5, -0.5, -2.5]), qp, "int8").tolist() == [0, 2, 0, -2]
    # rounded before the zero point is added: rint(1.5) - 1 = 1, not rint(0.5) = 0
    assert quantize(np.array([1.5, 2.5]), QuantParams((1.0,), (-1,)), "int8").tolist() == [1, 1]


def test_ties_quantize_as_litert_quantize_op_does(tf, convert) -> None:
    """Truth: the QUANTIZE op inside an int8 model with float inputs, read back with every
    tensor kept. Data (p - 127.5) / 128 with an input scale of 1/128 is all exact ties."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    keras = tf.keras
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    p = np.random.default_rng(0).integers(0, 256, size=(64, 16)).astype(np.float32)
    x = (p - 127.5) / 128
    interp = Interpreter(
        model_content=convert(model, [x], int8=True),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interp.resize_tensor_input(0, [64, 16])
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    (q_detail,) = [t for t in interp.get_tensor_details() if t["name"] == "tfl.quantize"]
    scale, zp = q_detail["quantization"]
    assert np.all(np.abs(x / scale - np.round(x / scale)) == 0.5)  # the trap: every value a tie
    ours = quantize(x, QuantParams((scale,), (zp,)), "int8")
    np.testing.assert_array_equal(ours, interp.get_tensor(q_detail["index"]))


def test_per_channel_parameters_apply_along_their_axis() -> None:
    qp = QuantParams((0.5, 2.0), (0, 10), axis=1)
    x = np.array([[1.0, 4.0], [-1.0, -4.0]])
    q = quantize(x, qp, "int8")
    assert q.tolist() == [[2, 12], [-2, 8]]
    assert dequantize(q, qp).tolist() == [[1.0, 4.0], [-1.0, -4.0]]


def test_an_int8_io_model_scores_as_its_float_io_twin_near_ties(tf) -> None:
    """Truth: the twin with float inputs, whose own QUANTIZE op quantizes them. Inputs a few
    ulps from a rounding tie at a scale that is not a power of two: dividing in float64, or
    in float32, gives other integers for thousands of values; the runtime's arithmetic none."""
    from ai_edge_litert.interpreter import Interpreter

    from quantlens import load_model

    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16)])
    rng = np.random.default_rng(0)
    cal = rng.normal(size=(200, 64)).astype(np.float32) * 1.37

    def convert(io: bool) -> bytes:
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([cal[i : i + 1]] for i in range(200))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io:
            c.inference_input_type = c.inference_output_type = tf.int8
        return c.convert()

    twins = {}
    for io in (False, True):
        path = Path(tempfile.mkdtemp()) / f"io{io}.tflite"
        path.write_bytes(convert(io))
        twins[io] = path
    scale = Interpreter(model_path=str(twins[True])).get_input_details()[0]["quantization"][0]
    k = rng.integers(-60, 60, size=(2000, 64))
    x = ((k + 0.5) * scale).astype(np.float32)
    x += (rng.integers(-2, 3, size=x.shape) * np.spacing(x)).astype(np.float32)
    float_io = load_model(twins[False]).predict([x])[0]
    int8_io = load_model(twins[True]).predict([x])[0]
    np.testing.assert_array_equal(int8_io, float_io)
    f64 = np.rint(x.astype(np.float64) / scale)
    assert np.count_nonzero(f64 != np.rint(x * np.float32(1 / scale))) > 1000  # the trap


def test_clipped_count_equals_counting_each_quantized_value() -> None:
    from quantlens.models.quantization import clipped_count

    rng = np.random.default_rng(2)
    for qp, dtype in ((QuantParams((1 / 128,), (0,), 0), "int8"),
                      (QuantParams((0.02,), (128,), 0), "uint8"),
                      (QuantParams((0.1, 0.2, 0.05), (0, 3, -2), 3), "int8")):  # fmt: skip
        for spread in (0.5, 1.0, 3.0):
            x = rng.normal(0, spread, (16, 4, 4, 3)).astype(np.float32)
            x[0, 0, 0, 0] = np.nan  # never counted
            scale = np.asarray(qp.scale, np.float32).reshape(1, 1, 1, -1)
            zp = np.asarray(qp.zero_point, np.float64).reshape(1, 1, 1, -1)
            inv = (np.float32(1) / scale).astype(np.float32)
            q = np.rint(x * inv).astype(np.float64) + zp
            info = np.iinfo(dtype)
            want = int(np.count_nonzero((q < info.min) | (q > info.max)))
            assert clipped_count(x, qp, dtype) == want, (qp, spread)
            finite = x[np.isfinite(x)]  # the range a checked batch carries: no NaN in it
            x_ok = np.where(np.isfinite(x), x, 0).astype(np.float32)
            q_ok = np.rint(x_ok * inv).astype(np.float64) + zp
            want_ok = int(np.count_nonzero((q_ok < info.min) | (q_ok > info.max)))
            span = (float(min(finite.min(), 0)), float(max(finite.max(), 0)))
            assert clipped_count(x_ok, qp, dtype, span) == want_ok, (qp, spread)


def test_quantize_given_the_batch_range_equals_quantize_with_the_clip() -> None:
    """The range lets quantize skip its clip only when nothing clips: with a range that
    lands outside, or a per-channel quantization, it clips as before."""
    rng = np.random.default_rng(3)
    for qp, dtype in ((QuantParams((1 / 255,), (-128,), 0), "int8"),
                      (QuantParams((0.02,), (128,), 0), "uint8"),
                      (QuantParams((1 / 4096,), (0,), 0), "int16"),
                      (QuantParams((0.1, 0.2, 0.05), (0, 3, -2), 3), "int8")):  # fmt: skip
        for spread in (0.2, 1.0, 20.0):
            x = rng.normal(0.3, spread, (8, 5, 5, 3)).astype(np.float32)
            want = quantize(x, qp, dtype)
            got = quantize(x, qp, dtype, value_range=(float(x.min()), float(x.max())))
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"{qp} {spread}")


def test_the_real_values_that_quantize_in_range_end_exactly_where_quantize_clips() -> None:
    """The per-tensor edges that let a batch skip the clip: the last value inside quantizes
    to the integer end, the next float32 value beyond clips."""
    from quantlens.models.quantization import _affine

    for scale, zp, dtype in ((1 / 255, -128, "int8"), (0.02, 128, "uint8"), (1 / 128, 0, "int8"),
                             (0.0039215558, -128, "int8"), (3e-5, 7, "int16")):  # fmt: skip
        qp = QuantParams((scale,), (zp,), 0)
        info = np.iinfo(dtype)
        fits = _affine(qp, np.dtype(dtype), 1).fits
        assert fits is not None
        first, last = np.float32(fits[0]), np.float32(fits[1])
        edges = np.array([first, last], np.float32)
        beyond = np.array([np.nextafter(first, np.float32(-np.inf)),
                           np.nextafter(last, np.float32(np.inf))], np.float32)  # fmt: skip
        inv = np.float32(1) / np.float32(scale)
        unclipped = np.rint(edges * inv) + zp
        assert info.min <= unclipped[0] and unclipped[1] <= info.max
        outside = np.rint(beyond * inv) + zp
        assert outside[0] < info.min and outside[1] > info.max
        np.testing.assert_array_equal(quantize(edges, qp, dtype, value_range=(fits[0], fits[1])),
                                      quantize(edges, qp, dtype))  # fmt: skip
    assert _affine(QuantParams((0.0,), (0,), 0), np.dtype("int8"), 1).fits is None
