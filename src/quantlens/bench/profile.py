"""Per-node time of an ONNX model from onnxruntime's own profiler, by node and by op type."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_RUNS = 50
_KERNEL = "_kernel_time"


def aggregate(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Kernel time of onnxruntime profiler events, summed by node and by op type.

    Shares are of the total kernel time; times are mean microseconds per run.
    """
    by_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(_KERNEL):
            continue
        node = name[: -len(_KERNEL)]
        by_node[node].append(float(e.get("dur", 0)))
        op_of[node] = str((e.get("args") or {}).get("op_name", "?"))
    runs = max((len(v) for v in by_node.values()), default=0)
    per_run = max(runs, 1)
    total = sum(sum(v) for v in by_node.values())
    shares = {n: (sum(v) / total if total else 0.0) for n, v in by_node.items()}
    order = sorted(shares, key=lambda n: -shares[n])
    nodes = [{"node": n, "op_type": op_of[n], "mean_us": sum(by_node[n]) / per_run,
              "share": shares[n]} for n in order]  # fmt: skip
    types: dict[str, float] = defaultdict(float)
    for n in order:
        types[op_of[n]] += shares[n]
    by_type = [{"op_type": t, "share": types[t], "mean_us": types[t] * total / per_run}
               for t in sorted(types, key=lambda t: -types[t])]  # fmt: skip
    return {"runs": runs, "total_us": total / per_run, "by_node": nodes, "by_op_type": by_type}


def profile_onnx(path: str, inputs: Sequence[np.ndarray], threads: int | None,
                 runs: int = PROFILE_RUNS) -> dict[str, Any]:  # fmt: skip
    """Run ``runs`` profiled invokes in a separate session (profiling slows it) and aggregate."""
    from quantlens.models.onnx import OnnxModel, session

    model = OnnxModel(path, num_threads=threads)
    with tempfile.TemporaryDirectory(prefix="quantlens-profile-") as tmp:
        sess = session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = {s.name: np.ascontiguousarray(x, dtype=s.dtype)
                for s, x in zip(model.inputs, inputs, strict=True)}  # fmt: skip
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    return aggregate(events)
