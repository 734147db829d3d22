"""Init time, first-inference time and peak memory of one model, in a fresh child process.

Run as ``python -m quantlens.bench.probe REQUEST.npz``; prints one JSON line. The child imports
the model's runtime before taking its memory baseline, so the figure is the model's own
(weights, arena, runtime caches) and not the tool's imports nor another model's.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from quantlens._process import die_with_parent
from quantlens.models.base import models_trusted, trusted_models
from quantlens.models.containment import SKIP_ENV

TRUST_ENV = "QUANTLENS_TRUST_MODELS"  # the parent's --trust-model, for the child
PROBE_RUNS = 5  # invokes after the first, so that lazily grown buffers count in the peak
TIMEOUT_S = 600


def _proc_status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kib() -> float:
    """Current resident set size (Linux), else the high-water mark."""
    now = _proc_status_kib("VmRSS")
    return now if now is not None else _peak_kib()


def _peak_kib() -> float:
    """High-water mark of resident memory. On Linux this is VmHWM, which starts afresh in a
    new program; getrusage's ru_maxrss would carry the parent's peak across fork and exec."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def _import_runtime(path: str) -> None:
    """Import everything loading the model will import, so the baseline includes it."""
    import quantlens.models.base  # noqa: F401
    from quantlens.backends import backend_for

    backend_for(path).import_runtime()


def _child(request: Any) -> dict[str, Any]:
    from quantlens._quiet import captured_output
    from quantlens.models.loading import load_model

    with np.load(request, allow_pickle=False) as req:
        path = str(req["path"])
        threads = int(req["threads"])
        inputs = [req[f"input_{i}"] for i in range(int(req["n_inputs"]))]
    with captured_output():
        _import_runtime(path)
    baseline = _rss_kib()
    t0 = time.perf_counter_ns()
    model = load_model(path, num_threads=threads if threads > 0 else None)
    t1 = time.perf_counter_ns()
    run = model.invoker(inputs)
    t2 = time.perf_counter_ns()
    run()
    t3 = time.perf_counter_ns()
    for _ in range(PROBE_RUNS):
        run()
    return {
        "init_ms": (t1 - t0) / 1e6,
        "first_ms": (t3 - t2) / 1e6,
        "peak_rss_mb": max(_peak_kib() - baseline, 0.0) / 1024,
        "baseline_rss_mb": baseline / 1024,
    }


def measure_in_child(path: str, threads: int | None, inputs: list[np.ndarray]) -> dict[str, Any]:
    """Run the probe for one model and configuration in a fresh Python process.

    Returns the probe's figures, or ``{"error": ...}`` when the child failed or crashed.
    """
    # The request goes through the child's stdin: no temporary file to leave behind if this
    # process is killed.
    request = io.BytesIO()
    arrays: dict[str, np.ndarray] = {f"input_{i}": a for i, a in enumerate(inputs)}
    arrays.update(
        path=np.array(path), threads=np.array(threads or 0), n_inputs=np.array(len(inputs))
    )
    np.savez(request, **arrays)  # type: ignore[arg-type]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env[TRUST_ENV] = "1" if models_trusted() else "0"
    env[SKIP_ENV] = "1"  # this process loaded the model: it has been run once in containment
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "quantlens.bench.probe"], input=request.getvalue(),
            capture_output=True, timeout=TIMEOUT_S, env=env, preexec_fn=die_with_parent,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"the memory probe took longer than {TIMEOUT_S} s"}
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": f"the memory probe failed: {tail[:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


if __name__ == "__main__":
    with trusted_models(os.environ.get(TRUST_ENV) == "1"):
        print(json.dumps(_child(io.BytesIO(sys.stdin.buffer.read()))))
