"""quantize(): write one quantized .tflite per mode, and a manifest of exactly how.

Keras files and SavedModels go through ``tf.lite.TFLiteConverter``; a float ``.tflite`` goes
through litert-quantizer. Static modes are calibrated on the first
:data:`DEFAULT_CALIBRATION_SAMPLES` samples of the calibration data, one sample per invoke,
the same way for every mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.backends import backend_for, resolve
from quantlens.data import load_dataset
from quantlens.errors import ConfigError, ConversionError, QuantlensError
from quantlens.files import write_json
from quantlens.models.batching import one_sample_feeds
from quantlens.models.loading import load_model
from quantlens.models.quantization import integer_parts
from quantlens.quantize.verify import not_quantized_reason
from quantlens.results import FailedMode, ModelInfo, QuantizedVariant, QuantizeResult, TensorSpec

DEFAULT_CALIBRATION_SAMPLES = 200
MANIFEST = "manifest.json"


def available_modes(path: str | os.PathLike[str]) -> dict[str, tuple[str, bool]]:
    """Mode -> (description, needs calibration) for a source model."""
    return dict(resolve(backend_for(path).modes))


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
            kind = f"{backend_for(path).title} source"
            raise ConfigError(
                f"mode '{m}' does not apply to {kind}; use one of {', '.join(options)} or all"
            )
    return list(dict.fromkeys(wanted))


#: Calibration data: one feed per sample, one array per model input, each laid out and typed
#: as the model takes it (a batch of one on its batch axis; a scalar as is).
Samples = list[list[np.ndarray]]


def calibration_arrays(
    data: Any, specs: Sequence[TensorSpec], samples: int,
    constants: Mapping[str, Any] | None = None,
) -> Samples:  # fmt: skip
    """The first ``samples`` samples of ``data``, each as the model's inputs take it
    (``constants``: inputs fixed by name, as evaluate fixes them)."""
    if samples < 1:
        raise ConfigError(f"calibration samples must be at least 1, got {samples}")
    batches = list(load_dataset(data).bind(specs, batch_size=samples, limit=samples,
                                           constants=constants))  # fmt: skip
    arrays = [np.concatenate([b.inputs[i] for b in batches]) for i in range(len(specs))]
    return one_sample_feeds(arrays, specs)


def quantize(
    model: str | os.PathLike[str],
    modes: str | list[str],
    out_dir: str | os.PathLike[str],
    *,
    calibration: Any = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    status: Callable[[str], None] | None = None,
    constants: Mapping[str, Any] | None = None,
) -> QuantizeResult:
    """Write one quantized ``.tflite`` per mode into ``out_dir`` with a ``manifest.json``.

    Args:
        model: a Keras file, SavedModel directory, or float ``.tflite``.
        modes: mode names (a list or comma-separated), or ``"all"`` for every mode that
            applies to the source (see :func:`available_modes`).
        out_dir: where the files go (created if missing).
        calibration: data for static modes (anything ``load_dataset`` takes).
        calibration_samples: how many samples calibrate each static mode.
        status: called with a line of text before each mode.
        constants: inputs fixed to one value for every calibration sample, by name (an
            audio model's sample rate), as ``evaluate`` takes them.

    A mode that cannot be made, or whose file is not quantized the way the mode says (the
    quantizer could not read the graph or reach its weights), is listed in the result's
    ``failed`` with its reason; the other modes go on, and the manifest is always written.

    Raises:
        ConfigError: a mode does not apply, a static mode has no calibration data, or the
            source is already integer-quantized.
        ConversionError: no mode could be made.
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
    source_info = reference.info()
    already = integer_parts(source_info)
    if already:
        raise ConfigError(
            f"{src.name} is already quantized ({', '.join(already)}); quantize the float "
            "model it was made from, or evaluate it against that model"
        )
    names = [s.name for s in reference.inputs]
    calib = (
        calibration_arrays(calibration, reference.inputs, calibration_samples, constants)
        if static
        else None
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants, failed = [], []
    for k, mode in enumerate(chosen, start=1):
        if status is not None:
            status(f"quantizing {src.name} into {mode} ({k} of {len(chosen)})…")
        try:
            variants.append(_make(src, mode, calib if options[mode][1] else None, names,
                                  reference, source_info, out))  # fmt: skip
        except NotQuantizedError as exc:
            failed.append(FailedMode(mode, str(exc), "not_quantized"))
        except QuantlensError as exc:
            failed.append(FailedMode(mode, str(exc)))
    result = QuantizeResult(
        source=str(src),
        calibration_source=str(getattr(calibration, "source", calibration)) if static else None,
        calibration_samples=len(calib) if calib else 0,
        variants=tuple(variants),
        failed=tuple(failed),
    )
    write_json(result.to_dict(), out / MANIFEST)
    if not variants:
        reasons = "; ".join(f.reason for f in failed)
        raise ConversionError(f"no mode could be made from {src.name}: {reasons}")
    return result


class NotQuantizedError(ConversionError):
    """A quantizer wrote a file that is not quantized the way its mode says."""


def _make(
    src: Path, mode: str, calib: Samples | None, names: list[str], reference: Any,
    source_info: ModelInfo, out: Path,
) -> QuantizedVariant:  # fmt: skip
    """Write one variant and check it is what ``mode`` promises.

    Raises:
        ConversionError: the quantizer failed (NotQuantizedError: it wrote a float file).
    """
    backend = backend_for(src)
    suffix = backend.variant_suffix
    data, settings = resolve(backend.quantizer)(src, mode, calib, names, reference)
    path = out / f"{src.stem}_{mode}{suffix}"
    path.write_bytes(data)
    try:
        made = load_model(path).info()
    except QuantlensError as exc:
        path.unlink(missing_ok=True)
        raise ConversionError(f"mode '{mode}' wrote a model that does not load: {exc}") from exc
    expected = resolve(backend.expectations).get(mode) if backend.expectations else None
    reason = not_quantized_reason(expected, mode, source_info, made)
    if reason is not None:
        path.unlink(missing_ok=True)
        raise NotQuantizedError(reason)
    return QuantizedVariant(mode, settings, str(path), len(data))
