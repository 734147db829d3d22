"""Peak memory of `quantlens bench` and of evaluate's built-in benchmark, whatever the number of
timed runs: two tiny models (about 1.5 µs per invoke, so about 300,000 rounds a second),
`--min-seconds 1` and `--min-seconds 10`, measured with `/usr/bin/time -v` (the peak RSS of
the process and of its children, the memory probes included).

The baseline does what any benchmark of these models must: import the runtime, load both
models, and time their invokes in interleaved rounds for the same duration, keeping nothing.
The target is a peak under 300 MB at any duration (and no growth from 1 s to 10 s).

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _models import tiny_pair

TARGET_MB = 300.0

BASELINE = """
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interps = []
for path in sys.argv[2:]:
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interps.append(it)
end = time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    for it in interps:
        t0 = time.perf_counter_ns(); it.invoke(); t1 = time.perf_counter_ns()
"""


def peak_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS in MB and wall time in seconds of a command, from /usr/bin/time -v."""
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)[1]
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    return rss / 1024, seconds


def main() -> None:
    quantlens = str(Path(sys.executable).with_name("quantlens"))
    with tempfile.TemporaryDirectory() as tmp:
        a, b, data = tiny_pair(Path(tmp))
        print(f"{'run':<44} {'peak MB':>8} {'baseline':>9} {'ratio':>6} {'wall s':>7}")
        worst = 0.0
        for seconds in (1, 10):
            base, _ = peak_mb([sys.executable, "-c", BASELINE, str(seconds), str(a), str(b)])
            runs = {
                f"quantlens bench --min-seconds {seconds}": [
                    quantlens, "bench", str(a), str(b), "--threads", "1",
                    "--min-seconds", str(seconds),
                ],
                f"evaluate's benchmark, runs ×{seconds}": [
                    sys.executable, "-c",
                    "import sys, quantlens; from quantlens import evaluation as e; "
                    f"e.EVAL_BENCH['min_seconds'] = {seconds}; "
                    "quantlens.evaluate(sys.argv[1], [sys.argv[2]], sys.argv[3], bench=True)",
                    str(a), str(b), str(data),
                ],
            }  # fmt: skip
            for label, cmd in runs.items():
                mb, wall = peak_mb(cmd)
                worst = max(worst, mb)
                print(f"{label:<44} {mb:>8.1f} {base:>9.1f} {mb / base:>6.2f} {wall:>7.1f}")
        verdict = "meets" if worst < TARGET_MB else "MISSES"
        print(f"largest peak {worst:.1f} MB: {verdict} the {TARGET_MB:.0f} MB target")


if __name__ == "__main__":
    main()
