"""quantize(): write one quantized .tflite per mode, and a manifest of exactly how.

Keras files and SavedModels go through ``tf.lite.TFLiteConverter``; a float ``.tflite`` goes
through ai-edge-quantizer. Static modes are calibrated on the first
:data:`DEFAULT_CALIBRATION_SAMPLES` samples of the calibration data, one sample per invoke,
the same way for every mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.data import load_dataset
from quantlens.errors import ConfigError
from quantlens.models.base import TensorSpec, load_model
from quantlens.quantize.aeq import AEQ_MODES
from quantlens.quantize.ort import ONNX_MODES
from quantlens.quantize.tf_converter import TF_MODES
from quantlens.report.files import write_json
from quantlens.results import QuantizedVariant, QuantizeResult

DEFAULT_CALIBRATION_SAMPLES = 200
MANIFEST = "manifest.json"


def source_kind(path: Path) -> str:
    """'tflite', 'onnx', or 'tf' (a Keras file or SavedModel directory)."""
    suffix = path.suffix.lower()
    return {".tflite": "tflite", ".onnx": "onnx"}.get(suffix, "tf")


def available_modes(path: str | os.PathLike[str]) -> dict[str, tuple[str, bool]]:
    """Mode -> (description, needs calibration) for a source model."""
    kind = source_kind(Path(path))
    if kind == "tflite":
        return {m: (d, c) for m, (d, c, _) in AEQ_MODES.items()}
    if kind == "onnx":
        return dict(ONNX_MODES)
    return dict(TF_MODES)


def resolve_modes(path: str | os.PathLike[str], modes: str | list[str]) -> list[str]:
    """Expand 'all' and check each mode applies to the source.

    Raises:
        ConfigError: a mode is unknown or does not apply to this kind of source.
    """
    options = available_modes(path)
    wanted = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes)]
    wanted = [m for m in wanted if m]
    if not wanted:
        raise ConfigError(f"give at least one mode; for {Path(path).name}: {', '.join(options)}")
    if "all" in wanted:
        return list(options)
    for m in wanted:
        if m not in options:
            kind = {"tflite": "a .tflite source", "onnx": "an .onnx source"}.get(
                source_kind(Path(path)), "a Keras source"
            )
            raise ConfigError(
                f"mode '{m}' does not apply to {kind}; use one of {', '.join(options)} or all"
            )
    return list(dict.fromkeys(wanted))


def calibration_arrays(data: Any, specs: tuple[TensorSpec, ...], samples: int) -> list[np.ndarray]:
    """The first ``samples`` samples of ``data``, one array per model input."""
    if samples < 1:
        raise ConfigError(f"calibration samples must be at least 1, got {samples}")
    batches = list(load_dataset(data).bind(specs, batch_size=samples, limit=samples))
    return [np.concatenate([b.inputs[i] for b in batches]) for i in range(len(specs))]


def quantize(
    model: str | os.PathLike[str],
    modes: str | list[str],
    out_dir: str | os.PathLike[str],
    *,
    calibration: Any = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
) -> QuantizeResult:
    """Write one quantized ``.tflite`` per mode into ``out_dir`` with a ``manifest.json``.

    Args:
        model: a Keras file, SavedModel directory, or float ``.tflite``.
        modes: mode names (a list or comma-separated), or ``"all"`` for every mode that
            applies to the source (see :func:`available_modes`).
        out_dir: where the files go (created if missing).
        calibration: data for static modes (anything ``load_dataset`` takes).
        calibration_samples: how many samples calibrate each static mode.

    Raises:
        ConfigError: a mode does not apply, or a static mode has no calibration data.
        ConversionError: the converter or quantizer failed.
    """
    src = Path(model)
    chosen = resolve_modes(src, modes)
    options = available_modes(src)
    static = [m for m in chosen if options[m][1]]
    if static and calibration is None:
        raise ConfigError(
            f"mode(s) {', '.join(static)} need calibration data: pass --calibration SOURCE"
        )
    reference = load_model(src)
    names = [s.name for s in reference.inputs]
    calib = (
        calibration_arrays(calibration, reference.inputs, calibration_samples) if static else None
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = []
    for mode in chosen:
        suffix = ".tflite"
        if source_kind(src) == "tflite":
            from quantlens.quantize.aeq import quantize_tflite

            signature = getattr(reference, "signature", None) or "serving_default"
            data, settings = quantize_tflite(src, mode, calib, names, signature)
        elif source_kind(src) == "onnx":
            from quantlens.quantize.ort import quantize_onnx

            data, settings = quantize_onnx(src, mode, calib if options[mode][1] else None, names)
            suffix = ".onnx"
        else:
            from quantlens.quantize.tf_converter import convert_tf

            data, settings = convert_tf(src, mode, calib if options[mode][1] else None, names)
        path = out / f"{src.stem}_{mode}{suffix}"
        path.write_bytes(data)
        variants.append(QuantizedVariant(mode, settings, str(path), len(data)))
    result = QuantizeResult(
        source=str(src),
        calibration_source=str(getattr(calibration, "source", calibration)) if static else None,
        calibration_samples=int(calib[0].shape[0]) if calib else 0,
        variants=tuple(variants),
    )
    write_json(result.to_dict(), out / MANIFEST)
    return result
