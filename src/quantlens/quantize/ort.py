"""Quantized variants of a float .onnx through onnxruntime.quantization and onnxconverter-common."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError, brief, require
from quantlens.models.quantization import ONNX_QUANTIZED_OPS
from quantlens.quantize.precision import FLOAT, Plan, Rebuilder, float_only
from quantlens.quantize.verify import Expectation, weights

#: Mode -> (description, needs calibration data).
ONNX_MODES: dict[str, tuple[str, bool]] = {
    "float16": ("float16 weights and compute, float32 input/output (onnxconverter-common)", False),
    "dynamic": ("int8 weights, activations quantized on the fly (quantize_dynamic)", False),
    "int8": ("static int8 QDQ, MinMax calibration (quantize_static)", True),
    "int8-percentile": ("static int8 QDQ, percentile calibration", True),
    "int8-entropy": ("static int8 QDQ, entropy calibration", True),
    "int8-qoperator": ("static int8 in QOperator format (QLinearConv, QLinearMatMul, ...)", True),
}


#: Mode -> what its variant must hold (checked after quantizing; see quantize/verify.py).
_STATIC = Expectation(
    "activations",
    ONNX_QUANTIZED_OPS,
    counted_in="op_counts",
    unreachable=("If", "Loop", "Scan"),
    hint="the model computes inside If/Loop branches, which onnxruntime's static quantizer does "
    "not enter; 'dynamic' does",
)
EXPECTED: dict[str, Expectation] = {
    "float16": weights("float16"),
    "dynamic": weights(),
    **{m: _STATIC for m in ("int8", "int8-percentile", "int8-entropy", "int8-qoperator")},
}


class _Reader:
    """onnxruntime's CalibrationDataReader over arrays: one sample per call."""

    def __init__(self, samples: list[list[np.ndarray]], names: list[str]) -> None:
        self._samples, self._names = samples, names
        self._rows = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._rows, None)
        return None if feed is None else dict(zip(self._names, feed, strict=True))

    def rewind(self) -> None:
        self._rows = iter(self._samples)


def quantize_source(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str],
    reference: Any,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """The backend's quantizer: :func:`quantize_onnx`."""
    return quantize_onnx(source, mode, calibration, input_names)


def keep_in_float_builder(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str]
) -> Rebuilder:
    """Rebuilds ``mode`` with some nodes (by name) kept in float (``nodes_to_exclude``)."""
    if mode not in ONNX_MODES or mode == "float16":
        raise ConfigError(f"keeping nodes in float needs an int8 mode for .onnx, not '{mode}'")

    lock = threading.Lock()

    def build(plan: Plan) -> tuple[bytes, dict[str, Any]]:
        keep = float_only(plan, "onnxruntime")
        with lock:  # quantize_static writes '<model>-inferred.onnx' beside the source
            return quantize_onnx(source, mode, calibration, input_names, keep)

    return Rebuilder(mode, (FLOAT,), build)


def quantize_onnx(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str],
    keep_in_float: list[str] | None = None,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """Quantize a float .onnx in ``mode``; returns the model bytes and the settings used.

    ``keep_in_float`` names nodes left unquantized (onnxruntime's ``nodes_to_exclude``).
    """
    require("onnxruntime", "onnx", "quantizing an .onnx model")
    from importlib.metadata import version

    settings: dict[str, Any] = {"onnxruntime": version("onnxruntime")}
    if keep_in_float:
        settings["nodes_to_exclude"] = list(keep_in_float)
    try:
        with tempfile.TemporaryDirectory() as tmp, captured_output():
            out = Path(tmp) / "model.onnx"
            if mode != "float16":
                import onnx

                from quantlens.quantize.normalize import normalize_onnx

                model, changes = normalize_onnx(onnx.load(str(source)))
                if changes:
                    source = Path(tmp) / "normalised.onnx"
                    onnx.save(model, str(source))
                    settings["normalised"] = changes
            if mode == "float16":
                require("onnxconverter_common", "onnx", "float16 conversion")
                import onnx
                from onnxconverter_common import float16

                model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
                onnx.save(model, str(out))
                settings.update(tool="onnxconverter_common.float16.convert_float_to_float16",
                                keep_io_types=True)  # fmt: skip
            elif mode == "dynamic":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                                 nodes_to_exclude=list(keep_in_float or []),
                                 extra_options={"EnableSubgraph": True})  # fmt: skip
                settings.update(tool="onnxruntime.quantization.quantize_dynamic",
                                weight_type="QInt8",
                                extra_options={"EnableSubgraph": True})  # fmt: skip
            else:
                from onnxruntime.quantization import (
                    CalibrationMethod,
                    QuantFormat,
                    QuantType,
                    quantize_static,
                )

                assert calibration is not None
                methods = {"int8-percentile": CalibrationMethod.Percentile,
                           "int8-entropy": CalibrationMethod.Entropy}  # fmt: skip
                method = methods.get(mode, CalibrationMethod.MinMax)
                fmt = QuantFormat.QOperator if mode == "int8-qoperator" else QuantFormat.QDQ
                quantize_static(
                    str(source), str(out), _Reader(calibration, input_names), quant_format=fmt,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, per_channel=True,
                    nodes_to_exclude=list(keep_in_float or []),
                )  # fmt: skip
                settings.update(
                    tool="onnxruntime.quantization.quantize_static", quant_format=fmt.name,
                    activation_type="QInt8", weight_type="QInt8", per_channel=True,
                    calibrate_method=method.name, calibration_samples=len(calibration),
                )  # fmt: skip
            return out.read_bytes(), settings
    except Exception as exc:  # the quantizers raise many types; say what they said
        first = brief(exc)
        raise ConversionError(f"onnxruntime quantization failed in mode '{mode}': {first}") from exc
