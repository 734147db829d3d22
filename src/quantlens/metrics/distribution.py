"""How a candidate's class distributions differ from the reference's, sample by sample, in
the terms of llama.cpp's ``--kl-divergence`` report: the KL divergence's mean with its
standard error and its percentiles, the change of the probability of the labelled class
(Δp: mean, standard error, percentiles, RMS), and top-1 agreement with its binomial standard
error.

Per-sample values are kept (one float each), so shards merge by concatenation and the
percentiles are exact. Percentiles interpolate linearly (NumPy's default).
"""

from __future__ import annotations

import math

import numpy as np

from quantlens.metric_registry import PERCENTILES
from quantlens.metrics.kernels import percentiles


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    """Mean, its standard error (sample standard deviation over √n) and the percentiles."""
    n = values.size
    out = {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_mean_se": float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
    }
    points = percentiles(values, [p for p, _ in PERCENTILES])
    out.update({f"{prefix}_{name}": float(v) for (_, name), v in zip(PERCENTILES, points,
                                                                      strict=True)})  # fmt: skip
    return out


def distribution_statistics(
    kl: np.ndarray, top1_agree: int, samples: int, delta_p: np.ndarray | None = None
) -> dict[str, float]:
    """The statistics of per-sample KL divergences, top-1 agreements (how many of
    ``samples``) and, with labels, per-sample Δp of the labelled class (candidate's
    probability minus the reference's)."""
    out = _summary("kl", kl)
    p = top1_agree / samples
    out["top1_agreement"] = p
    out["top1_agreement_se"] = math.sqrt(p * (1 - p) / samples)
    if delta_p is not None and delta_p.size:
        out.update(_summary("delta_p", delta_p))
        out["delta_p_rms"] = float(math.sqrt(np.mean(delta_p * delta_p)))
    return out


def labelled_class(labels: np.ndarray, n: int, classes: int) -> np.ndarray | None:
    """Class indices from integer labels (N,) or one-hot/probability labels (N, C); None
    when the labels are not class labels of this output."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape == (n, classes):
        return y.argmax(axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.shape != (n,) or y.size == 0 or y.dtype.kind not in "iuf":
        return None
    if y.dtype.kind == "f" and not np.array_equal(y, np.rint(y)):
        return None
    if y.min() < 0 or y.max() >= classes:
        return None
    return y.astype(np.int64)
