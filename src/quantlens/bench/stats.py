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


def summarize(samples_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
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


def optimal_block_length(x: np.ndarray) -> int:
    """Block length for a circular block bootstrap of the series ``x``, by the automatic rule
    of Politis & White (2004) with the correction of Patton, Politis & White (2009): the
    autocovariances up to the first lag after which they stay insignificant, weighted by a
    flat-top kernel. 1 for a series without autocorrelation; longer the longer drift lasts.
    """
    n = x.size
    if n < 8:
        return 1
    x = x - x.mean()
    kn = max(5, int(np.ceil(np.log10(n))))
    m_max = min(n - 1, int(np.ceil(np.sqrt(n))) + kn)
    b_max = max(1.0, np.ceil(min(3 * np.sqrt(n), n / 3)))
    full = np.correlate(x, x, mode="full")[n - 1 : n + m_max] / n  # lags 0..m_max
    if full[0] <= 0:
        return 1
    acf = full[1:] / full[0]
    threshold = 2.0 * np.sqrt(np.log10(n) / n)
    insignificant = np.abs(acf) < threshold
    m_hat = next((k for k in range(len(acf) - kn + 1) if insignificant[k : k + kn].all()),
                 len(acf))  # fmt: skip
    m = min(2 * max(m_hat, 1), m_max)
    lags = np.arange(-m, m + 1)
    s = np.abs(lags) / m
    kernel = np.where(s <= 0.5, 1.0, np.where(s <= 1.0, 2.0 * (1.0 - s), 0.0))
    acv = full[np.abs(lags)]
    g = float(np.sum(kernel * np.abs(lags) * acv))
    long_run = float(np.sum(kernel * acv))
    if long_run <= 0 or g == 0:
        return 1
    d_cb = 4.0 / 3.0 * long_run**2
    b = (2.0 * g**2 / d_cb) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return int(min(max(1.0, np.ceil(b)), b_max))


#: Elements (resamples × rounds) one step of the bootstrap holds: memory stays bounded.
BOOTSTRAP_CHUNK_ELEMENTS = 2**21


def median_ratio(
    base_ms: Sequence[float] | np.ndarray, other_ms: Sequence[float] | np.ndarray, *,
    seed: int = BOOTSTRAP_SEED, resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, float]:  # fmt: skip
    """median(other) / median(base) with a 95% interval from a paired circular block
    bootstrap over rounds.

    ``base_ms[i]`` and ``other_ms[i]`` were measured in the same round, so rounds are
    resampled as pairs (drift that slows a round slows both sides of it), and in contiguous
    blocks (:func:`optimal_block_length` of both series, the longer): rounds next to each
    other are not independent (a CPU's frequency, caches, another process come and go over
    many rounds), and resampling them one by one gives an interval far too narrow.
    """
    a = np.asarray(base_ms, dtype=np.float64)
    b = np.asarray(other_ms, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("the two sample sets must be paired by round")
    ratio = float(np.median(b) / np.median(a))
    n = a.size
    if n < 2:
        return {"ratio": ratio, "ci95_low": float("nan"), "ci95_high": float("nan"),
                "resamples": 0, "block_length": 0}  # fmt: skip
    block = max(optimal_block_length(np.log(np.maximum(a, 1e-12))),
                optimal_block_length(np.log(np.maximum(b, 1e-12))))  # fmt: skip
    blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    offsets = np.arange(block)
    stats = np.empty(resamples)
    step = max(1, BOOTSTRAP_CHUNK_ELEMENTS // (blocks * block))
    for lo in range(0, resamples, step):
        k = min(step, resamples - lo)
        starts = rng.integers(0, n, size=(k, blocks))
        idx = ((starts[:, :, None] + offsets) % n).reshape(k, -1)[:, :n]
        stats[lo : lo + k] = np.median(b[idx], axis=1) / np.median(a[idx], axis=1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return {
        "ratio": ratio,
        "ci95_low": float(low),
        "ci95_high": float(high),
        "resamples": resamples,
        "block_length": block,
    }
