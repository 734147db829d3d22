"""Quantized .tflite variants of a Keras or SavedModel source through tf.lite.TFLiteConverter."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError, brief
from quantlens.models.keras import import_tensorflow, load_keras, refuse_untrusted_saved_model
from quantlens.quantize.precision import FLOAT, Plan, Rebuilder, float_only
from quantlens.quantize.verify import Expectation, activations, weights

#: Mode -> (description, needs calibration data).
TF_MODES: dict[str, tuple[str, bool]] = {
    "float32": ("no quantization", False),
    "float16": ("float16 weights, float32 compute", False),
    "dynamic": ("dynamic range: int8 weights, activations quantized on the fly", False),
    "int8": ("full integer int8 weights and activations, float input/output", True),
    "int8-io": ("full integer int8, int8 input and output", True),
    "int16x8": ("int16 activations, int8 weights, float input/output", True),
}


def representative(
    samples: list[list[np.ndarray]], names: list[str]
) -> Callable[[], Iterator[Any]]:
    """Calibration samples one at a time: a list for one input, a dict by name for several."""

    def gen() -> Iterator[Any]:
        for row in samples:
            yield row if len(row) == 1 else dict(zip(names, row, strict=True))

    return gen


def _converter(tf: Any, source: Path) -> tuple[Any, str]:
    if source.is_dir():
        refuse_untrusted_saved_model(str(source))
        return tf.lite.TFLiteConverter.from_saved_model(str(source)), "from_saved_model"
    model = load_keras(tf, str(source))
    return tf.lite.TFLiteConverter.from_keras_model(model), "from_keras_model"


def make_converter(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str]
) -> tuple[Any, dict[str, Any]]:
    """A TFLiteConverter set up for ``mode``, and the settings it was given."""
    tf = import_tensorflow("converting a Keras model or SavedModel")
    converter, how = _converter(tf, source)
    settings: dict[str, Any] = {
        "tool": f"tf.lite.TFLiteConverter.{how}",
        "tensorflow": tf.__version__,
    }
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        settings["optimizations"] = ["DEFAULT"]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
        settings["supported_types"] = ["float16"]
    if TF_MODES[mode][1]:
        assert calibration is not None
        converter.representative_dataset = representative(calibration, input_names)
        settings["representative_dataset_samples"] = len(calibration)
        ops = (
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            if mode == "int16x8"
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        )
        converter.target_spec.supported_ops = [ops]
        settings["supported_ops"] = [ops.name]
    if mode == "int8-io":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        settings["inference_input_type"] = settings["inference_output_type"] = "int8"
    return converter, settings


#: Mode -> what its variant must hold (checked after quantizing; see quantize/verify.py).
EXPECTED: dict[str, Expectation] = {
    "dynamic": weights(),
    "float16": weights("float16"),
    "int8": activations("int8"),
    "int8-io": activations("int8"),
    "int16x8": activations("int16"),
}

#: The modes whose layers the TFLite debugger can keep in float.
TF_STATIC_MODES = ("int8", "int8-io", "int16x8")


def quantize_source(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str],
    reference: Any,
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """The backend's quantizer: :func:`convert_tf`."""
    return convert_tf(source, mode, calibration, input_names)


def keep_in_float_builder(
    source: Path, mode: str, calibration: list[list[np.ndarray]], input_names: list[str]
) -> Rebuilder:
    """Rebuilds ``mode`` with some ops (by output tensor name) kept in float, through the
    TFLite converter's quantization debugger."""
    if mode not in TF_STATIC_MODES:
        modes = ", ".join(TF_STATIC_MODES)
        raise ConfigError(f"keeping layers in float needs a static mode ({modes}) for a Keras "
                          f"source, not '{mode}'")  # fmt: skip

    lock = threading.Lock()

    def build(plan: Plan) -> tuple[bytes, dict[str, Any]]:
        keep = float_only(plan, "the TFLite converter")
        with lock, captured_output():  # one conversion at a time; the converter reports its
            # settings on stdout
            dbg = debugger(source, mode, calibration, input_names, keep)
            return bytes(dbg.get_nondebug_quantized_model()), {"denylisted_nodes": keep}

    return Rebuilder(mode, (FLOAT,), build)


def convert_tf(
    source: Path, mode: str, calibration: list[list[np.ndarray]] | None, input_names: list[str]
) -> tuple[bytes, dict[str, Any]]:
    """Convert a Keras file or SavedModel directory to .tflite bytes in ``mode``.

    Returns:
        The model bytes and the converter settings used, for the manifest.
    """
    converter, settings = make_converter(source, mode, calibration, input_names)
    with captured_output() as log:
        try:
            result = converter.convert()
        except Exception as exc:  # the converter raises many types; say what it said
            first = brief(exc)
            raise ConversionError(f"the TFLite converter failed in mode '{mode}': {first}") from exc
    del log
    return bytes(result), settings


def debugger(
    source: Path,
    mode: str,
    calibration: list[list[np.ndarray]],
    input_names: list[str],
    keep_in_float: list[str] | None = None,
) -> Any:
    """A ``tf.lite.experimental.QuantizationDebugger`` for a static ``mode``, with the ops whose
    output tensors are named in ``keep_in_float`` left unquantized (``denylisted_nodes``)."""
    tf = import_tensorflow("the TFLite quantization debugger")
    converter, _ = make_converter(source, mode, calibration, input_names)
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=list(keep_in_float or [])
    )
    with captured_output():
        try:
            return tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=representative(calibration, input_names),
                debug_options=options,
            )
        except Exception as exc:  # the debugger raises many types; say what it said
            first = brief(exc)
            raise ConversionError(f"the TFLite quantization debugger failed: {first}") from exc
