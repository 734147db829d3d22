"""How close a candidate's outputs are to the reference's, as a mergeable accumulator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quantlens.metrics.distribution import distribution_statistics, labelled_class
from quantlens.metrics.kernels import (
    class_divergence,
    cosine_from_sums,
    error_sums,
    flat,
    has_class_axis,
    row_argmax,
    row_error_sums,
    sqnr_db,
)

FIDELITY_METRICS = (
    "mse", "mae", "rmse", "max_abs_error", "sqnr_db", "cosine_similarity",
    "top1_agreement", "kl_divergence",
)  # fmt: skip


@dataclass(frozen=True)
class FidelityState:
    """Sufficient statistics of candidate-vs-reference error over the samples seen so far.

    Per-sample values are summed, never averaged per batch, so any split of the data into
    batches and any merge order give the same result up to floating-point summation.
    """

    samples: int = 0
    elements: int = 0
    sum_sq_err: float = 0.0
    sum_abs_err: float = 0.0
    max_abs_err: float = 0.0
    sum_ref_sq: float = 0.0
    sum_cosine: float = 0.0
    class_axis: bool | None = None  # None until the first update
    top1_agree: int = 0
    sum_kl: float = 0.0
    scores: bool = True  # read (N, C) outputs as class scores (top-1 agreement, KL)
    #: Class outputs: per-sample KL divergences and Δp of the labelled class, batch by batch.
    kl_values: tuple[np.ndarray, ...] = ()
    delta_p_values: tuple[np.ndarray, ...] = ()

    def update(
        self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None, *,
        tops: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FidelityState:  # fmt: skip
        """Add one batch of (N, ...) reference and candidate outputs (and, for class outputs,
        the batch's labels, for Δp of the labelled class); returns the new state. ``tops``,
        each row's top class in ``ref`` and ``cand`` when the caller has them already."""
        if ref.shape != cand.shape:
            raise ValueError(f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
        classes = self.scores and has_class_axis(ref)
        top1, sum_kl = self.top1_agree, self.sum_kl
        kl_values, delta_p_values = self.kl_values, self.delta_p_values
        if classes:
            r, c = flat(ref), flat(cand)
            err = c - r
            y = None if labels is None else labelled_class(labels, r.shape[0], r.shape[1])
            kl, dp = class_divergence(r, c, err, y)
            top_r, top_c = tops if tops is not None else (row_argmax(r), row_argmax(c))
            top1 += int(np.count_nonzero(top_r == top_c))
            sum_kl += float(kl.sum())
            kl_values = (*kl_values, kl.astype(np.float32))
            if dp is not None:
                delta_p_values = (*delta_p_values, dp.astype(np.float32))
            got = row_error_sums(r, c, err)
        else:
            n = ref.shape[0]
            got = error_sums(ref.reshape(n, -1), cand.reshape(n, -1))
        cosine = cosine_from_sums(got.dot, got.ref_sq, got.cand_sq)
        return FidelityState(
            samples=self.samples + ref.shape[0],
            elements=self.elements + ref.size,
            sum_sq_err=self.sum_sq_err + got.sq_err,
            sum_abs_err=self.sum_abs_err + got.abs_err,
            max_abs_err=max(self.max_abs_err, got.max_abs_err),
            sum_ref_sq=self.sum_ref_sq + float(got.ref_sq.sum()),
            sum_cosine=self.sum_cosine + float(cosine.sum()),
            class_axis=classes if self.class_axis is None else (self.class_axis and classes),
            top1_agree=top1,
            sum_kl=sum_kl,
            scores=self.scores,
            kl_values=kl_values,
            delta_p_values=delta_p_values,
        )

    def add_sums(
        self, *, samples: int, elements: int, sum_sq_err: float, sum_abs_err: float,
        max_abs_err: float, sum_ref_sq: float, sum_cosine: float,
    ) -> FidelityState:  # fmt: skip
        """Add one batch given by its sums (for a caller that has them already, as the
        per-tensor statistics do); the batch is not read as class scores."""
        return FidelityState(
            samples=self.samples + samples,
            elements=self.elements + elements,
            sum_sq_err=self.sum_sq_err + sum_sq_err,
            sum_abs_err=self.sum_abs_err + sum_abs_err,
            max_abs_err=max(self.max_abs_err, max_abs_err),
            sum_ref_sq=self.sum_ref_sq + sum_ref_sq,
            sum_cosine=self.sum_cosine + sum_cosine,
            class_axis=False,
            top1_agree=self.top1_agree,
            sum_kl=self.sum_kl,
            scores=self.scores,
            kl_values=self.kl_values,
            delta_p_values=self.delta_p_values,
        )

    def merge(self, other: FidelityState) -> FidelityState:
        """Combine the statistics of two disjoint sets of samples."""
        if self.class_axis is None:
            return other
        if other.class_axis is None:
            return self
        return FidelityState(
            samples=self.samples + other.samples,
            elements=self.elements + other.elements,
            sum_sq_err=self.sum_sq_err + other.sum_sq_err,
            sum_abs_err=self.sum_abs_err + other.sum_abs_err,
            max_abs_err=max(self.max_abs_err, other.max_abs_err),
            sum_ref_sq=self.sum_ref_sq + other.sum_ref_sq,
            sum_cosine=self.sum_cosine + other.sum_cosine,
            class_axis=self.class_axis and other.class_axis,
            top1_agree=self.top1_agree + other.top1_agree,
            sum_kl=self.sum_kl + other.sum_kl,
            scores=self.scores,
            kl_values=self.kl_values + other.kl_values,
            delta_p_values=self.delta_p_values + other.delta_p_values,
        )

    def distribution(self) -> dict[str, float] | None:
        """For class outputs: KL mean ± SE and percentiles, top-1 agreement ± binomial SE,
        and with labels Δp of the labelled class (see :mod:`quantlens.metrics.distribution`);
        None otherwise."""
        if not self.class_axis or not self.kl_values:
            return None
        dp = np.concatenate(self.delta_p_values) if self.delta_p_values else None
        if dp is not None and dp.size != self.samples:
            dp = None  # some batches had no usable labels: a partial Δp would mislead
        return distribution_statistics(np.concatenate(self.kl_values).astype(np.float64),
                                       self.top1_agree, self.samples,
                                       None if dp is None else dp.astype(np.float64))  # fmt: skip

    def result(self) -> dict[str, float]:
        """The fidelity metrics; ``top1_agreement`` and ``kl_divergence`` for class outputs."""
        if self.samples == 0:
            raise ValueError("no samples were accumulated")
        mse = self.sum_sq_err / self.elements
        out = {
            "mse": mse,
            "mae": self.sum_abs_err / self.elements,
            "rmse": math.sqrt(mse),
            "max_abs_error": self.max_abs_err,
            "sqnr_db": sqnr_db(self.sum_ref_sq, self.sum_sq_err),
            "cosine_similarity": self.sum_cosine / self.samples,
        }
        if self.class_axis:
            out["top1_agreement"] = self.top1_agree / self.samples
            out["kl_divergence"] = self.sum_kl / self.samples
        return out
