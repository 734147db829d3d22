"""Summaries of latency samples and the bootstrap interval of a ratio of medians."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
#: Runs are flagged when their coefficient of variation exceeds this, or are fewer than MIN_RUNS.
MAX_CV = 0.10
MIN_RUNS = 30
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """mean, std (population), min, p50, p90, p95, p99, max and cv of latency samples.

    Percentiles interpolate linearly between order statistics (NumPy's default), as
    benchmark_model and LiteRT's Python benchmark do.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    mean = float(a.mean())
    std = float(a.std())
    out = {"mean": mean, "std": std, "min": float(a.min()), "max": float(a.max())}
    for p in PERCENTILES:
        out[f"p{p}"] = float(np.percentile(a, p))
    out["cv"] = std / mean if mean > 0 else 0.0
    return out


def warnings_for(summary: dict[str, float], runs: int) -> list[str]:
    """Why these numbers may not be trusted, if they may not."""
    notes = []
    if summary["cv"] > MAX_CV:
        notes.append(f"noisy: coefficient of variation {summary['cv']:.0%} > {MAX_CV:.0%}")
    if runs < MIN_RUNS:
        notes.append(f"only {runs} steady-state runs (< {MIN_RUNS})")
    return notes


def median_ratio(
    base_ms: Sequence[float], other_ms: Sequence[float], *, seed: int = BOOTSTRAP_SEED
) -> dict[str, float]:
    """median(other) / median(base) with a 95% percentile-bootstrap interval over rounds.

    ``base_ms[i]`` and ``other_ms[i]`` were measured in the same round, so rounds are
    resampled as pairs: drift that slows a round slows both sides of it.
    """
    from scipy import stats

    a = np.asarray(base_ms, dtype=np.float64)
    b = np.asarray(other_ms, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("the two sample sets must be paired by round")
    ratio = float(np.median(b) / np.median(a))
    if a.size < 2:
        return {"ratio": ratio, "ci95_low": float("nan"), "ci95_high": float("nan"), "resamples": 0}

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    res = stats.bootstrap(
        (a, b),
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return {
        "ratio": ratio,
        "ci95_low": float(low),
        "ci95_high": float(high),
        "resamples": BOOTSTRAP_RESAMPLES,
    }
