"""Error of a quantized model's intermediate tensor against the float model's, per channel too."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from quantlens.metrics.fidelity import FidelityState
from quantlens.metrics.kernels import cosine_from_sums, sqnr_db

#: Elements one pass of :meth:`TensorErrorState.update` reads at a time: with the
#: candidate's block and the scratch block, well within a core's L2 cache.
BLOCK = 1 << 17

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
    #: Integer candidates: values at their type's ends, of ``integer_values`` values.
    saturated: int = 0
    integer_values: int = 0

    @property
    def samples(self) -> int:
        return self.tensor.samples

    def update(
        self, ref: np.ndarray, cand: np.ndarray, dequant: tuple[float, int] | None = None
    ) -> TensorErrorState:
        """Add one batch of (N, ..., C) float values and the candidate's; returns the new state.

        ``cand`` holds real values, or with ``dequant`` = (scale, zero point) the integers of
        a per-tensor quantized tensor, dequantized here as ``(q - zero_point) * scale`` in
        float32 (exact for 8- and 16-bit integers) and also counted at their type's ends.

        Activations are large and every pass over them counts: each statistic is formed
        block by block (:data:`BLOCK` elements, whose temporaries stay in a core's cache) with
        no allocation the size of the tensor, sums of products in float32 within a block's
        lanes (a relative error near 1e-7) and summed on in float64."""
        r = np.asarray(ref, dtype=np.float32)
        if r.size == 0:  # a tensor with a zero dimension: nothing to measure
            return self
        n = r.shape[0] if r.ndim else 1
        channels = r.shape[-1] if r.ndim > 1 else 1
        r3 = r.reshape(n, -1, channels)
        c3 = np.asarray(cand).reshape(r3.shape)
        if dequant is None:
            c3 = c3.astype(np.float32, copy=False)
        sums = _BlockSums(n, channels)
        for rows, positions in _blocks(n, r3.shape[1], channels):
            sums.add(r3[rows, positions], c3[rows, positions], rows, dequant)
        cosine = cosine_from_sums(sums.rc, sums.rr.sum(axis=1), sums.cc)
        np.clip(cosine, -1.0, 1.0, out=cosine)  # rounding can step past ±1
        ch_ref, ch_err = sums.rr.sum(axis=0), sums.ee.sum(axis=0)
        ch_max = np.maximum(sums.high, -sums.low).astype(np.float64)
        tensor = self.tensor.add_sums(
            samples=n, elements=r.size, sum_sq_err=float(ch_err.sum()),
            sum_abs_err=sums.abs_err, max_abs_err=sums.max_abs_err,
            sum_ref_sq=float(ch_ref.sum()), sum_cosine=float(cosine.sum()),
        )  # fmt: skip
        return TensorErrorState(
            tensor,
            ch_ref if self.channel_ref_sq is None else self.channel_ref_sq + ch_ref,
            ch_err if self.channel_sq_err is None else self.channel_sq_err + ch_err,
            ch_max if self.channel_abs_max is None else np.maximum(self.channel_abs_max, ch_max),
            min(self.ref_min, float(sums.low.min(initial=np.inf))),
            max(self.ref_max, float(sums.high.max(initial=-np.inf))),
            self.saturated + sums.saturated,
            self.integer_values + (r.size if dequant is not None else 0),
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
            self.saturated + other.saturated,
            self.integer_values + other.integer_values,
        )

    @property
    def saturation(self) -> float | None:
        """The share of an integer candidate's values at its type's ends (None: not integer)."""
        return self.saturated / self.integer_values if self.integer_values else None

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


def _blocks(n: int, positions: int, channels: int) -> list[tuple[slice, slice]]:
    """(samples, positions) slices of an (n, positions, channels) array into blocks of about
    :data:`BLOCK` elements: several whole samples, or a run of one sample's positions."""
    per_sample = positions * channels
    if per_sample == 0:
        return []
    if per_sample <= BLOCK:
        m = BLOCK // per_sample
        return [(slice(s, min(n, s + m)), slice(None)) for s in range(0, n, m)]
    step = max(1, BLOCK // channels)
    return [(slice(s, s + 1), slice(k, min(positions, k + step)))
            for s in range(n) for k in range(0, positions, step)]  # fmt: skip


@functools.lru_cache(maxsize=256)
def _group(positions: int, channels: int) -> int:
    """How many positions to fold into one row so a row holds at least 256 values: NumPy
    reduces over the outer axis of a (positions, channels) block a row at a time, which is
    slow for rows of a few channels."""
    for g in range(min(positions, -(-256 // channels)), 1, -1):
        if positions % g == 0:
            return g
    return 1


#: A lane summed in float32 over more values than this loses digits (a tensor of one channel
#: whose length has no divisor near 256 leaves lanes of thousands): it is summed in float64.
LONG_LANE = 1024


def _lane_sums(length: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Σ a·b over axis 1 of two (m, length, w) blocks, per (m, w) lane: in float32 for lanes
    up to LONG_LANE values (a real activation's are at most 512 long: about 1e-7 relative),
    in float64 beyond."""
    if length <= LONG_LANE:
        return lambda a, b: np.einsum("mkc,mkc->mc", a, b)
    return lambda a, b: np.einsum("mkc,mkc->mc", a, b, dtype=np.float64)


class _BlockSums:
    """The sums :meth:`TensorErrorState.update` collects over one batch, block by block."""

    def __init__(self, n: int, channels: int) -> None:
        self.rr = np.zeros((n, channels))  # Σr² per sample and channel
        self.ee = np.zeros((n, channels))  # Σe² likewise, e = candidate - reference
        self.rc = np.zeros(n)  # Σr·c per sample
        self.cc = np.zeros(n)  # Σc² per sample
        self.low = np.full(channels, np.inf, dtype=np.float32)  # of the reference
        self.high = np.full(channels, -np.inf, dtype=np.float32)
        self.abs_err = 0.0
        self.max_abs_err = 0.0
        self.saturated = 0
        self._scratch = np.empty(0, dtype=np.float32)

    def add(
        self, r: np.ndarray, c: np.ndarray, rows: slice, dequant: tuple[float, int] | None
    ) -> None:
        """Add one (m, k, channels) block of reference and candidate values."""
        m, k, channels = r.shape
        if self._scratch.size < r.size:
            self._scratch = np.empty(r.size, dtype=np.float32)
        e = self._scratch[: r.size].reshape(r.shape)
        if dequant is None:
            values = c
        else:
            scale, zero_point = dequant
            values = np.subtract(c, np.float32(zero_point), out=e, dtype=np.float32)
            np.multiply(values, np.float32(scale), out=values)
            ends = np.iinfo(c.dtype)
            if c.min() == ends.min:
                self.saturated += int(np.count_nonzero(c == ends.min))
            if c.max() == ends.max:
                self.saturated += int(np.count_nonzero(c == ends.max))
        # Σr·c and Σc² from the values themselves (from Σr² and Σr·e they cancel out when
        # the error is as large as the signal), per sample, lane by lane as below
        g = _group(k, channels)
        rg, cg = r.reshape(m, k // g, g * channels), values.reshape(m, k // g, g * channels)
        dot = _lane_sums(k // g)
        self.rc[rows] += dot(rg, cg).sum(axis=1, dtype=np.float64)
        self.cc[rows] += dot(cg, cg).sum(axis=1, dtype=np.float64)
        np.subtract(values, r, out=e)
        eg = e.reshape(m, k // g, g * channels)
        folded, f64 = (m, g, channels), np.float64
        self.rr[rows] += dot(rg, rg).reshape(folded).sum(axis=1, dtype=f64)
        self.ee[rows] += dot(eg, eg).reshape(folded).sum(axis=1, dtype=f64)
        np.minimum(self.low, rg.min(axis=(0, 1)).reshape(g, channels).min(axis=0), out=self.low)
        np.maximum(self.high, rg.max(axis=(0, 1)).reshape(g, channels).max(axis=0), out=self.high)
        np.abs(e, out=e)
        self.abs_err += float(e.sum())
        self.max_abs_err = max(self.max_abs_err, float(e.max()))
