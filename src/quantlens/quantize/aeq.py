"""Quantized variants of a float .tflite through litert-quantizer (ai-edge-quantizer's
successor, same API; the older package is used when only it is installed). No TensorFlow
needed."""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError, brief, require
from quantlens.quantize.precision import (
    FLOAT,
    INT16,
    WEIGHTS_ONLY,
    Boundary,
    Plan,
    Rebuilder,
)
from quantlens.quantize.verify import Expectation, activations, weights
from quantlens.results import boundary_of

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
) -> Rebuilder:
    """Rebuilds ``mode`` with a plan (ops by the float model's output tensor name, or a
    boundary's key) through per-op entries in ai-edge-quantizer's recipe. Static modes offer
    every precision and can keep the model's inputs and outputs float; the calibration is
    run once and reused by every build (it records each tensor's range, whatever the plan)."""
    if mode not in AEQ_MODES:
        raise ConfigError(f"mode '{mode}' does not apply to a .tflite source; use one of "
                          f"{', '.join(AEQ_MODES)}")  # fmt: skip
    static = AEQ_MODES[mode][1]
    precisions = {"int8": (FLOAT, INT16, WEIGHTS_ONLY), "int16x8": (FLOAT, WEIGHTS_ONLY)}
    lock = threading.Lock()
    calibrated: dict[str, Any] = {}

    def build(plan: Plan) -> tuple[bytes, dict[str, Any]]:
        with lock:  # the quantizer is pure Python: nothing to gain from threads, and the
            # cached calibration is filled once
            return quantize_tflite(source, mode, calibration, input_names, "serving_default",
                                   plan=plan, calibrated=calibrated)  # fmt: skip

    return Rebuilder(mode, precisions.get(mode, (FLOAT,)), build,
                     _boundaries(source) if static else ())  # fmt: skip


def _boundaries(source: Path) -> tuple[Boundary, ...]:
    """The model's inputs and outputs, which a static recipe turns to integers."""
    from quantlens.models.tflite_file import read_graph

    graph = read_graph(source.read_bytes(), str(source))
    return tuple(Boundary(kind, graph.tensors[t].name)
                 for kind, ids in (("INPUT", graph.inputs), ("OUTPUT", graph.outputs))
                 for t in ids)  # fmt: skip


def _plan_entries(recipe: Any, plan: Plan) -> list[dict[str, Any]]:
    """Recipe entries for a plan, appended after the mode's: the latest match wins. An op's
    scope is its output names, each followed by ';' (a model output's is its tensor's)."""
    configs = {
        INT16: dict(recipe.static_wi8_ai16()[0]),
        WEIGHTS_ONLY: dict(recipe.weight_only_wi8_afp32()[0]),
    }
    entries = []
    for key, precision in plan.items():
        operation, name = boundary_of(key) or ("*", key)
        regex = f"^{re.escape(name)};"
        if precision == FLOAT:
            entries.append({"regex": regex, "operation": operation, "algorithm_key": "no_quantize"})
        else:
            entries.append({**configs[precision], "regex": regex, "operation": operation})
    return entries


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
    plan: Plan | None = None,
    calibrated: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Quantize a float .tflite with the ai-edge-quantizer recipe of ``mode``.

    Args:
        plan: ops (by output tensor name) or boundaries (``"INPUT name"``) to keep at another
            precision (:mod:`quantlens.quantize.precision`); the recipe gains an entry for
            each, which takes precedence as the latest match.
        calibrated: a cache for the calibration result, shared by builds of one mode.

    Returns:
        The model bytes and the settings used (the full recipe), for the manifest.
    """
    package, module = quantizer_package()
    quantizer, recipe = module.quantizer, module.recipe
    rp = list(getattr(recipe, AEQ_MODES[mode][2])()) + _plan_entries(recipe, plan or {})
    from quantlens.versions import version_of

    settings: dict[str, Any] = {
        "tool": module.__name__,
        "package": package,
        "version": version_of(package),
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
                cache = {} if calibrated is None else calibrated
                if "result" not in cache:
                    samples = [dict(zip(input_names, f, strict=True)) for f in calibration]
                    cache["result"] = qt.calibrate({signature: samples})
                calib = cache["result"]
                settings["calibration_samples"] = len(calibration)
            result = qt.quantize(calib, enable_progress_report=False)
    except Exception as exc:  # the quantizer raises many types; say what it said
        first = brief(exc)
        raise ConversionError(f"{package} failed in mode '{mode}': {first}") from exc
    return bytes(result.quantized_model), settings
