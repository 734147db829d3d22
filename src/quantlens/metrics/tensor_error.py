"""Error of a quantized model's intermediate tensor against the float model's, per channel too."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from quantlens.metrics.kernels import cosine_per_sample, flat, sqnr_db

#: Channel SQNRs are clipped to ±SQNR_CAP_DB in summaries; identical tensors are +inf.
SQNR_CAP_DB = 100.0


@dataclass(frozen=True)
class TensorErrorState:
    """Summed error statistics of one tensor over samples, tensor-wide and per channel.

    Channels are the last axis of an activation (NHWC). Per-channel sums let the summary see
    the failure tensor-wide SQNR hides: one wide channel whose scale crushes all the others.
    """

    samples: int = 0
    elements: int = 0
    sum_sq_err: float = 0.0
    sum_abs_err: float = 0.0
    max_abs_err: float = 0.0
    sum_ref_sq: float = 0.0
    sum_cosine: float = 0.0
    channel_ref_sq: np.ndarray | None = field(default=None, repr=False)
    channel_sq_err: np.ndarray | None = field(default=None, repr=False)

    def update(self, ref: np.ndarray, cand: np.ndarray) -> TensorErrorState:
        """Add one batch of (N, ..., C) float and dequantized values; returns the new state."""
        r = np.asarray(ref, dtype=np.float64)
        c = np.asarray(cand, dtype=np.float64)
        err = c - r
        channels = r.shape[-1] if r.ndim > 1 else 1
        ch_ref = (r * r).reshape(-1, channels).sum(axis=0)
        ch_err = (err * err).reshape(-1, channels).sum(axis=0)
        return replace(
            self,
            samples=self.samples + r.shape[0],
            elements=self.elements + r.size,
            sum_sq_err=self.sum_sq_err + float(ch_err.sum()),
            sum_abs_err=self.sum_abs_err + float(np.abs(err).sum()),
            max_abs_err=max(self.max_abs_err, float(np.abs(err).max(initial=0.0))),
            sum_ref_sq=self.sum_ref_sq + float(ch_ref.sum()),
            sum_cosine=self.sum_cosine + float(cosine_per_sample(flat(r), flat(c)).sum()),
            channel_ref_sq=ch_ref if self.channel_ref_sq is None else self.channel_ref_sq + ch_ref,
            channel_sq_err=ch_err if self.channel_sq_err is None else self.channel_sq_err + ch_err,
        )

    def merge(self, other: TensorErrorState) -> TensorErrorState:
        """Combine two disjoint sets of samples."""
        if other.channel_ref_sq is None:
            return self
        if self.channel_ref_sq is None:
            return other
        assert self.channel_sq_err is not None and other.channel_sq_err is not None
        return TensorErrorState(
            self.samples + other.samples,
            self.elements + other.elements,
            self.sum_sq_err + other.sum_sq_err,
            self.sum_abs_err + other.sum_abs_err,
            max(self.max_abs_err, other.max_abs_err),
            self.sum_ref_sq + other.sum_ref_sq,
            self.sum_cosine + other.sum_cosine,
            self.channel_ref_sq + other.channel_ref_sq,
            self.channel_sq_err + other.channel_sq_err,
        )

    def channel_sqnr_db(self) -> np.ndarray:
        """SQNR of each live channel (dead channels, zero in both models, are left out)."""
        assert self.channel_ref_sq is not None and self.channel_sq_err is not None
        live = (self.channel_ref_sq > 0) | (self.channel_sq_err > 0)
        return np.array(
            [sqnr_db(float(s), float(e))
             for s, e in zip(self.channel_ref_sq[live], self.channel_sq_err[live], strict=True)]
        )  # fmt: skip

    def result(self, scale: float | None = None) -> dict[str, float]:
        """mse, mae, max_abs_error, sqnr_db, cosine_similarity, channel_sqnr_median_db and
        channel_sqnr_worst_db (clipped to ±SQNR_CAP_DB); rmse_over_scale for a quantized
        tensor (≈ 0.29 when its only error is rounding to its scale)."""
        if self.samples == 0:
            raise ValueError("no samples were accumulated")
        mse = self.sum_sq_err / self.elements
        channels = np.clip(self.channel_sqnr_db(), -SQNR_CAP_DB, SQNR_CAP_DB)
        out = {
            "mse": mse,
            "mae": self.sum_abs_err / self.elements,
            "max_abs_error": self.max_abs_err,
            "sqnr_db": sqnr_db(self.sum_ref_sq, self.sum_sq_err),
            "cosine_similarity": self.sum_cosine / self.samples,
            "channel_sqnr_median_db": float(np.median(channels)) if channels.size else SQNR_CAP_DB,
            "channel_sqnr_worst_db": float(channels.min()) if channels.size else SQNR_CAP_DB,
        }
        if scale:
            out["rmse_over_scale"] = float(np.sqrt(mse) / scale)
        return out
