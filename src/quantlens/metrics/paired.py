"""Paired statistics of a candidate against the reference on the same samples.

They say whether a difference in task metrics is real or noise: a bootstrap interval of the
difference, resampling samples as pairs, and an exact test on the per-sample outcomes.
"""

from __future__ import annotations

import math

import numpy as np

from quantlens.metrics.task import ClassificationState, RegressionState
from quantlens.results import PairedStats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CELLS = 4_000_000  # resamples × samples held in memory at once


def _bootstrap_mean_interval(d: np.ndarray) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-sample differences ``d``.

    Resampling the differences is resampling the (reference, candidate) pairs.
    """
    from scipy import stats

    if d.size == 0:
        return math.nan, math.nan
    if d.size < 2 or np.all(d == d[0]):
        return float(d.mean()), float(d.mean())  # no spread to resample
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
    from scipy import stats

    r, c = _both_valid(ref_correct, cand_correct)
    r, c = r > 0.5, c > 0.5
    d = c.astype(np.float64) - r.astype(np.float64)
    low, high = _bootstrap_mean_interval(d)
    to_wrong = int(np.sum(r & ~c))
    to_right = int(np.sum(~r & c))
    discordant = to_wrong + to_right
    p = stats.binomtest(to_wrong, discordant, 0.5).pvalue if discordant else 1.0
    return PairedStats("classification", int(r.size), float(d.mean()) if d.size else math.nan,
                       low, high, float(p), BOOTSTRAP_RESAMPLES, to_wrong, to_right)  # fmt: skip


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
