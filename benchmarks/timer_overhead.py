"""The cost of quantlens' own timing, on a model whose invoke takes microseconds.

Run: .venv/bin/python benchmarks/timer_overhead.py
Two measurements, each printed as a fraction of the model's median latency:
1. timer overhead: the median of an empty call timed by quantlens' loop, less the cost of the
   same empty call in a bare loop (what the clock reads add to each sample);
2. quantlens' median per invoke against a bare loop timed as a whole (perf_counter around
   N invokes, divided by N), measured alternately five times.
Target: under 2% of the median.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _models import conv_net

from quantlens.bench.inputs import synthetic_inputs
from quantlens.bench.schedule import interleave
from quantlens.models.loading import load_model

N = 20_000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = conv_net(Path(tmp), size=16, int8=True)
        model = load_model(path, num_threads=1)
        run = model.invoker(synthetic_inputs(model.inputs, 1))
        empty = interleave([lambda: None], warmup_runs=100, runs=N, min_seconds=0)[0]
        ours, bare = [], []
        for _ in range(5):
            ours.append(
                statistics.median(interleave([run], warmup_runs=100, runs=N, min_seconds=0)[0])
            )
            t0 = time.perf_counter_ns()
            for _ in range(N):
                run()
            bare.append((time.perf_counter_ns() - t0) / 1e6 / N)
        median = statistics.median(ours)
        noop = lambda: None  # noqa: E731
        t0 = time.perf_counter_ns()
        for _ in range(N):
            noop()
        bare_call = (time.perf_counter_ns() - t0) / 1e6 / N
        timer_cost = statistics.median(empty) - bare_call
        print(f"model {path.name}: median invoke {median * 1000:.2f} µs")
        print(f"1. timer overhead per sample: {timer_cost * 1000:.3f} µs = "
              f"{timer_cost / median:.2%} of the median (target < 2%)")  # fmt: skip
        excess = statistics.median(ours) / statistics.median(bare) - 1
        print(f"2. quantlens median vs bare loop mean: {excess:+.2%} "
              f"(bare {statistics.median(bare) * 1000:.2f} µs/invoke; the median of a skewed "
              f"distribution sits below its mean, so a negative figure is expected)")  # fmt: skip


if __name__ == "__main__":
    main()
