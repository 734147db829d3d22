"""evaluate --workers 2 against --workers 1, whole processes, on MobileNetV2-128.

Run: .venv/bin/python benchmarks/workers_speed.py [--samples 2048] [--repeats 3]

The same command twice, as a user runs it: ``quantlens evaluate FLOAT INT8 --data X.npy
--threads 1 --no-bench --workers N`` in a fresh process (start-up, model loading, worker
start-up and merging included), N = 1 and 2, interleaved, the best of ``--repeats`` each
(and the median of each round's own ratio, which a lucky run on one side does not move).
The models are MobileNetV2 at 128×128 (random weights, alpha 1.0) as float and full int8
(built here, as benchmarks/evaluate_speed.py builds them); the data is ``--samples`` random
images in an uncompressed .npy. Prints the wall times and their ratio; the target is ≥ 1.85
on two cores. The two results are checked equal (the workers change the speed, not the
numbers). Says whether the second worker was a thread of the quantlens process or a worker
process (MobileNetV2's batches are spent in the runtime: a thread). quantlens' modules are
byte-compiled first, as installing a package does.

Also prints what this machine gives two cores at that moment: the bare two-model loop of
benchmarks/evaluate_speed.py (at 2 samples per invoke, its fastest on MobileNetV2) over
``--ceiling-samples`` images in one thread, against the same loop over half of them in each
of two threads started together (interpreters made before either clock starts) — the
speed-up two threads of invokes get with nothing else to do: no start-up to share, no
data to read. On this 2-core VM the two cores do not each run an invoke as fast as one
does alone. And what that ceiling allows this command: a run on 2 samples times what no
second core can share (start-up, loading, the probe, the report, exit; its two samples'
own work makes it a slight overestimate), and (that + the rest of the one-worker run) /
(that + the rest / the ceiling) is the most two workers can give.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from evaluate_speed import bare_loop, build


def run(ref: Path, cand: Path, data: Path, workers: int, out: Path,
        limit: int | None = None) -> float:  # fmt: skip
    """Wall seconds of one ``quantlens evaluate`` process (on the first ``limit`` samples)."""
    cmd = [sys.executable, "-m", "quantlens", "evaluate", str(ref), str(cand), "--data",
           str(data), "--threads", "1", "--no-bench", "--workers", str(workers),
           "--json", str(out), "--force"]  # fmt: skip
    if limit is not None:
        cmd += ["--limit", str(limit)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    return time.perf_counter() - t0


def ceiling(ref: Path, cand: Path, x: np.ndarray, repeats: int) -> float:
    """The bare loop over ``x`` in one thread / over each half of it in two threads (the
    slower thread's time), the best of ``repeats`` each."""
    one = two = float("inf")
    halves = (x[: len(x) // 2], x[len(x) // 2 :])
    for _ in range(repeats):
        one = min(one, bare_loop(ref, cand, x, 2))
        start = threading.Barrier(2)
        took = [0.0, 0.0]

        def half(k: int, start: threading.Barrier = start, took: list[float] = took) -> None:
            took[k] = bare_loop(ref, cand, halves[k], 2, ready=start.wait)

        pair = [threading.Thread(target=half, args=(k,)) for k in (0, 1)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        two = min(two, max(took))
    return one / two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ceiling-samples", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Byte-compiled first, as installing a package does: an editable install where
    # PYTHONDONTWRITEBYTECODE is set (this machine) would compile quantlens' modules in every
    # process (80 ms a run here), which no installed copy does.
    import quantlens

    compileall.compile_dir(Path(quantlens.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ref, cand = build(out, "mobilenetv2", rng)
        data = out / "images.npy"
        np.save(data, rng.random((args.samples, 128, 128, 3), dtype=np.float32))
        best = {1: float("inf"), 2: float("inf")}
        rounds = []
        serial = float("inf")  # a run with next to no samples: what no second core can share
        for _ in range(args.repeats):
            took = {w: run(ref, cand, data, w, out / f"w{w}.json") for w in (1, 2)}
            rounds.append(took[1] / took[2])
            best = {w: min(best[w], took[w]) for w in (1, 2)}
            serial = min(serial, run(ref, cand, data, 1, out / "serial.json", limit=2))
        results = [json.loads((out / f"w{w}.json").read_text()) for w in (1, 2)]
        bare = ceiling(ref, cand, np.load(data, mmap_mode="r")[: args.ceiling_samples].copy(),
                       args.repeats)  # fmt: skip
        sqnr = [r["models"][1]["fidelity"]["sqnr_db"] for r in results]
        assert abs(sqnr[0] - sqnr[1]) <= 1e-9 * max(1.0, abs(sqnr[0])), sqnr
    kind = results[1]["settings"]["workers_in"]
    median = statistics.median(rounds)
    bound = best[1] / (serial + (best[1] - serial) / bare)
    # lines within 80 columns
    print(f"MobileNetV2-128, {args.samples} samples, {os.cpu_count()} cores, best of "
          f"{args.repeats}:\n  --workers 1 {best[1]:.2f} s, "
          f"--workers 2 {best[2]:.2f} s")  # fmt: skip
    print(f"--workers 2 ({kind}) / --workers 1: {best[1] / best[2]:.2f} best of each,\n"
          f"  {median:.2f} median of the rounds' ratios (target >= 1.85)")  # fmt: skip
    print(f"the machine's two cores now: bare loops in 2 threads / 1 = {bare:.2f} "
          f"({args.ceiling_samples} samples)")  # fmt: skip
    print(f"a run on 2 samples (start-up, loading, probe, report, exit): {serial:.2f} s; "
          f"the rest\n  of --workers 1's run at that ceiling: two workers give at most "
          f"{bound:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
