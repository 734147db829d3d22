"""Sanity judges: what makes a run's numbers suspect is said, with the numbers to check it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import quantlens
from quantlens.cli import main
from quantlens.errors import ConfigError


def _clip_share(x: np.ndarray, scale: float, zp: int) -> float:
    q = np.rint(x.astype(np.float64) / scale) + zp
    return float(np.mean((q < -128) | (q > 127)))


def test_data_scaled_unlike_the_calibration_is_flagged(digits_models, digits_split, tmp_path):
    x, y = digits_split[2], digits_split[3]
    raw = x * 16  # the digits' pixel counts 0-16, where the model was calibrated on [0, 1]
    np.savez(tmp_path / "raw.npz", x=raw, y=y)
    np.savez(tmp_path / "scaled.npz", x=x, y=y)
    out = tmp_path / "r.json"
    code = main(["evaluate", str(digits_models["float"]), str(digits_models["int8"]),
                 str(digits_models["int8io"]), "--data", str(tmp_path / "raw.npz"), "--no-bench",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    warnings = json.loads(out.read_text())["warnings"]
    assert [(w["code"], w["model"]) for w in warnings] == [
        ("input_saturation", "cnn_int8"), ("input_saturation", "cnn_int8io")]  # fmt: skip
    # the share, from the int8-io model's own input parameters (the same as the QUANTIZE op's)
    detail = Interpreter(model_path=str(digits_models["int8io"])).get_input_details()[0]
    share = _clip_share(raw, *detail["quantization"])
    assert share > 0.01
    assert f"{share:.1%} of the values of input" in warnings[1]["message"]
    assert f"{share:.1%}" in warnings[0]["message"]
    result = quantlens.evaluate(digits_models["float"], [digits_models["int8"]],
                                tmp_path / "scaled.npz")  # fmt: skip
    assert result.warnings == ()


def test_a_quantized_reference_is_flagged(digits_models) -> None:
    result = quantlens.evaluate(digits_models["int8"], [digits_models["float"]], "digits")
    assert [(w.code, w.model) for w in result.warnings] == [("reference_quantized", "cnn_int8")]


def test_diagnose_refuses_swapped_models(digits_models, capsys) -> None:
    code = main(["diagnose", str(digits_models["int8"]), str(digits_models["float"]),
                 "--data", "digits"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "give the float model first" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match="both models are quantized"):
        quantlens.diagnose(digits_models["int8"], digits_models["int8io"], "digits")


def test_diagnose_reports_the_share_of_values_at_the_integer_limits(bad_layer) -> None:
    x = np.load(bad_layer["data"])["x"][:64]
    diagnosis = quantlens.diagnose(bad_layer["float"], bad_layer["int8"], (x,), samples=64)
    interp = Interpreter(
        model_path=str(bad_layer["int8"]), experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )  # fmt: skip
    interp.allocate_tensors()
    hits: dict[int, list[int]] = {}
    for i in range(64):
        interp.set_tensor(interp.get_input_details()[0]["index"], x[i : i + 1])
        interp.invoke()
        for row in diagnosis.tensors:
            if row.dtype == "int8":
                v = interp.get_tensor(row.index)
                h = hits.setdefault(row.index, [0, 0])
                h[0] += int(np.count_nonzero((v == -128) | (v == 127)))
                h[1] += v.size
    int8_rows = [r for r in diagnosis.tensors if r.dtype == "int8"]
    assert int8_rows and all(r.clipped_fraction is not None for r in int8_rows)
    for row in int8_rows:
        a, n = hits[row.index]
        assert row.clipped_fraction == pytest.approx(a / n)
    assert max(r.clipped_fraction or 0.0 for r in int8_rows) > 0
