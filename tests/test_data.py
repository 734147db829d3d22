"""Data sources, batching, and the checks made before any model runs."""

from __future__ import annotations

import numpy as np
import pytest

from quantlens import load_dataset
from quantlens.data import BUILTINS
from quantlens.errors import DataError
from quantlens.results import TensorSpec

IMAGE = [TensorSpec("image", (None, 8, 8, 1), "float32")]
TWO = [TensorSpec("feats", (None, 4), "float32"), TensorSpec("aux", (None, 3), "float32")]


def collect(ds, specs=IMAGE, **kw):
    batches = list(ds.bind(specs, **kw))
    xs = [np.concatenate([b.inputs[i] for b in batches]) for i in range(len(specs))]
    ys = None if batches[0].labels is None else np.concatenate([b.labels for b in batches])
    return batches, xs, ys


def test_builtin_digits_split_is_fixed_and_documented() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_dataset("digits")
    batches, (x,), y = collect(ds, batch_size=100)
    d = load_digits()
    _, x_test, _, y_test = train_test_split(
        d.images, d.target, test_size=0.25, random_state=0, stratify=d.target
    )
    assert ds.num_samples == 450 and x.shape == (450, 8, 8, 1)
    np.testing.assert_allclose(x[..., 0], x_test / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(y, y_test)
    assert [len(b) for b in batches] == [100, 100, 100, 100, 50]
    assert load_dataset("digits:train").num_samples == 1797 - 450
    assert set(BUILTINS) == {"digits", "diabetes"}


def test_npz_with_named_inputs_binds_in_model_order(tmp_path) -> None:
    rng = np.random.default_rng(0)
    feats, aux, y = rng.random((10, 4)), rng.random((10, 3)), rng.integers(0, 3, 10)
    np.savez(tmp_path / "d.npz", aux=aux, feats=feats, y=y)
    _, (f, a), labels = collect(load_dataset(tmp_path / "d.npz"), TWO, batch_size=4)
    np.testing.assert_array_equal(f, feats)
    np.testing.assert_array_equal(a, aux)
    np.testing.assert_array_equal(labels, y)


def test_npy_is_inputs_only_and_limit_applies(tmp_path) -> None:
    x = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    batches, (got,), y = collect(load_dataset(tmp_path / "x.npy"), batch_size=6, limit=15)
    assert y is None
    assert [len(b) for b in batches] == [6, 6, 3]
    np.testing.assert_array_equal(got, x[:15])


def test_iterables_of_samples_or_uneven_batches_are_rebatched() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((23, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 23)
    samples = [(x[i], y[i]) for i in range(23)]
    b1, (gx,), gy = collect(load_dataset(samples), batch_size=5)
    assert [len(b) for b in b1] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    uneven = [(x[:7], y[:7]), (x[7:9], y[7:9]), (x[9:], y[9:])]
    b2, (gx2,), _ = collect(load_dataset(uneven), batch_size=4, limit=21)
    assert [len(b) for b in b2] == [4, 4, 4, 4, 4, 1]
    np.testing.assert_array_equal(gx2, x[:21])


def test_tf_data_dataset(tf) -> None:
    x = np.random.default_rng(0).random((9, 8, 8, 1)).astype(np.float32)
    y = np.arange(9) % 10
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    batches, (gx,), gy = collect(load_dataset(ds), batch_size=3)
    assert [len(b) for b in batches] == [3, 3, 3]
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


def test_shape_mismatch_says_expected_and_given() -> None:
    x = np.zeros((5, 64), dtype=np.float32)
    with pytest.raises(
        DataError, match=r"expects samples of shape \(8, 8, 1\) float32.*gives \(64,\) float32"
    ):
        load_dataset(x).bind(IMAGE)


def test_missing_input_name_and_label_count_are_refused(tmp_path) -> None:
    np.savez(tmp_path / "d.npz", feats=np.zeros((3, 4)), other=np.zeros((3, 3)))
    with pytest.raises(DataError, match="model input 'aux' not found"):
        load_dataset(tmp_path / "d.npz").bind(TWO)
    with pytest.raises(DataError, match="2 labels for 3 samples"):
        load_dataset(np.zeros((3, 8, 8, 1)), labels=np.zeros(2))


def test_empty_missing_and_unknown_sources(tmp_path) -> None:
    with pytest.raises(DataError, match="empty"):
        load_dataset(np.zeros((0, 8, 8, 1)))
    with pytest.raises(DataError, match="empty"):
        load_dataset(iter(())).bind(IMAGE)
    with pytest.raises(DataError, match="data not found"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(DataError, match="unknown data type"):
        load_dataset(tmp_path / "d.txt")


def test_nonfinite_inputs_are_refused_unless_allowed() -> None:
    x = np.zeros((6, 8, 8, 1), dtype=np.float32)
    x[4, 1, 2, 0] = np.nan
    with pytest.raises(DataError, match="NaN or inf at sample 4"):
        collect(load_dataset(x), batch_size=3)
    _, (got,), _ = collect(load_dataset(x), batch_size=3, allow_nonfinite=True)
    assert np.isnan(got).sum() == 1
    x[4, 1, 2, 0] = np.inf
    with pytest.raises(DataError, match="NaN or inf at sample 4"):
        collect(load_dataset(x), batch_size=3)
    x[4, 1, 2, 0] = 3e38  # finite, though a sum of such values is not
    x[5, 0, 0, 0] = 3e38
    batches, _, _ = collect(load_dataset(x), batch_size=4)
    # the range each checked batch carries, which the saturation count reads
    assert [b.ranges for b in batches] == [((0.0, 0.0),), ((0.0, float(np.float32(3e38))),)]
    batches, _, _ = collect(load_dataset(x), batch_size=4, allow_nonfinite=True)
    assert all(b.ranges is None for b in batches)


def test_batches_across_chunk_boundaries_hold_every_sample_once_in_order() -> None:
    """Chunks of 7 uneven samples cut into batches of 5: each batch is the data's next five
    samples, whether it lies inside a chunk (a view) or spans two (a copy of just those)."""
    x = np.arange(103 * 3, dtype=np.float32).reshape(103, 3)
    y = np.arange(103)
    chunks = [(x[i : i + 7], y[i : i + 7]) for i in range(0, 103, 7)]
    ds = load_dataset(iter(chunks))
    batches = list(ds.bind([TensorSpec("x", (None, 3), "float32")], batch_size=5))
    assert [len(b) for b in batches] == [5] * 20 + [3]
    np.testing.assert_array_equal(np.concatenate([b.inputs[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), y)
    limited = list(load_dataset(iter(chunks)).bind([TensorSpec("x", (None, 3), "float32")],
                                                   batch_size=5, limit=12))  # fmt: skip
    np.testing.assert_array_equal(np.concatenate([b.inputs[0] for b in limited]), x[:12])


def test_a_read_chunk_is_let_go_once_its_samples_are_used() -> None:
    """Memory stays flat in the set's size: nothing holds a chunk after its last batch (the
    first chunk used to be pinned for the whole run)."""
    import gc
    import weakref

    refs = []

    def read():  # as a reader makes them: one chunk at a time
        for i in range(4):
            chunk = np.full((100, 64), i, dtype=np.float32)
            refs.append(weakref.ref(chunk))
            yield chunk

    ds = load_dataset(read())
    batches = ds.bind([TensorSpec("x", (None, 64), "float32")], batch_size=50)
    for _ in range(5):  # into the third chunk
        next(batches)
    gc.collect()
    assert refs[0]() is None and refs[1]() is None
    assert sum(len(b) for b in batches) == 400 - 5 * 50


def test_file_reads_reuse_only_buffers_nothing_holds(tmp_path, monkeypatch) -> None:
    """Rows of a mapped .npy are read into a few buffers used again, never into one that
    something still holds: pieces kept by the caller keep their values, and a run that lets
    them go reads into the same few buffers whatever the file's length."""
    from quantlens.data.sources import _ReadBuffers, read_rows

    x = np.arange(1000 * 6, dtype=np.float32).reshape(1000, 6)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kept = list(read_rows(mapped, 3, 997, 64))  # every piece held at once
    np.testing.assert_array_equal(np.concatenate(kept), x[3:997])
    assert [len(k) for k in kept] == [64] * 15 + [34]
    assert len({k.__array_interface__["data"][0] for k in kept}) == len(kept)
    # batches of 50 kept, as views of 64-row pieces and copies where they span two
    monkeypatch.setattr("quantlens.data.sources.BYTES_PER_READ", 64 * 6 * 4)
    spec = [TensorSpec("x", (None, 6), "float32")]
    batches = list(load_dataset(tmp_path / "x.npy").bind(spec, batch_size=50))
    np.testing.assert_array_equal(np.concatenate([b.inputs[0] for b in batches]), x)
    seen, start = set(), 0
    for piece in read_rows(mapped, 0, 1000, 10):  # each let go before the next
        np.testing.assert_array_equal(piece, x[start : start + 10])
        seen.add(piece.__array_interface__["data"][0])
        start += len(piece)
    assert start == 1000 and len(seen) <= _ReadBuffers.KEPT
    (few,) = read_rows(mapped, 990, 995, 4096)  # a buffer of the rows asked for, not 4,096
    assert few.base.shape == (5, 6)
    # a file that shrinks under the reader is a one-line data error, not garbage rows
    with open(tmp_path / "x.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match=r"ended \d+ bytes early"):
        list(read_rows(mapped, 0, 1000, 64))


def test_sample_shapes_come_from_data_read_again_only(tmp_path) -> None:
    x = np.zeros((5, 8, 8, 1), np.float32)
    np.save(tmp_path / "x.npy", x)
    assert load_dataset(tmp_path / "x.npy").sample_shapes(IMAGE) == [(8, 8, 1)]
    assert load_dataset(x).sample_shapes(IMAGE) == [(8, 8, 1)]
    once = load_dataset(iter([x[:2], x[2:]]))
    assert once.sample_shapes(IMAGE) is None
    assert sum(len(b) for b in once.bind(IMAGE, batch_size=2)) == 5  # nothing was taken


@pytest.mark.parametrize(("total", "workers", "unit", "limit"),
                         [(2048, 2, 32, None), (1000, 2, 256, None), (10_000, 4, 256, 9_999),
                          (513, 3, 1, None), (5, 2, 32, None)])  # fmt: skip
def test_guided_shards_cover_the_data_in_whole_batches_shrinking(tmp_path, total, workers, unit,
                                                                 limit) -> None:  # fmt: skip
    x = np.arange(total * 3, dtype=np.float32).reshape(total, 3)
    np.save(tmp_path / "x.npy", x)
    dataset = load_dataset(tmp_path / "x.npy")
    shards = dataset.guided_shards(workers, limit, unit=unit)
    spec = [TensorSpec("x", (None, 3), "float32")]
    parts = [np.concatenate([b.inputs[0] for b in s.bind(spec, batch_size=7)]) for s in shards]
    used = total if limit is None else min(total, limit)
    assert np.array_equal(np.concatenate(parts), x[:used])  # in order, every sample once
    sizes = [len(p) for p in parts]
    assert all(s % unit == 0 for s in sizes[:-1])  # whole batches but the last
    assert sizes == sorted(sizes, reverse=True) or sizes[:-1] == sorted(sizes[:-1], reverse=True)
    assert sizes[0] <= -(-used // (2 * workers)) + unit  # a share of 1/(2·workers) first


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_reads_hold_whole_batches(tmp_path, monkeypatch, kind) -> None:
    """A file read in pieces reads at least a batch at a time, even where its byte budget
    would read fewer rows: no batch is joined from two reads (a copy of the batch)."""
    from quantlens.data import dataset, sources

    monkeypatch.setattr(sources, "BYTES_PER_READ", 4 * 1024)  # 4 rows of 1 KiB a read
    x = np.random.default_rng(0).random((40, 256), dtype=np.float32)
    path = tmp_path / f"x.{kind}"
    np.save(path, x) if kind == "npy" else np.savez(path, x=x)
    joined: list[int] = []
    real = dataset._concat

    def counted(parts):
        joined.append(len(parts))
        return real(parts)

    monkeypatch.setattr(dataset, "_concat", counted)
    spec = TensorSpec("x", (None, 256), "float32")
    batches = list(load_dataset(str(path)).bind([spec], batch_size=8))
    assert [len(b) for b in batches] == [8] * 5
    np.testing.assert_array_equal(np.concatenate([b.inputs[0] for b in batches]), x)
    assert joined and set(joined) == {1}
