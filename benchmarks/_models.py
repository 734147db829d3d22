"""Models for the benchmark scripts, built on the spot (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def conv_net(out_dir: Path, size: int = 96, int8: bool = False) -> Path:
    """A small MobileNet-like CNN (random weights) as float32 or full-int8 .tflite."""
    from quantlens._quiet import captured_output
    from quantlens.models.keras import import_tensorflow

    tf = import_tensorflow("building the benchmark models")

    keras = tf.keras
    keras.utils.set_random_seed(0)
    layers = [keras.Input((size, size, 3))]
    for filters in (16, 32, 64, 64):
        layers += [
            keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(20):
                yield [rng.random((1, size, size, 3), dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = rep
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with captured_output():
        data = converter.convert()
    path = out_dir / f"convnet{size}_{'int8' if int8 else 'float'}.tflite"
    path.write_bytes(data)
    return path


def mlp(out_dir: Path, width: int = 1024, depth: int = 4, features: int = 64) -> Path:
    """A deep float MLP (random weights): milliseconds of compute on a tiny input."""
    from quantlens._quiet import captured_output
    from quantlens.models.keras import import_tensorflow

    tf = import_tensorflow("building the benchmark models")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    layers = [keras.Input((features,))]
    layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    layers.append(keras.layers.Dense(10))
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Sequential(layers))
    with captured_output():
        data = converter.convert()
    path = out_dir / f"mlp{width}x{depth}.tflite"
    path.write_bytes(data)
    return path


def tiny_pair(out_dir: Path) -> tuple[Path, Path, Path]:
    """Two tiny .tflite models (a float CNN on 8×8 inputs and its dynamic-range quantization,
    about 1.5 µs per invoke) and an .npz of 64 samples for them."""
    from quantlens._quiet import captured_output
    from quantlens.models.keras import import_tensorflow

    tf = import_tensorflow("building the benchmark models")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])  # fmt: skip
    paths = []
    for name, optimize in (("tiny_float", False), ("tiny_dynamic", True)):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        with captured_output():
            data = converter.convert()
        paths.append(out_dir / f"{name}.tflite")
        paths[-1].write_bytes(data)
    data_path = out_dir / "tiny.npz"
    np.savez(data_path, x=np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32))
    return paths[0], paths[1], data_path
