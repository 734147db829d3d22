"""Quantized variants of a float .onnx through onnxruntime.quantization and onnxconverter-common."""

from __future__ import annotations

import inspect
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError, brief, require
from quantlens.models.quantization import ONNX_QUANTIZED_OPS
from quantlens.quantize.precision import FLOAT, INT16, Plan, Rebuilder
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
    """Rebuilds ``mode`` with a plan: nodes (by name) kept in float (``nodes_to_exclude``)
    or, in the static QDQ modes, with their outputs quantized to int16 (a
    ``TensorQuantOverrides`` entry per output tensor, read as int16 by every consumer)."""
    if mode not in ONNX_MODES or mode == "float16":
        raise ConfigError(f"keeping nodes in float needs an int8 mode for .onnx, not '{mode}'")
    import onnx

    outputs = {n.name: list(n.output) for n in onnx.load(str(source)).graph.node if n.name}
    qdq = mode in ("int8", "int8-percentile", "int8-entropy")
    lock = threading.Lock()
    # the calibration's ranges do not depend on the plan: computed by the first build, read
    # by the others (where onnxruntime can cache them)
    cache_dir = tempfile.TemporaryDirectory(prefix="quantlens-calibration-")

    def build(plan: Plan) -> tuple[bytes, dict[str, Any]]:
        keep = [n for n, p in plan.items() if p == FLOAT]
        wide = [t for n, p in plan.items() if p == INT16 for t in outputs.get(n, ())]
        if any(p not in (FLOAT, INT16) for p in plan.values()) or (wide and not qdq):
            raise ValueError(f"onnxruntime cannot build {sorted(set(plan.values()))} in {mode}")
        ranges = Path(cache_dir.name) / "ranges.json"
        with lock:  # quantize_static writes '<model>-inferred.onnx' beside the source
            return quantize_onnx(source, mode, calibration, input_names, keep, ranges,
                                 int16_tensors=wide)  # fmt: skip

    return Rebuilder(mode, (FLOAT, INT16) if qdq else (FLOAT,), build, resources=cache_dir)


def quantize_onnx(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str],
    keep_in_float: list[str] | None = None, calibration_cache: Path | None = None,
    int16_tensors: list[str] | None = None,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """Quantize a float .onnx in ``mode``; returns the model bytes and the settings used.

    ``keep_in_float`` names nodes left unquantized (onnxruntime's ``nodes_to_exclude``);
    ``calibration_cache``: a file where a static mode's calibrated ranges are kept for the
    next call on the same model and data (where quantize_static takes calibration_cache_path);
    ``int16_tensors``: activations quantized to int16 instead of int8 (static QDQ modes).
    """
    require("onnxruntime", "onnx", "quantizing an .onnx model")
    from quantlens.versions import version_of

    settings: dict[str, Any] = {"onnxruntime": version_of("onnxruntime")}
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
                cache: dict[str, Any] = {}
                if int16_tensors:
                    settings["int16_tensors"] = list(int16_tensors)
                    cache["extra_options"] = {
                        "TensorQuantOverrides": {t: [{"quant_type": QuantType.QInt16}]
                                                 for t in int16_tensors},
                        "UseQDQContribOps": True,  # 16-bit Q/DQ before opset 21
                    }  # fmt: skip
                if calibration_cache is not None and "calibration_cache_path" in (
                        inspect.signature(quantize_static).parameters):  # fmt: skip
                    cache["calibration_cache_path"] = str(calibration_cache)
                quantize_static(
                    str(source), str(out), _Reader(calibration, input_names), quant_format=fmt,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, per_channel=True,
                    nodes_to_exclude=list(keep_in_float or []), **cache,
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
