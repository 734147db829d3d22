"""Every metric against an independent implementation (scikit-learn, SciPy, NumPy), on random
data split into random batches and merged in random order."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax as scipy_softmax
from scipy.stats import entropy as scipy_entropy
from sklearn import metrics as skm

from quantlens.errors import DataError
from quantlens.metrics import ClassificationState, FidelityState, RegressionState

SETTINGS = settings(max_examples=40, deadline=None)


def split_points(draw: st.DrawFn, n: int) -> list[int]:
    cuts = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6, unique=True))
    return sorted(c for c in cuts if 0 < c < n)


def accumulate(make, update, arrays, cuts, order):
    """Update one state per batch, then merge the batch states in the given order."""
    bounds = [0, *cuts, len(arrays[0])]
    states = [update(make(), *[a[s:e] for a in arrays]) for s, e in itertools.pairwise(bounds)]
    ordered = [states[i] for i in order(len(states))]
    return functools.reduce(lambda a, b: a.merge(b), ordered)


@st.composite
def paired_outputs(draw: st.DrawFn, probabilities: bool = False):
    n = draw(st.integers(1, 60))
    c = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, c)) * draw(st.sampled_from([0.01, 1.0, 50.0]))
    cand = ref + rng.normal(size=(n, c)) * draw(st.sampled_from([0.0, 1e-3, 0.3]))
    if probabilities:
        ref, cand = scipy_softmax(ref, axis=1), scipy_softmax(cand, axis=1)
    cuts = split_points(draw, n)
    perm_seed = draw(st.integers(0, 1000))
    return ref, cand, cuts, lambda k: np.random.default_rng(perm_seed).permutation(k)


def fidelity(ref, cand, cuts, order):
    return accumulate(FidelityState, lambda s, r, c: s.update(r, c), [ref, cand], cuts, order)


def expected_kl(ref: np.ndarray, cand: np.ndarray, already_probabilities: bool) -> float:
    p, q = (ref, cand) if already_probabilities else (scipy_softmax(ref, 1), scipy_softmax(cand, 1))
    p, q = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    return float(scipy_entropy(p, q, axis=1).mean())  # normalises both rows to sum to 1


@SETTINGS
@given(paired_outputs())
def test_fidelity_matches_numpy_and_scipy(case) -> None:
    ref, cand, cuts, order = case
    got = fidelity(ref, cand, cuts, order).result()
    err = cand - ref
    assert got["mse"] == pytest.approx(
        skm.mean_squared_error(ref.ravel(), cand.ravel()), rel=1e-9, abs=1e-300
    )
    assert got["mae"] == pytest.approx(
        skm.mean_absolute_error(ref.ravel(), cand.ravel()), rel=1e-9, abs=1e-300
    )
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-9, abs=1e-300)
    assert got["max_abs_error"] == np.abs(err).max()
    noise = np.sum(err**2)
    if noise == 0:
        assert got["sqnr_db"] == float("inf")
    else:
        assert got["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(ref**2) / noise), rel=1e-9)
    cos = np.diag(skm.pairwise.cosine_similarity(ref, cand))
    assert got["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-9)
    assert got["top1_agreement"] == np.mean(ref.argmax(1) == cand.argmax(1))
    assert got["kl_divergence"] == pytest.approx(expected_kl(ref, cand, False), rel=1e-7, abs=1e-12)


@SETTINGS
@given(paired_outputs(probabilities=True))
def test_kl_uses_probabilities_as_given(case) -> None:
    ref, cand, cuts, order = case
    got = fidelity(ref, cand, cuts, order).result()
    assert got["kl_divergence"] == pytest.approx(expected_kl(ref, cand, True), rel=1e-7, abs=1e-12)


def test_kl_of_unnormalised_quantized_softmax_is_a_divergence() -> None:
    # An int8 softmax dequantized: rows near 1 but not exactly, zeros that clip to 1e-7.
    rng = np.random.default_rng(3)
    ref = scipy_softmax(rng.normal(size=(400, 10)) * 3, axis=1)
    cand = np.round(scipy_softmax(rng.normal(size=(400, 10)) * 3 + np.log(ref), axis=1) * 256) / 256
    assert not np.allclose(cand.sum(axis=1), 1.0, atol=1e-3)  # the trap: not a distribution
    got = FidelityState().update(ref, cand).result()["kl_divergence"]
    per_row = scipy_entropy(np.clip(ref, 1e-7, 1), np.clip(cand, 1e-7, 1), axis=1)
    assert got == pytest.approx(per_row.mean(), rel=1e-9)
    assert got >= 0
    same = FidelityState().update(ref, ref * 0.97).result()["kl_divergence"]
    assert 0 <= same < 1e-12  # a row scaled as a whole is the same distribution


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_kl_and_delta_p_of_each_sample_match_scipy(scale) -> None:
    """Per sample, from logits: where no probability clips (KL from the logits' exponentials
    and the error, never a logarithm of every probability) and where some do (clipped and
    renormalised as Keras does)."""
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(300, 10)) * scale
    cand = ref + rng.normal(size=(300, 10)) * 0.2
    y = rng.integers(0, 10, 300)
    state = FidelityState().update(ref, cand, y)
    p, q = scipy_softmax(ref, axis=1), scipy_softmax(cand, axis=1)
    assert (min(p.min(), q.min()) < 1e-7) == (scale > 1)  # both ways are taken
    expected = scipy_entropy(np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1), axis=1)
    (kl,), (dp,) = state.kl_values, state.delta_p_values  # kept as float32
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-10)
    rows = np.arange(300)
    np.testing.assert_allclose(dp, q[rows, y] - p[rows, y], rtol=1e-5, atol=1e-8)
    assert state.sum_kl == pytest.approx(expected.sum(), rel=1e-9)


def test_fidelity_of_image_outputs_has_no_class_metrics() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(5, 4, 4, 3))
    cand = ref + 0.1
    got = FidelityState().update(ref, cand).result()
    assert "top1_agreement" not in got and "kl_divergence" not in got
    assert got["mse"] == pytest.approx(0.01)
    flat_r, flat_c = ref.reshape(5, -1), cand.reshape(5, -1)
    cos = np.diag(skm.pairwise.cosine_similarity(flat_r, flat_c)).mean()
    assert got["cosine_similarity"] == pytest.approx(cos)


@pytest.mark.parametrize("piece", [1, 5, 12, 13, 64, 2**16])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int8"])
def test_wide_outputs_summed_in_pieces_match_numpy(piece, dtype, monkeypatch) -> None:
    """Outputs that are not class scores are summed PIECE_VALUES values at a time (whole rows,
    or a row's runs of values): the same figures as whole-array float64 NumPy and sklearn,
    whatever the piece and the dtype, rows of zeros included."""
    from quantlens.metrics import kernels

    monkeypatch.setattr(kernels, "PIECE_VALUES", piece)
    rng = np.random.default_rng(piece)
    ref = (rng.normal(size=(7, 3, 4, 1)) * 40).astype(dtype)
    cand = (ref.astype(np.float64) + rng.normal(size=ref.shape) * 3).astype(dtype)
    ref[2] = 0
    cand[4] = 0
    got = fidelity(ref, cand, [3], lambda k: list(range(k)))
    got = got.result()
    r, c = ref.reshape(7, -1).astype(np.float64), cand.reshape(7, -1).astype(np.float64)
    err = c - r
    assert got["mse"] == pytest.approx(np.mean(err**2), rel=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
    assert got["max_abs_error"] == np.abs(err).max()
    assert got["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(r**2) / np.sum(err**2)), rel=1e-12)
    cos = np.diag(skm.pairwise.cosine_similarity(r, c))  # 0 where one row is all zero
    assert got["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-12)
    assert "top1_agreement" not in got


def test_cosine_of_zero_outputs() -> None:
    zeros = np.zeros((2, 3))
    assert FidelityState().update(zeros, zeros).result()["cosine_similarity"] == 1.0
    ones = np.ones((2, 3))
    assert FidelityState().update(zeros, ones).result()["cosine_similarity"] == 0.0


@st.composite
def classification_case(draw: st.DrawFn):
    n = draw(st.integers(1, 80))
    c = draw(st.integers(2, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, c, size=n)
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), y] += draw(st.sampled_from([0.0, 1.0, 3.0]))
    perm_seed = draw(st.integers(0, 1000))
    return (
        y,
        scores,
        split_points(draw, n),
        lambda k: np.random.default_rng(perm_seed).permutation(k),
    )


@SETTINGS
@given(classification_case())
def test_classification_matches_sklearn(case) -> None:
    y, scores, cuts, order = case
    c = scores.shape[1]
    state = accumulate(
        lambda: ClassificationState.empty(c),
        lambda s, a, b: s.update(a, b),
        [y, scores],
        cuts,
        order,
    )
    got = state.result()
    pred = scores.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    if c >= 5:
        expected = skm.top_k_accuracy_score(y, scores, k=5, labels=np.arange(c))
        assert got["top5_accuracy"] == pytest.approx(expected)
    else:
        assert "top5_accuracy" not in got


def test_classification_accepts_one_hot_and_column_labels() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    y = np.array([1, 1, 1])
    a = ClassificationState.empty(2).update(y, scores).result()
    b = ClassificationState.empty(2).update(np.eye(2)[y], scores).result()
    c = ClassificationState.empty(2).update(y[:, None], scores).result()
    assert a == b == c
    assert a["accuracy"] == pytest.approx(2 / 3)


def test_single_unit_output_is_probability_of_class_one() -> None:
    p = np.array([[0.2], [0.7], [0.5], [0.1]])
    y = np.array([0, 1, 0, 1])
    got = ClassificationState.empty(1).update(y, p).result()
    assert got["accuracy"] == skm.accuracy_score(y, (p[:, 0] >= 0.5).astype(int))


@pytest.mark.parametrize("labels", [np.array([0, 3]), np.array([-1, 0]), np.array([0.5, 1.0])])
def test_labels_outside_classes_are_refused(labels: np.ndarray) -> None:
    with pytest.raises(DataError):
        ClassificationState.empty(3).update(labels, np.zeros((2, 3)))


@st.composite
def regression_case(draw: st.DrawFn):
    n = draw(st.integers(2, 80))
    k = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.normal(size=(n, k)) * 100 + 50
    pred = y + rng.normal(size=(n, k)) * draw(st.sampled_from([0.0, 1.0, 30.0]))
    perm_seed = draw(st.integers(0, 1000))
    return y, pred, split_points(draw, n), lambda m: np.random.default_rng(perm_seed).permutation(m)


@SETTINGS
@given(regression_case())
def test_regression_matches_sklearn(case) -> None:
    y, pred, cuts, order = case
    state = accumulate(RegressionState, lambda s, a, b: s.update(a, b), [y, pred], cuts, order)
    got = state.result()
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-9, abs=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-9, abs=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=1e-9, abs=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-7, abs=1e-9)


def test_regression_constant_target_follows_sklearn() -> None:
    y = np.full((4, 1), 3.0)
    for pred in (y.copy(), y + 1):
        got = RegressionState().update(y, pred).result()
        assert got["r2"] == skm.r2_score(y, pred)


@st.composite
def activation_batches(draw: st.DrawFn):
    """(N, positions, C) float activations and an int8 candidate with its (scale, zero
    point), sized to straddle the kernel's blocks: many samples to a block, or many blocks
    to a sample, channel counts that do and do not divide the block, odd position counts."""
    from quantlens.metrics import tensor_error

    block = draw(st.sampled_from([64, 1000, tensor_error.BLOCK]))
    n = draw(st.integers(1, 9))
    channels = draw(st.sampled_from([1, 3, 16, 40, 257]))
    positions = draw(st.integers(1, 3 * max(1, block // channels) + 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ref = rng.standard_normal((n, positions, channels)) * rng.uniform(0.1, 4, channels)
    ref = ref.astype(np.float32)
    scale, zero_point = float(np.float32(ref.std() / 20 + 1e-3)), int(rng.integers(-20, 20))
    q = np.clip(np.rint(ref / scale) + zero_point + rng.integers(-2, 3, ref.shape), -128, 127)
    return block, ref, q.astype(np.int8), scale, zero_point


@given(activation_batches(), st.booleans())
@SETTINGS
def test_tensor_error_matches_numpy_in_float64(case, integer) -> None:
    """Per-tensor and per-channel sums, ranges, cosine and the share of values at int8's ends,
    each block's partial sums added in any split of the samples, against float64 NumPy."""
    from quantlens.metrics import tensor_error

    block, ref, q, scale, zero_point = case
    real = ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tensor_error, "BLOCK", block)
        state = tensor_error.TensorErrorState()
        for part in np.array_split(np.arange(len(ref)), 2):
            if not part.size:
                continue
            if integer:
                state = state.update(ref[part], q[part], (scale, zero_point))
            else:
                state = state.update(ref[part], real[part])
    r, c = ref.astype(np.float64), real.astype(np.float64)
    e = c - r
    assert state.channel_ref_sq == pytest.approx((r**2).sum(axis=(0, 1)), rel=1e-5)
    assert state.channel_sq_err == pytest.approx((e**2).sum(axis=(0, 1)), rel=1e-5, abs=1e-9)
    assert state.channel_abs_max == pytest.approx(np.abs(r).max(axis=(0, 1)))
    assert (state.ref_min, state.ref_max) == (r.min(), r.max())
    fid = state.tensor.result()
    assert fid["mae"] == pytest.approx(np.abs(e).mean(), rel=1e-5)
    assert fid["max_abs_error"] == pytest.approx(np.abs(e).max(), rel=1e-6)
    assert fid["sqnr_db"] == pytest.approx(10 * np.log10((r**2).sum() / (e**2).sum()), rel=1e-5)
    flat_r, flat_c = r.reshape(len(r), -1), c.reshape(len(c), -1)
    # a row that dequantizes to zeros has cosine 0 (1 when the reference's is zero too)
    r_sq, c_sq = (flat_r**2).sum(1), (flat_c**2).sum(1)
    norms = np.sqrt(r_sq * c_sq)
    cosine = np.where(norms > 0, (flat_r * flat_c).sum(1) / np.where(norms > 0, norms, 1.0),
                      np.where((r_sq == 0) & (c_sq == 0), 1.0, 0.0))  # fmt: skip
    assert fid["cosine_similarity"] == pytest.approx(cosine.mean(), rel=1e-5)
    if integer:
        assert state.saturation == np.count_nonzero((q == -128) | (q == 127)) / q.size
    else:
        assert state.saturation is None


@given(
    st.integers(1, 50), st.sampled_from([1, 3, 10, 32, 33, 200]), st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "zeros", "nonfinite", "huge", "ties"]),
)  # fmt: skip
@SETTINGS
def test_row_kernels_match_numpy_per_row(n, width, seed, kind) -> None:
    """The row reductions that skip NumPy's per-row cost (narrow rows a column at a time or
    stored column by column, a whole-array check first) give what NumPy's axis=1 reductions
    give, on rows with zeros, NaN, inf, ties and values whose sum overflows, in either
    memory order."""
    from quantlens.metrics import kernels

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, width))
    if kind == "zeros":
        x[rng.random((n, width)) < 0.7] = 0.0
        x[rng.integers(0, n)] = 0.0
    elif kind == "nonfinite":
        x.flat[rng.integers(0, x.size, 3)] = rng.choice([np.nan, np.inf, -np.inf], 3)
    elif kind == "huge":
        x[:, 0] = x[:, -1] = 1e308  # finite, but a row's sum is inf
    elif kind == "ties":
        x = rng.integers(-2, 3, (n, width)).astype(np.float64)
    if n > 1 and width > 1:  # narrow rows are stored column by column
        assert kernels.flat(x).flags.f_contiguous == (width <= kernels.NARROW_ROWS)
    for rows in (x, np.asfortranarray(x)):
        np.testing.assert_array_equal(kernels.rows_all_finite(rows), np.isfinite(x).all(axis=1))
        np.testing.assert_array_equal(kernels.rows_all_zero(rows), ~x.any(axis=1))
        np.testing.assert_array_equal(kernels.row_argmax(rows), x.argmax(axis=1))
        mask = rows > 0.3
        np.testing.assert_array_equal(kernels.row_counts(mask), mask.sum(axis=1))
    if kind != "nonfinite":
        logits = x if kind != "huge" else x / 1e306
        for rows in (logits, np.asfortranarray(logits)):
            e, total, top = kernels._exp_parts(rows)  # the softmax, as e / its row sums
            np.testing.assert_array_equal(top, logits.max(axis=1))
            np.testing.assert_allclose(e / total[:, None], scipy_softmax(logits, axis=1),
                                       rtol=1e-12, atol=1e-300)  # fmt: skip


def test_tensor_error_of_an_empty_tensor_leaves_the_state_as_it_was() -> None:
    from quantlens.metrics.tensor_error import TensorErrorState

    before = TensorErrorState().update(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    for shape in ((4, 0, 3), (4, 5, 0)):
        assert (
            TensorErrorState()
            .update(np.zeros(shape, np.float32), np.zeros(shape, np.int8), (0.1, 0))
            .samples
            == 0
        )
        assert before.update(np.zeros(shape, np.float32), np.zeros(shape)) is before


@given(
    st.integers(1, 3000), st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "ties", "exponential"]),
)  # fmt: skip
@SETTINGS
def test_percentiles_from_one_sort_equal_numpy_to_the_bit(n, seed, kind) -> None:
    from quantlens.metric_registry import PERCENTILES
    from quantlens.metrics.kernels import percentiles

    rng = np.random.default_rng(seed)
    values = {"normal": lambda: rng.normal(size=n),
              "ties": lambda: rng.integers(-3, 4, n).astype(np.float64),
              "exponential": lambda: rng.exponential(1e-5, n)}[kind]()  # fmt: skip
    for q in ([p for p, _ in PERCENTILES], [2.5, 97.5], [0.0], [100.0], [33.3, 66.7]):
        np.testing.assert_array_equal(percentiles(values, q), np.percentile(values, q))
    with_nan = np.append(values, np.nan)
    assert np.isnan(percentiles(with_nan, [50.0])).all()
