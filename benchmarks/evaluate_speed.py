"""evaluate against a bare two-model loop, on a small and a mid-size model.

Run: .venv/bin/python benchmarks/evaluate_speed.py [--repeats N] [--models mnist,mobilenetv2]

The baseline does only what any evaluation must, single-threaded, in this process: two
``ai_edge_litert`` interpreters (the float reference and its full-int8 candidate with int8
input and output), made and allocated as loading a model does, untimed; then, timed,
resized to the batch (as evaluate resizes its models: the first allocation at a batch size
prepares XNNPACK's operators for it) and per batch: set_tensor, invoke and get_tensor on
each, the int8 input quantized and the output dequantized by hand with NumPy, and a NumPy
sum of squared errors and of the reference's squares (the SQNR). quantlens.evaluate runs
the same two models (loaded once, outside the timing, like the baseline's) on the same data
and labels with every default metric on (task metrics, fidelity, distribution statistics,
paired tests) and no benchmark. Each figure is the best of ``--repeats`` runs, interleaved
(15 on the MNIST CNN, whose 0.2 s runs this shared machine's noise moves by 1%; 3 on
MobileNetV2).

Models (random weights, built here; nothing is downloaded):
- an MNIST-size CNN (28×28×1, two conv layers, a few µs per sample), 10,000 samples;
- MobileNetV2 at 128×128 (alpha 1.0), 512 samples.

The bare loop runs at several batch sizes (MNIST CNN 32-256, MobileNetV2 1-32), and
evaluate with no batch size given (its batch and each model's samples per invoke chosen
for it) and at 32. Prints evaluate's throughput / the fastest bare loop's (the headline,
target ≥ 0.95 on both models; the fastest batch is the one with the lowest median, then its
best run counts, as every other figure's; and the median over rounds of the ratio within a
round), / the bare loop's at 32 (the batch the issue measured), and both at 32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import _models  # noqa: F401  (quiets TensorFlow)

import quantlens


def build(out: Path, which: str, rng: np.random.Generator) -> tuple[Path, Path]:
    """(float, full-int8 with int8 I/O) .tflite of ``which``."""
    from quantlens._quiet import captured_output
    from quantlens.models.keras import import_tensorflow

    tf = import_tensorflow("building the benchmark models")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    if which == "mnist":
        shape = (28, 28, 1)
        model = keras.Sequential([
            keras.Input(shape),
            keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(10),
        ])  # fmt: skip
    else:
        shape = (128, 128, 3)
        model = keras.applications.MobileNetV2(input_shape=shape, weights=None, classes=10)
    paths = []
    for name, int8 in (("float", False), ("int8", True)):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:

            def rep():
                for _ in range(16):
                    yield [rng.random((1, *shape), dtype=np.float32)]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = rep
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with captured_output():
            data = converter.convert()
        paths.append(out / f"{which}_{name}.tflite")
        paths[-1].write_bytes(data)
    return paths[0], paths[1]


def bare_loop(ref: Path, cand: Path, x: np.ndarray, batch: int,
              ready: Callable[[], object] | None = None) -> float:  # fmt: skip
    """Seconds for the loop described above (interpreters made outside the timing, resized
    to the batch inside it); ``ready`` is called just before the timing starts (threads
    that start their loops together wait there)."""
    from ai_edge_litert.interpreter import Interpreter

    interps = [Interpreter(model_path=str(p), num_threads=1) for p in (ref, cand)]
    for it in interps:  # as loading a model does: the runtime's delegate applied, untimed
        it.allocate_tensors()

    def resize(size: int) -> None:
        for it in interps:
            it.resize_tensor_input(it.get_input_details()[0]["index"], [size, *x.shape[1:]])
            it.allocate_tensors()

    (ri,), (ro,) = interps[0].get_input_details(), interps[0].get_output_details()
    (ci,), (co,) = interps[1].get_input_details(), interps[1].get_output_details()
    in_scale, in_zp = ci["quantization"]
    out_scale, out_zp = co["quantization"]
    inv = np.float32(1 / in_scale)
    if ready is not None:
        ready()
    t0 = time.perf_counter()
    # Timed, as evaluate's own resize is: the first allocation at a batch size prepares
    # XNNPACK's operators for it (MNIST CNN: 5.9 ms for both models, 3% of the run).
    resize(batch)
    err = power = 0.0
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        if len(xb) < batch:  # the last, partial batch: every sample counts
            resize(len(xb))
        interps[0].set_tensor(ri["index"], xb)
        q = np.clip(np.rint(xb * inv) + in_zp, -128, 127).astype(np.int8)
        interps[1].set_tensor(ci["index"], q)
        interps[0].invoke()
        interps[1].invoke()
        r = interps[0].get_tensor(ro["index"])
        c = (interps[1].get_tensor(co["index"]).astype(np.float32) - out_zp) * out_scale
        err += float(np.square(r - c).sum())
        power += float(np.square(r).sum())
    assert power > 0 and err >= 0
    return time.perf_counter() - t0


def ours(ref: Path, cand: Path, x: np.ndarray, y: np.ndarray, batch: int | None
         ) -> tuple[float, str]:  # fmt: skip
    """Seconds for evaluate on loaded models, and the batch size and samples per invoke it
    ran."""
    models = [quantlens.load_model(p, num_threads=1) for p in (ref, cand)]
    t0 = time.perf_counter()
    result = quantlens.evaluate(models[0], [models[1]], (x, y), batch_size=batch,
                                num_threads=1, workers=1, bench=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    assert result.models[1].fidelity and result.models[1].distribution
    invokes = "/".join(str(m.batching.samples_per_invoke) for m in result.models)
    return seconds, f"batch {result.settings['batch_size']}, {invokes} per invoke"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=0,
                        help="runs of each, the best taken (default: 15 on the MNIST CNN, "
                             "3 on MobileNetV2)")  # fmt: skip
    parser.add_argument("--models", default="mnist,mobilenetv2")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for which in args.models.split(","):
            n = 10_000 if which == "mnist" else 512
            ref, cand = build(Path(tmp), which, rng)
            shape = (28, 28, 1) if which == "mnist" else (128, 128, 3)
            x = rng.random((n, *shape), dtype=np.float32)
            y = rng.integers(0, 10, n)
            bare_batches = (32, 64, 128, 256) if which == "mnist" else (1, 2, 4, 8, 32)
            times: dict[str, list[float]] = {}
            chosen = ""
            for _ in range(args.repeats or (15 if which == "mnist" else 3)):
                for size in bare_batches:
                    times.setdefault(f"bare {size}", []).append(bare_loop(ref, cand, x, size))
                for key, size in (("evaluate auto", None), ("evaluate 32", 32)):
                    seconds, ran = ours(ref, cand, x, y, size)
                    chosen = ran if size is None else chosen
                    times.setdefault(key, []).append(seconds)
            rate = {k: n / min(v) for k, v in times.items()}
            # The fastest batch by its median: the best of several batches' best runs would
            # favour whichever batch drew the luckiest run.
            fastest = min((k for k in times if k.startswith("bare")),
                          key=lambda k: float(np.median(times[k])))  # fmt: skip
            print(f"{which} ({n:,} samples, best of {len(times['bare 32'])}): " + ", ".join(
                f"{k} {v:,.0f}/s" for k, v in rate.items()))  # fmt: skip
            # Each round's own ratio too: runs side by side share the machine's mood of the
            # moment, which moves a best-of figure by a few percent between sessions.
            paired = np.median(np.array(times[fastest]) / np.array(times["evaluate auto"]))
            print(f"  evaluate ({chosen}) / fastest bare loop ({fastest}) = "
                  f"{rate['evaluate auto'] / rate[fastest]:.3f} best of each, {paired:.3f} "
                  f"median of the rounds' (target >= 0.95); / bare loop at 32 = "
                  f"{rate['evaluate auto'] / rate['bare 32']:.3f}; both at 32 = "
                  f"{rate['evaluate 32'] / rate['bare 32']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
