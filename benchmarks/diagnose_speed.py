"""diagnose against TensorFlow's QuantizationDebugger, on the same models and samples.

Run: .venv/bin/python benchmarks/diagnose_speed.py [--samples 256] [--models mnist,mobilenetv2]

For each model (an MNIST-size CNN and MobileNetV2 at 128×128, random weights, built here) one
TFLiteConverter with a representative dataset makes the full-int8 model; the same converter
goes to ``tf.lite.experimental.QuantizationDebugger`` with the same ``--samples`` samples.
Timed in this process, models already on disk:
- the debugger: its construction (it calibrates and quantizes a debug model) and ``run()``
  (per-layer statistics) — the baseline is ``run()`` alone, the part that reads the samples;
- ``quantlens.diagnose(float, int8, samples)``: per-tensor and per-channel error of every
  activation, error added per op, weights, end to end.
The target is diagnose ≤ the debugger's ``run()``.

What a process pays once is left out of both, as TensorFlow's import is for the debugger:
quantlens' first diagnosis in a process imports its modules and starts the crash-containment
child (the CLI starts it at its own start-up). A warm-up diagnosis of a one-layer model pair,
timed and printed, pays that first; the models measured are then checked by that child like
any new model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import _models  # noqa: F401  (quiets TensorFlow)

import quantlens


def keras_model(tf, which: str) -> tuple[object, tuple[int, ...]]:
    keras = tf.keras
    keras.utils.set_random_seed(0)
    if which == "mnist":
        shape = (28, 28, 1)
        return keras.Sequential([
            keras.Input(shape),
            keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10),
        ]), shape  # fmt: skip
    shape = (128, 128, 3)
    return keras.applications.MobileNetV2(input_shape=shape, weights=None, classes=10), shape


def warm_up(tf: object, out: Path, rng: np.random.Generator) -> float:
    """Seconds of a first diagnosis, of a one-layer model pair, in this process."""
    from quantlens._quiet import captured_output

    keras = tf.keras  # type: ignore[attr-defined]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = rng.random((16, 4), dtype=np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # type: ignore[attr-defined]
    paths = [out / "warm_float.tflite", out / "warm_int8.tflite"]
    with captured_output():
        paths[0].write_bytes(converter.convert())
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
        paths[1].write_bytes(converter.convert())
    t0 = time.perf_counter()
    quantlens.diagnose(paths[0], paths[1], x)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--models", default="mnist,mobilenetv2")
    args = parser.parse_args()
    from quantlens._quiet import captured_output
    from quantlens.models.keras import import_tensorflow

    tf = import_tensorflow("the benchmark")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"first diagnosis in this process (one Dense layer, 16 samples): "
              f"{warm_up(tf, Path(tmp), rng):.2f} s")  # fmt: skip
        for which in args.models.split(","):
            model, shape = keras_model(tf, which)
            x = rng.random((args.samples, *shape), dtype=np.float32)
            calibration = rng.random((16, *shape), dtype=np.float32)

            def rep(calibration=calibration):
                for i in range(len(calibration)):
                    yield [calibration[i : i + 1]]

            def debug_data(x=x):
                for i in range(len(x)):
                    yield [x[i : i + 1]]

            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            with captured_output():
                float_bytes = converter.convert()
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = rep
            with captured_output():
                int8_bytes = converter.convert()
            paths = [Path(tmp) / f"{which}_{k}.tflite" for k in ("float", "int8")]
            paths[0].write_bytes(float_bytes)
            paths[1].write_bytes(int8_bytes)
            data = Path(tmp) / f"{which}.npz"
            np.savez(data, x=x)

            t0 = time.perf_counter()
            with captured_output():
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=debug_data
                )
            t1 = time.perf_counter()
            with captured_output():
                debugger.run()
            t2 = time.perf_counter()
            result = quantlens.diagnose(paths[0], paths[1], data, samples=args.samples)
            t3 = time.perf_counter()
            assert result.ops and debugger.layer_statistics
            run, ours = t2 - t1, t3 - t2
            print(f"{which} ({args.samples} samples): debugger construct {t1 - t0:.2f} s + run "
                  f"{run:.2f} s ({len(debugger.layer_statistics)} layers); diagnose {ours:.2f} s "
                  f"({len(result.tensors)} tensors) = {ours / run:.2f}× the debugger's run "
                  f"(target <= 1), {ours / (t2 - t0):.2f}× construct + run")  # fmt: skip


if __name__ == "__main__":
    main()
