"""Scale: harness overhead, the seed's loop, local workers, Ray, and memory against set size.

Run: .venv/bin/python benchmarks/scale.py [--samples 4000]
Every ratio is measured in this run, against a baseline measured in this run:
1. evaluate's throughput / a bare ai_edge_litert loop (set_tensor, invoke, get_tensor) on the
   same batches and threads — target ≥ 0.9;
2. evaluate / the seed's loop (tf.data batches, set_tensor/invoke, tf.keras.metrics updates);
3. --workers 2 / --workers 1, single-threaded interpreters, 2 cores — target ≥ 1.7;
4. Ray (local, 2 CPUs, start-up included) / --workers 2 — target ≥ 0.8;
5. peak RSS of an evaluation over 10× the samples / 1× (fresh processes, memory-mapped
   .npy) — target ≤ 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _models import mlp

import quantlens
from quantlens.models.keras import import_tensorflow

BATCH = 32


def bare_loop(path: Path, x: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [BATCH, *x.shape[1:]])
    interp.allocate_tensors()
    t0 = time.perf_counter()
    for start in range(0, len(x) - BATCH + 1, BATCH):
        interp.set_tensor(inp["index"], x[start : start + BATCH])
        interp.invoke()
        interp.get_tensor(out["index"])
    return time.perf_counter() - t0


def seed_loop(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    tf = import_tensorflow("the seed's loop")
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [BATCH, *x.shape[1:]])
    interp.allocate_tensors()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)
    mse, mae = tf.keras.metrics.MeanSquaredError(), tf.keras.metrics.MeanAbsoluteError()
    t0 = time.perf_counter()
    for xb, yb in data:
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        pred = interp.get_tensor(out["index"])
        mse.update_state(yb, pred)
        mae.update_state(yb, pred)
    mse.result(), mae.result()
    return time.perf_counter() - t0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_rss_mb(path: Path, data: Path) -> float:
    code = (
        "import quantlens, sys\n"
        f"quantlens.evaluate({str(path)!r}, [], {str(data)!r}, batch_size={BATCH})\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20_000, help="for 1, 2 and 5")
    parser.add_argument("--parallel-samples", type=int, default=240_000, help="for 3 and 4")
    args = parser.parse_args()
    n = args.samples - args.samples % BATCH
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        path = mlp(tmp_dir, width=2048, depth=6)  # ~0.25 ms per sample on one thread
        model = quantlens.load_model(path, num_threads=1)  # loaded once, like the bare loop's
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, size=(n, 64)).astype(np.float32)
        y = rng.normal(size=(n, 10)).astype(np.float32)

        bare = bare_loop(path, x)
        ours = timed(lambda: quantlens.evaluate(model, [], (x, y), batch_size=BATCH))
        rates = f"bare {n / bare:,.0f} samples/s, evaluate {n / ours:,.0f}"
        print(f"1. harness: evaluate throughput / bare invoke loop = {bare / ours:.3f} "
              f"({rates}; target >= 0.9)")  # fmt: skip
        seed = seed_loop(path, x, y)
        print(f"2. seed's loop: evaluate is {seed / ours:.2f}x as fast "
              f"(seed {n / seed:,.0f} samples/s with tf.keras.metrics updates)")  # fmt: skip

        small = tmp_dir / "small.npy"
        np.save(small, x[: n // 10])
        big = tmp_dir / "big.npy"
        np.save(big, np.resize(x[: n // 10], (n, *x.shape[1:])))
        ratio = peak_rss_mb(path, big) / peak_rss_mb(path, small)
        print(f"5. memory: peak RSS at 10x the samples / 1x = {ratio:.3f} (target <= 1.1)")

        m = args.parallel_samples
        data = tmp_dir / "xy.npz"
        np.savez(data, x=np.resize(x, (m, 64)), y=np.resize(y, (m, 10)))
        one = timed(lambda: quantlens.evaluate(path, [], data, num_threads=1, workers=1))
        two = timed(lambda: quantlens.evaluate(path, [], data, num_threads=1, workers=2))
        print(f"3. workers: --workers 2 / --workers 1 = {one / two:.2f}x on {os.cpu_count()} "
              f"cores, {m:,} samples (target >= 1.7)")  # fmt: skip
        try:
            ray = timed(lambda: quantlens.evaluate(path, [], data, num_threads=1, workers=2,
                                                   engine="ray"))  # fmt: skip
            print(f"4. Ray: local Ray (2 CPUs, start-up included) / --workers 2 = {two / ray:.2f} "
                  "(target >= 0.8)")  # fmt: skip
        except quantlens.QuantlensError as exc:
            print(f"4. Ray: skipped ({exc})")
        print(json.dumps({"samples": n, "parallel_samples": m}))


if __name__ == "__main__":
    main()
