"""evaluate --workers 2 against --workers 1, whole processes, on MobileNetV2-128.

Run: .venv/bin/python benchmarks/workers_speed.py [--samples 2048] [--repeats 3]

The same command twice, as a user runs it: ``quantlens evaluate FLOAT INT8 --data X.npy
--threads 1 --no-bench --workers N`` in a fresh process (start-up, model loading, worker
start-up and merging included), N = 1 and 2, interleaved, the best of ``--repeats`` each.
The models are MobileNetV2 at 128×128 (random weights, alpha 1.0) as float and full int8
(built here, as benchmarks/evaluate_speed.py builds them); the data is ``--samples`` random
images in an uncompressed .npy. Prints the wall times and their ratio; the target is ≥ 1.85
on two cores. The two results are checked equal (the workers change the speed, not the
numbers). Says whether the second worker was a thread of the quantlens process or a worker
process (MobileNetV2's batches are spent in the runtime: a thread).
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

from evaluate_speed import build


def run(ref: Path, cand: Path, data: Path, workers: int, out: Path) -> float:
    """Wall seconds of one ``quantlens evaluate`` process."""
    cmd = [sys.executable, "-m", "quantlens", "evaluate", str(ref), str(cand), "--data",
           str(data), "--threads", "1", "--no-bench", "--workers", str(workers),
           "--json", str(out), "--force"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ref, cand = build(out, "mobilenetv2", rng)
        data = out / "images.npy"
        np.save(data, rng.random((args.samples, 128, 128, 3), dtype=np.float32))
        best = {1: float("inf"), 2: float("inf")}
        for _ in range(args.repeats):
            for workers in (1, 2):
                seconds = run(ref, cand, data, workers, out / f"w{workers}.json")
                best[workers] = min(best[workers], seconds)
        results = [json.loads((out / f"w{w}.json").read_text()) for w in (1, 2)]
        sqnr = [r["models"][1]["fidelity"]["sqnr_db"] for r in results]
        assert abs(sqnr[0] - sqnr[1]) <= 1e-9 * max(1.0, abs(sqnr[0])), sqnr
    print(
        f"MobileNetV2-128, {args.samples} samples, {os.cpu_count()} cores, best of "
        f"{args.repeats}: --workers 1 {best[1]:.2f} s, --workers 2 {best[2]:.2f} s"
    )
    kind = results[1]["settings"]["workers_in"]
    print(f"--workers 2 ({kind}) / --workers 1 speed-up: {best[1] / best[2]:.2f} "
          "(target >= 1.85)")  # fmt: skip


if __name__ == "__main__":
    main()
