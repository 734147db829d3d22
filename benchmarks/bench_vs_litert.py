"""quantlens' median invoke latency against LiteRT's own benchmark tool, on the same model.

Run: .venv/bin/python benchmarks/bench_vs_litert.py
Prints, per model, quantlens' p50 and ai_edge_litert.tools.benchmark_litert_model's median
(1 thread, same run counts), alternating the two tools three times so that machine drift hits
both, and the ratio of the medians of the three. Target: within 5%.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _models import conv_net

from quantlens.bench import benchmark

ROUNDS = 3
RUNS = 200
WARMUP = 20


def litert_median(path: Path, out: Path) -> float:
    subprocess.run(
        [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={path}",
         f"--num_runs={RUNS}", f"--warmup_runs={WARMUP}", "--num_threads=1",
         f"--result_json={out}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return float(json.loads(out.read_text())["latency"]["median_ms"])


def quantlens_median(path: Path) -> float:
    result = benchmark([path], threads=[1], warmup_runs=WARMUP, runs=RUNS, min_seconds=0,
                       measure_memory=False)  # fmt: skip
    return result.results[0].latency_ms["p50"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        for int8 in (False, True):
            path = conv_net(tmp_dir, size=384, int8=int8)
            ours, theirs = [], []
            for _ in range(ROUNDS):
                ours.append(quantlens_median(path))
                theirs.append(litert_median(path, tmp_dir / "litert.json"))
            q, r = statistics.median(ours), statistics.median(theirs)
            verdict = "OK" if abs(q / r - 1) <= 0.05 else "OUTSIDE 5%"
            print(f"{path.name}: quantlens p50 {q:.3f} ms, benchmark_litert_model median "
                  f"{r:.3f} ms, ratio {q / r:.3f} ({verdict}; rounds: ours {ours}, "
                  f"theirs {theirs})")  # fmt: skip


if __name__ == "__main__":
    main()
