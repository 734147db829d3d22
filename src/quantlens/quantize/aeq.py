"""Quantized variants of a float .tflite through litert-quantizer (ai-edge-quantizer's
successor, same API; the older package is used when only it is installed). No TensorFlow
needed."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError, brief, require
from quantlens.quantize.verify import Expectation, activations, weights

#: Mode -> (description, needs calibration data, name of the ai_edge_quantizer.recipe function).
AEQ_MODES: dict[str, tuple[str, bool, str]] = {
    "dynamic": ("int8 channelwise weights, activations quantized on the fly", False,
                "dynamic_wi8_afp32"),
    "weight-only-int8": ("int8 weights dequantized to float before each op", False,
                         "weight_only_wi8_afp32"),
    "weight-only-int4": ("int4 weights dequantized to float before each op", False,
                         "weight_only_wi4_afp32"),
    "dynamic-int4": ("int4 channelwise weights, dynamic activations", False, "dynamic_wi4_afp32"),
    "dynamic-int4-block32": ("int4 weights in blocks of 32, dynamic activations", False,
                             "dynamic_wi4b32_afp32"),
    "dynamic-int4-block64": ("int4 weights in blocks of 64, dynamic activations", False,
                             "dynamic_wi4b64_afp32"),
    "int8": ("static int8 weights and activations, calibrated", True, "static_wi8_ai8"),
    "int16x8": ("static int16 activations, int8 weights, calibrated", True, "static_wi8_ai16"),
}  # fmt: skip


#: Mode -> (description, needs calibration data), as every backend declares its modes.
MODES: dict[str, tuple[str, bool]] = {m: (d, c) for m, (d, c, _) in AEQ_MODES.items()}
#: Mode -> what its variant must hold (checked after quantizing; see quantize/verify.py).
EXPECTED: dict[str, Expectation] = {
    **{m: weights() for m in ("dynamic", "weight-only-int8", "weight-only-int4", "dynamic-int4",
                              "dynamic-int4-block32", "dynamic-int4-block64")},
    "int8": activations("int8"),
    "int16x8": activations("int16"),
}  # fmt: skip


def quantize_source(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str],
    reference: Any,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """The backend's quantizer: :func:`quantize_tflite` through the model's own signature."""
    signature = getattr(reference, "signature", None) or "serving_default"
    return quantize_tflite(source, mode, calibration, input_names, signature)


def keep_in_float_builder(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str]
) -> Any:
    """A function that rebuilds ``mode`` with some ops (by the float model's output tensor
    name) kept in float, through ai-edge-quantizer's recipe."""
    if mode not in AEQ_MODES:
        raise ConfigError(f"mode '{mode}' does not apply to a .tflite source; use one of "
                          f"{', '.join(AEQ_MODES)}")  # fmt: skip

    def build(keep: list[str]) -> bytes:
        return quantize_tflite(source, mode, calibration, input_names, "serving_default", keep)[0]

    return build


#: The quantizer's distributions, preferred first: litert-quantizer is where new work lands;
#: ai-edge-quantizer (frozen, byte-identical output in these modes) for environments that pin it.
QUANTIZER_PACKAGES = (("litert-quantizer", "litert_quantizer"),
                      ("ai-edge-quantizer", "ai_edge_quantizer"))  # fmt: skip


def quantizer_package() -> tuple[str, Any]:
    """The installed quantizer: its distribution's name and its module (with ``quantizer``
    and ``recipe`` imported).

    Raises:
        MissingDependencyError: neither package is installed.
    """
    import importlib

    for package, name in QUANTIZER_PACKAGES:
        try:
            module = importlib.import_module(name)
            importlib.import_module(f"{name}.quantizer")
            importlib.import_module(f"{name}.recipe")
        except ImportError:
            continue
        return package, module
    require(QUANTIZER_PACKAGES[0][1], "aeq", "quantizing a .tflite file")  # raises, naming it
    raise AssertionError("unreachable")


def quantize_tflite(
    source: Path,
    mode: str,
    calibration: list[list[np.ndarray]] | None,
    input_names: list[str],
    signature: str,
    keep_in_float: list[str] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Quantize a float .tflite with the ai-edge-quantizer recipe of ``mode``.

    Args:
        keep_in_float: output tensor names of ops to leave unquantized (the recipe gains a
            ``no_quantize`` entry per op, which takes precedence as the latest match).

    Returns:
        The model bytes and the settings used (the full recipe), for the manifest.
    """
    package, module = quantizer_package()
    quantizer, recipe = module.quantizer, module.recipe
    rp = list(getattr(recipe, AEQ_MODES[mode][2])())
    rp += [
        # an op's scope is its output names, each followed by ';'
        {"regex": f"^{re.escape(name)};", "operation": "*", "algorithm_key": "no_quantize"}
        for name in keep_in_float or []
    ]
    from importlib.metadata import version

    settings: dict[str, Any] = {
        "tool": module.__name__,
        "package": package,
        "version": version(package),
        "recipe_function": f"{module.__name__}.recipe.{AEQ_MODES[mode][2]}",
        "recipe": rp,
    }
    from quantlens.quantize.normalize import normalize_tflite

    readable, changes = normalize_tflite(source.read_bytes())
    if changes:
        settings["normalised"] = changes
    try:
        with tempfile.TemporaryDirectory() as tmp, captured_output():  # calibration draws a
            # progress bar on stderr
            normalised = Path(tmp) / source.name
            normalised.write_bytes(readable)
            qt = quantizer.Quantizer(str(normalised), rp)
            calib = None
            if qt.need_calibration:
                assert calibration is not None
                samples = [dict(zip(input_names, feed, strict=True)) for feed in calibration]
                calib = qt.calibrate({signature: samples})
                settings["calibration_samples"] = len(samples)
            result = qt.quantize(calib, enable_progress_report=False)
    except Exception as exc:  # the quantizer raises many types; say what it said
        first = brief(exc)
        raise ConversionError(f"{package} failed in mode '{mode}': {first}") from exc
    return bytes(result.quantized_model), settings
