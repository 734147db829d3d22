"""Error of a quantized model's intermediate tensor against the float model's, per channel too."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from quantlens.metrics.fidelity import FidelityState
from quantlens.metrics.kernels import cosine_from_sums, sqnr_db

#: Channel SQNRs are clipped to ±SQNR_CAP_DB in summaries; identical tensors are +inf.
SQNR_CAP_DB = 100.0


@dataclass(frozen=True)
class TensorErrorState:
    """Summed error statistics of one tensor over samples, tensor-wide and per channel.

    Channels are the last axis of an activation (NHWC). Per-channel sums let the summary see
    the failure tensor-wide SQNR hides: one wide channel whose scale crushes all the others.
    """

    tensor: FidelityState = field(default_factory=lambda: FidelityState(scores=False))
    channel_ref_sq: np.ndarray | None = field(default=None, repr=False)
    channel_sq_err: np.ndarray | None = field(default=None, repr=False)
    channel_abs_max: np.ndarray | None = field(default=None, repr=False)  # of the float values
    ref_min: float = np.inf
    ref_max: float = -np.inf

    @property
    def samples(self) -> int:
        return self.tensor.samples

    def update(self, ref: np.ndarray, cand: np.ndarray) -> TensorErrorState:
        """Add one batch of (N, ..., C) float and dequantized values; returns the new state.

        Activations are large, so each pass over them counts: values stay float32 (their
        own precision), sums of products are formed without temporaries (``einsum``) per
        sample and channel — float32 over one sample's positions, a relative error near
        1e-7 — and summed on in float64."""
        r = np.asarray(ref, dtype=np.float32)
        c = np.asarray(cand, dtype=np.float32)
        n = r.shape[0] if r.ndim else 1
        channels = r.shape[-1] if r.ndim > 1 else 1
        err = c - r
        r3, e3 = r.reshape(n, -1, channels), err.reshape(n, -1, channels)
        rr = np.einsum("nkc,nkc->nc", r3, r3).astype(np.float64)
        ee = np.einsum("nkc,nkc->nc", e3, e3).astype(np.float64)
        re = np.einsum("nkc,nkc->n", r3, e3).astype(np.float64)
        ch_ref, ch_err = rr.sum(axis=0), ee.sum(axis=0)
        ch_low, ch_high = r3.min(axis=(0, 1)), r3.max(axis=(0, 1))
        ch_max = np.maximum(ch_high, -ch_low).astype(np.float64)
        abs_err = np.abs(err)
        # per sample: Σr·c = Σr² + Σr·e and Σc² = Σr² + 2Σr·e + Σe²
        rr_n, ee_n = rr.sum(axis=1), ee.sum(axis=1)
        cosine = cosine_from_sums(rr_n + re, rr_n, np.maximum(rr_n + 2 * re + ee_n, 0.0))
        tensor = self.tensor.add_sums(
            samples=n, elements=r.size, sum_sq_err=float(ch_err.sum()),
            sum_abs_err=float(abs_err.sum(dtype=np.float64)),
            max_abs_err=float(abs_err.max(initial=0.0)), sum_ref_sq=float(ch_ref.sum()),
            sum_cosine=float(cosine.sum()),
        )  # fmt: skip
        return TensorErrorState(
            tensor,
            ch_ref if self.channel_ref_sq is None else self.channel_ref_sq + ch_ref,
            ch_err if self.channel_sq_err is None else self.channel_sq_err + ch_err,
            ch_max if self.channel_abs_max is None else np.maximum(self.channel_abs_max, ch_max),
            min(self.ref_min, float(ch_low.min(initial=np.inf))),
            max(self.ref_max, float(ch_high.max(initial=-np.inf))),
        )

    def merge(self, other: TensorErrorState) -> TensorErrorState:
        """Combine two disjoint sets of samples."""
        if other.channel_ref_sq is None:
            return self
        if self.channel_ref_sq is None:
            return other
        assert self.channel_sq_err is not None and other.channel_sq_err is not None
        assert self.channel_abs_max is not None and other.channel_abs_max is not None
        return TensorErrorState(
            self.tensor.merge(other.tensor),
            self.channel_ref_sq + other.channel_ref_sq,
            self.channel_sq_err + other.channel_sq_err,
            np.maximum(self.channel_abs_max, other.channel_abs_max),
            min(self.ref_min, other.ref_min),
            max(self.ref_max, other.ref_max),
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
        """The tensor-wide fidelity metrics, channel_sqnr_median_db and channel_sqnr_worst_db
        (clipped to ±SQNR_CAP_DB), the float values' range (float_min, float_max) and
        channel_range_ratio (the widest channel's max |x| over the median channel's), and
        rmse_over_scale for a quantized tensor (≈ 0.29 when its only error is rounding)."""
        out = self.tensor.result()
        channels = np.clip(self.channel_sqnr_db(), -SQNR_CAP_DB, SQNR_CAP_DB)
        out["channel_sqnr_median_db"] = float(np.median(channels)) if channels.size else SQNR_CAP_DB
        out["channel_sqnr_worst_db"] = float(channels.min()) if channels.size else SQNR_CAP_DB
        out["float_min"], out["float_max"] = self.ref_min, self.ref_max
        assert self.channel_abs_max is not None
        live = self.channel_abs_max[self.channel_abs_max > 0]
        if live.size:  # a channel whose range dwarfs the others' forces a coarse shared scale
            out["channel_range_ratio"] = float(live.max() / np.median(live))
        if scale:
            out["rmse_over_scale"] = out["rmse"] / scale
        return out
