"""Quantized .tflite variants of a Keras model through tf.lite.TFLiteConverter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, ConversionError
from quantlens.models.keras import import_tensorflow

#: Mode name -> what the converter is asked to do.
TF_MODES = {
    "float32": "no quantization",
    "int8-io": "full integer: int8 weights and activations, int8 input and output",
}


def representative_dataset(
    samples: list[np.ndarray], limit: int
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter calibration generator yielding single samples (batch of 1) from arrays."""

    def gen() -> Iterator[list[np.ndarray]]:
        n = min(limit, samples[0].shape[0])
        for i in range(n):
            yield [s[i : i + 1].astype(np.float32) for s in samples]

    return gen


def convert_keras(
    model: Any,
    mode: str,
    calibration: list[np.ndarray] | None = None,
    calibration_samples: int = 200,
) -> bytes:
    """Convert an in-memory Keras model to .tflite bytes in the given mode.

    Args:
        model: a Keras model.
        mode: one of :data:`TF_MODES`.
        calibration: one array per model input, used by static integer modes.
        calibration_samples: how many calibration samples the converter sees.
    """
    tf = import_tensorflow("converting a Keras model")
    if mode not in TF_MODES:
        raise ConfigError(f"unknown mode '{mode}'; use one of {', '.join(TF_MODES)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8-io":
        if calibration is None:
            raise ConfigError(f"mode '{mode}' needs calibration data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(calibration, calibration_samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with captured_output() as log:
        try:
            result = converter.convert()
        except Exception as exc:  # the converter raises many types; say what it said
            raise ConversionError(f"the TFLite converter failed in mode '{mode}': {exc}") from exc
    del log
    return bytes(result)
