"""Paired statistics of a candidate against the reference on the same samples.

They say whether a difference in task metrics is real or noise: a bootstrap interval of the
difference, resampling samples as pairs, and an exact test on the per-sample outcomes.
"""

from __future__ import annotations

import math

import numpy as np

from quantlens.metrics.kernels import percentiles
from quantlens.metrics.task import ClassificationState, RegressionState
from quantlens.results import PairedStats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CELLS = 4_000_000  # resamples × samples held in memory at once


#: Differences taking at most this many distinct values are resampled through their counts.
_FEW_VALUES = 16


def _bootstrap_mean_interval(d: np.ndarray) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-sample differences ``d``.

    Resampling the differences is resampling the (reference, candidate) pairs. When ``d``
    takes few values (a classification's −1, 0, +1), a resample is fully described by how
    many of each it drew — a multinomial draw — so the same bootstrap distribution costs
    O(resamples), not O(resamples × samples), and needs no SciPy.
    """
    if d.size == 0:
        return math.nan, math.nan
    if d.size < 2 or np.all(d == d[0]):
        return float(d.mean()), float(d.mean())  # no spread to resample
    values, counts = np.unique(d, return_counts=True)
    if values.size <= _FEW_VALUES:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        drawn = rng.multinomial(d.size, counts / d.size, size=BOOTSTRAP_RESAMPLES)
        means = drawn @ values / d.size
        low, high = percentiles(means, (2.5, 97.5))
        return float(low), float(high)
    from scipy import stats

    res = stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        batch=max(1, _BOOTSTRAP_CELLS // d.size),
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _both_valid(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples both models produced finite outputs for (NaN marks the others)."""
    r = np.asarray(ref, dtype=np.float64)
    c = np.asarray(cand, dtype=np.float64)
    keep = ~np.isnan(r) & ~np.isnan(c)
    return r[keep], c[keep]


def paired_classification(ref_correct: np.ndarray, cand_correct: np.ndarray) -> PairedStats:
    """accuracy_delta (candidate − reference) with its 95% bootstrap interval, the exact
    McNemar p-value on the discordant pairs, and the flips between them."""
    r, c = _both_valid(ref_correct, cand_correct)
    r, c = r > 0.5, c > 0.5
    d = c.astype(np.float64) - r.astype(np.float64)
    low, high = _bootstrap_mean_interval(d)
    to_wrong = int(np.sum(r & ~c))
    to_right = int(np.sum(~r & c))
    p = exact_mcnemar(to_wrong, to_right)
    return PairedStats("classification", int(r.size), float(d.mean()) if d.size else math.nan,
                       low, high, float(p), BOOTSTRAP_RESAMPLES, to_wrong, to_right)  # fmt: skip


def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of ``b`` successes in ``b + c``
    discordant pairs at p = ½, i.e. 2·P(X ≤ min(b, c)) for X ~ Bin(b + c, ½), at most 1.

    Summed in log space (log C(n, i) as a running sum of log((n − i + 1) / i)), so it holds
    for millions of pairs; equal to ``scipy.stats.binomtest(b, b + c).pvalue``.
    """
    n, k = b + c, min(b, c)
    if n == 0 or 2 * k == n:
        return 1.0
    i = np.arange(1, k + 1, dtype=np.float64)
    log_terms = np.concatenate(([0.0], np.cumsum(np.log((n - i + 1) / i)))) - n * math.log(2)
    top = log_terms.max()
    tail = math.exp(top) * float(np.exp(log_terms - top).sum())
    return min(1.0, 2.0 * tail)


def paired_regression(ref_abs_err: np.ndarray, cand_abs_err: np.ndarray) -> PairedStats:
    """mae_delta (candidate − reference) with its 95% bootstrap interval, and the Wilcoxon
    signed-rank p-value on the per-sample absolute errors."""
    from scipy import stats

    r, c = _both_valid(ref_abs_err, cand_abs_err)
    d = c - r
    low, high = _bootstrap_mean_interval(d)
    p = 1.0 if np.all(d == 0) else float(stats.wilcoxon(c, r).pvalue)
    return PairedStats("regression", int(r.size), float(d.mean()) if d.size else math.nan,
                       low, high, p, BOOTSTRAP_RESAMPLES)  # fmt: skip


def paired(
    ref: ClassificationState | RegressionState, cand: ClassificationState | RegressionState
) -> PairedStats:
    """The paired statistics for the task both states accumulated."""
    if isinstance(ref, ClassificationState) and isinstance(cand, ClassificationState):
        return paired_classification(np.concatenate(ref.correct), np.concatenate(cand.correct))
    if isinstance(ref, RegressionState) and isinstance(cand, RegressionState):
        return paired_regression(np.concatenate(ref.abs_err), np.concatenate(cand.abs_err))
    raise TypeError("reference and candidate accumulated different tasks")


def significantly_worse(stats: PairedStats) -> bool:
    """The candidate is worse than the reference and the test says it is not noise."""
    return stats.significantly_worse
