"""Tiny models made in fixtures (a few Keras layers, converted with TFLiteConverter)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tf():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    return tf


def _convert(tf, model, *, int8: bool, int8_io: bool, rep: list[np.ndarray] | None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:

        def gen() -> Iterator[list[np.ndarray]]:
            assert rep is not None
            for i in range(min(100, len(rep[0]))):
                yield [r[i : i + 1].astype(np.float32) for r in rep]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@pytest.fixture(scope="session")
def convert(tf) -> Callable[..., bytes]:
    def run(model, rep=None, *, int8=False, int8_io=False) -> bytes:
        return _convert(tf, model, int8=int8, int8_io=int8_io, rep=rep)

    return run


@pytest.fixture(scope="session")
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from quantlens.data import digits as _digits

    x_train, y_train = _digits("train")
    x_test, y_test = _digits("test")
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def digits_models(tf, convert, digits_split, tmp_path_factory) -> dict[str, Path]:
    """A small digits CNN: .keras, float .tflite, int8 (float I/O) and int8-io .tflite."""
    keras = tf.keras
    x_train, y_train, _, _ = digits_split
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    out = tmp_path_factory.mktemp("digits")
    paths = {"keras": out / "cnn.keras"}
    model.save(paths["keras"])
    for name, kw in {
        "float": {},
        "int8": {"int8": True},
        "int8io": {"int8": True, "int8_io": True},
    }.items():
        paths[name] = out / f"cnn_{name}.tflite"
        paths[name].write_bytes(convert(model, [x_train], **kw))
    return paths


@pytest.fixture(scope="session")
def fixed_batch_models(tf, convert, digits_split, tmp_path_factory) -> dict[str, Path]:
    """Models whose batch is 1: one resizable, one with a RESHAPE baked to batch 1."""
    keras = tf.keras
    x_train = digits_split[0]
    out = tmp_path_factory.mktemp("fixed")
    resizable = keras.Sequential(
        [
            keras.Input((8, 8, 1), batch_size=1),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    baked = keras.Sequential(
        [
            keras.Input((8, 8, 1), batch_size=1),
            keras.layers.Lambda(lambda t: tf.reshape(t, [1, 64])),
            keras.layers.Dense(10),
        ]
    )
    paths = {}
    for name, m in (("resizable", resizable), ("baked", baked)):
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(convert(m, [x_train], int8=True, int8_io=True))
    paths["baked_float"] = out / "baked_float.tflite"
    paths["baked_float"].write_bytes(convert(baked))
    return paths


@pytest.fixture(scope="session")
def multi_io_models(tf, convert, tmp_path_factory) -> dict[str, Path]:
    """Two inputs, two outputs (a softmax head and a regression head), declared so that the
    converter's tensor order differs from the Keras order."""
    keras = tf.keras
    rng = np.random.default_rng(0)
    feats = keras.Input((4,), name="feats")
    aux = keras.Input((3,), name="aux")
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([feats, aux]))
    cls = keras.layers.Dense(3, activation="softmax", name="zcls")(h)
    reg = keras.layers.Dense(2, name="areg")(h)
    model = keras.Model([feats, aux], [cls, reg])
    out = tmp_path_factory.mktemp("multi")
    paths = {"keras": out / "multi.keras"}
    model.save(paths["keras"])
    rep = [rng.random((100, 4), dtype=np.float32), rng.random((100, 3), dtype=np.float32)]
    paths["int8io"] = out / "multi_int8io.tflite"
    paths["int8io"].write_bytes(convert(model, rep, int8=True, int8_io=True))
    return paths


def four_dense(tf, middle: str):
    """A 16 -> 4 classifier of four Dense layers, seeded: 'd1' (ReLU), ``middle`` (linear),
    'd3' (ReLU), 'out'; the fixtures plant their trap in ``middle``."""
    keras = tf.keras
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((16,), name="x"),
        keras.layers.Dense(32, activation="relu", name="d1"),
        keras.layers.Dense(32, name=middle),
        keras.layers.Dense(32, activation="relu", name="d3"),
        keras.layers.Dense(4, name="out"),
    ])  # fmt: skip


@pytest.fixture(scope="session")
def bad_layer(tf, tmp_path_factory) -> dict[str, Path]:
    """A classifier whose middle layer 'bad' has one output channel with a range a thousand
    times the others (its consumer compensates), so per-tensor int8 quantization of that
    layer's output crushes every other channel. Labels are the float model's decisions on
    samples where it is confident, so a well-quantized model keeps them all."""
    from quantlens.quantize import quantize

    model = four_dense(tf, "bad")
    k, b = model.get_layer("bad").get_weights()
    k[:, 0] *= 1000
    b[0] *= 1000
    model.get_layer("bad").set_weights([k, b])
    k3, b3 = model.get_layer("d3").get_weights()
    k3[0, :] /= 1000
    model.get_layer("d3").set_weights([k3, b3])
    x = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    top2 = np.sort(logits, axis=1)[:, -2:]
    confident = (top2[:, 1] - top2[:, 0]) > 0.5 * logits.std()
    x, y = x[confident][:300], logits[confident][:300].argmax(1)
    out = tmp_path_factory.mktemp("bad")
    np.savez(out / "data.npz", x=x, y=y)
    model.save(out / "bad.keras")
    made = quantize(out / "bad.keras", ["float32", "int8"], out, calibration=out / "data.npz")
    return {
        "keras": out / "bad.keras",
        "data": out / "data.npz",
        "float": Path(made.variant("float32").path),
        "int8": Path(made.variant("int8").path),
    }


@pytest.fixture
def workers_for_any_work(monkeypatch) -> None:
    """Worker processes for the tests' small models and sets, whose runs take far less time
    than a worker process needs to repay its start-up (they would run inline): the pool
    itself is what these tests exercise."""
    from quantlens.engine import workers

    monkeypatch.setattr(workers, "MIN_SECONDS_PER_PROCESS", 1e-12)
