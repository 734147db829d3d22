"""Pure per-batch kernels the accumulators are built from. Every result is float64."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: Probabilities are clipped to [EPSILON, 1] before the KL divergence, as Keras does, then
#: renormalised: a quantized softmax need not sum to 1, and KL is only ≥ 0 between distributions.
EPSILON = 1e-7
#: A row is taken as a probability distribution when non-negative and summing to 1 within this.
DISTRIBUTION_TOLERANCE = 1e-3


#: Rows at most this wide are "narrow": NumPy's loops along axis 1 pay per row, which costs
#: more than the arithmetic for a classifier's ten scores.
NARROW_ROWS = 32


def flat(x: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D) in float64; narrow rows are stored column by column (Fortran
    order), so that NumPy's row reductions and per-row broadcasts run along the N samples
    (about 10× faster for ten scores) rather than row by row."""
    x = np.asarray(x)
    x2 = x.reshape(x.shape[0], -1)
    if 1 < x2.shape[1] <= NARROW_ROWS:
        return np.asarray(x2, dtype=np.float64, order="F")
    return np.asarray(x2, dtype=np.float64)


def row_sums(x: np.ndarray) -> np.ndarray:
    """Σ of each row of (N, C) (``einsum`` does not pay per row as ``sum(axis=1)`` does)."""
    return np.einsum("ij->i", x)


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ a·b of each pair of rows of two (N, C) arrays."""
    return np.einsum("ij,ij->i", a, b)


def total_dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b over two (N, D) arrays of the same shape, whatever their memory order (``vdot``
    copies a column-major array first)."""
    return float(np.einsum("ij,ij->", a, b))


def row_counts(mask: np.ndarray) -> np.ndarray:
    """How many True values each row of an (N, C) boolean array holds."""
    if mask.shape[1] > NARROW_ROWS:
        return np.count_nonzero(mask, axis=1)
    return np.einsum("ij->i", mask.view(np.uint8), dtype=np.int64)


def _row_reduce(x: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """``ufunc`` (np.maximum, np.minimum, np.logical_or...) over each row of (N, C)."""
    if x.shape[1] > NARROW_ROWS or x.shape[1] == 0 or not x.flags.c_contiguous:
        return ufunc.reduce(x, axis=1)  # column-major rows reduce along the samples
    out = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        ufunc(out, x[:, j], out=out)
    return out


def row_argmax(x: np.ndarray) -> np.ndarray:
    """The index of each row's largest value, the first on ties (as ``x.argmax(axis=1)``,
    which loops row by row: about 4× slower on narrow column-major rows)."""
    n, width = x.shape
    if width > NARROW_ROWS or width < 2 or n == 0 or x.flags.c_contiguous:
        return x.argmax(axis=1)
    at_top = (x == _row_reduce(x, np.maximum)[:, None]).view(np.int8)
    # Column j at the top scores width - j: the row's best score names its first top column.
    np.multiply(at_top, np.arange(width, 0, -1, dtype=np.int8), out=at_top)
    idx = width - _row_reduce(at_top, np.maximum).astype(np.intp)
    unmatched = idx == width  # a row with NaN, whose top is NaN: argmax names its first NaN
    if unmatched.any():
        idx[unmatched] = x[unmatched].argmax(axis=1)
    return idx


def rows_all_finite(x: np.ndarray) -> np.ndarray:
    """Per row of (N, D): every value is finite (one reduction when all of them are)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.einsum("ij->", x)):  # NaN or inf anywhere would make it so
            return np.ones(x.shape[0], dtype=bool)
    return ~_row_reduce(~np.isfinite(x), np.logical_or)


def rows_all_zero(x: np.ndarray) -> np.ndarray:
    """Per row of (N, D): every value is zero (one count when no row can be)."""
    if x.shape[1] == 0:
        return np.ones(x.shape[0], dtype=bool)
    first = x[:, 0]  # a column of its own when the rows are stored column by column
    if np.all(first) if x.flags.f_contiguous else x.size - np.count_nonzero(x) < x.shape[1]:
        return np.zeros(x.shape[0], dtype=bool)
    return ~_row_reduce(x != 0, np.logical_or)


def is_distribution(rows: np.ndarray) -> np.ndarray:
    """Per row of (N, C): non-negative and summing to 1 within DISTRIBUTION_TOLERANCE."""
    return (_row_reduce(rows, np.minimum) >= 0) & (
        np.abs(row_sums(rows) - 1.0) <= DISTRIBUTION_TOLERANCE
    )


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) per row of two (N, C) probability arrays, clipped to [EPSILON, 1] as in Keras
    and renormalised to sum to 1, so the result is a divergence (≥ 0) even when a quantized
    softmax row does not sum to 1.

    With row sums ``sp`` and ``sq``, the KL of the renormalised rows is
    ``Σ p·log(p/q) / sp − log(sp/sq)``: the same value without dividing every element by its
    row's sum twice; the clip is skipped when no value is outside [EPSILON, 1]."""
    if not (_inside(p) and _inside(q)):
        p, q = np.clip(p, EPSILON, 1.0), np.clip(q, EPSILON, 1.0)
    sp, sq = row_sums(p), row_sums(q)
    return np.maximum(row_dots(p, np.log(p / q)) / sp - np.log(sp / sq), 0.0)


def class_divergence(
    ref: np.ndarray, cand: np.ndarray, err: np.ndarray, labelled: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row of two (N, C) class outputs read as probabilities: the KL divergence of the
    candidate's from the reference's (:func:`kl_divergence`) and, given each row's labelled
    class, the change of its probability (candidate's minus reference's). ``err``:
    ``cand - ref``. The outputs are kept when every reference row already is a distribution,
    softmaxed otherwise (the reference decides, so both are read alike; row by row, a row of
    logits that happens to sum to 1 would be read differently from the rest).

    Logits whose probabilities are all at least EPSILON (nothing clips) are not made
    probabilities element by element: with ``e = exp(x - max)`` per row and ``s`` its row
    sum, ``p = e / s``, and ``log p - log q = -err - δ`` with
    ``δ = (max_r - max_c) + log(s_r / s_c)``, so ``KL = -Σ e_r·err / s_r - δ`` — one row
    product in place of a division, a logarithm and a product over every element (0.7× the
    time on a 4,096×10 block)."""
    rows = np.arange(ref.shape[0])
    if ref.min() >= 0 and is_distribution(ref).all():  # logits are mostly negative somewhere
        p, q = ref, cand
    else:
        (er, sr, mr), (ec, sc, mc) = _exp_parts(ref), _exp_parts(cand)
        # every p >= EPSILON when the smallest e of any row is (row sums are at least 1)
        if min(float(er.min()) / float(sr.max()), float(ec.min()) / float(sc.max())) >= EPSILON:
            delta = (mr - mc) + np.log(sr / sc)
            kl = np.maximum(-row_dots(er, err) / sr - delta, 0.0)
            if labelled is None:
                return kl, None
            return kl, ec[rows, labelled] / sc - er[rows, labelled] / sr
        p, q = np.divide(er, sr[:, None], out=er), np.divide(ec, sc[:, None], out=ec)
    kl = kl_divergence(p, q)
    return kl, None if labelled is None else q[rows, labelled] - p[rows, labelled]


def _exp_parts(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (N, C): ``e = exp(x - m)``, its row sums and the row maxima ``m`` (the
    softmax is ``e / s``)."""
    m = _row_reduce(logits, np.maximum)
    e = logits - m[:, None]
    np.exp(e, out=e)
    return e, row_sums(e), m


def _inside(x: np.ndarray) -> bool:
    """Every value of ``x`` is within [EPSILON, 1] (False with NaN)."""
    return x.size == 0 or bool(x.min() >= EPSILON and x.max() <= 1.0)


#: Wide outputs that are not class scores (a segmentation's mask, a detector's boxes) are
#: summed in pieces of at most this many values: each piece's float64 copies and error stay
#: in the L2 cache across the passes over them, instead of a block's going to memory and back
#: for each pass (mediapipe's selfie segmentation, 65,536 values a sample, 256 samples: the
#: fidelity sums took 0.27 s of a 5.5 s run in whole blocks).
PIECE_VALUES = 2**16


@dataclass(frozen=True)
class ErrorSums:
    """What the fidelity metrics need of a batch of (N, D) reference and candidate rows."""

    ref_sq: np.ndarray  # per row, Σ r²
    dot: np.ndarray  # per row, Σ r·c
    cand_sq: np.ndarray  # per row, Σ c²
    sq_err: float  # Σ (c − r)² over the batch
    abs_err: float  # Σ |c − r|
    max_abs_err: float  # max |c − r| (0 for an empty batch)


def row_error_sums(ref: np.ndarray, cand: np.ndarray, err: np.ndarray) -> ErrorSums:
    """The sums of float64 (N, D) rows held whole, their error ``err`` = cand − ref made
    already (class scores, which KL reads whole too)."""
    abs_err = np.abs(err)
    return ErrorSums(row_dots(ref, ref), row_dots(ref, cand), row_dots(cand, cand),
                     total_dot(err, err), float(abs_err.sum()),
                     float(abs_err.max(initial=0.0)))  # fmt: skip


def error_sums(ref: np.ndarray, cand: np.ndarray) -> ErrorSums:
    """The sums of (N, D) rows of any real dtype, in float64, PIECE_VALUES at a time: whole
    rows while they fit, a row's consecutive values beyond."""
    n, width = ref.shape
    ref_sq, dot, cand_sq = np.zeros(n), np.zeros(n), np.zeros(n)
    sq_err = abs_err = max_abs_err = 0.0
    rows = max(1, PIECE_VALUES // max(width, 1))
    cols = max(1, min(width, PIECE_VALUES))
    order: Literal["C", "F"] = "F" if 1 < width <= NARROW_ROWS else "C"  # as flat() has them
    for i in range(0, n, rows):
        at = slice(i, i + rows)
        for j in range(0, width, cols):
            r = ref[at, j : j + cols].astype(np.float64, order=order)
            c = cand[at, j : j + cols].astype(np.float64, order=order)
            ref_sq[at] += row_dots(r, r)
            dot[at] += row_dots(r, c)
            cand_sq[at] += row_dots(c, c)
            err = np.subtract(c, r, out=c)
            sq_err += total_dot(err, err)
            np.abs(err, out=err)
            abs_err += float(err.sum())
            max_abs_err = max(max_abs_err, float(err.max(initial=0.0)))
    return ErrorSums(ref_sq, dot, cand_sq, sq_err, abs_err, max_abs_err)


def cosine_from_sums(dot: np.ndarray, ref_sq: np.ndarray, cand_sq: np.ndarray) -> np.ndarray:
    """Per row, the cosine similarity from Σ r·c, Σ r² and Σ c²: 1 when both rows are zero,
    0 when one is."""
    norms = np.sqrt(ref_sq * cand_sq)
    if norms.size and norms.min() > 0:  # no zero row: the usual case, three operations
        return np.divide(dot, norms, out=norms)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where((ref_sq == 0) & (cand_sq == 0), 1.0, cos)


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q)`` (linear interpolation) of a 1-D array, from one sort:
    NumPy partitions around every requested point, several times slower for a dozen points
    of a few thousand values. The interpolation is NumPy's own, step for step, so the
    results are equal to the last bit."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    n = s.size
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    if n == 0 or np.isnan(s[-1]):  # NaN sorts last; NumPy answers NaN then
        return np.full(quantiles.shape, np.nan)
    virtual = (n - 1) * quantiles
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1  # the largest value itself
    below[last] = above[last] = -1
    lo, hi = below.astype(np.intp), above.astype(np.intp)
    gamma = virtual - lo
    a, b = s[lo], s[hi]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10·log10(Σr² / Σ(c−r)²): ``inf`` when identical, ``-inf`` for a zero signal with noise."""
    if noise_power == 0.0:
        return float("inf")
    if signal_power == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal_power / noise_power))


def has_class_axis(output: np.ndarray) -> bool:
    """An output of shape (N, C) with C ≥ 2 is read as per-class scores."""
    return output.ndim == 2 and output.shape[1] >= 2
