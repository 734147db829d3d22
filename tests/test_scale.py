"""Streaming sources and engines: the same report inline, in a process pool and on Ray."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import quantlens
from quantlens.data import load_dataset
from quantlens.data.sources import CHUNK, ROWS_PER_READ, CsvSource, ImageSpec, NpzSource
from quantlens.results import BatchingDecision, TensorSpec

IMAGE = [TensorSpec("image", (None, 8, 8, 1), "float32")]


@pytest.fixture(scope="module")
def big_digits(digits_split):
    x, y = digits_split[2], digits_split[3]
    return np.concatenate([x] * 3), np.concatenate([y] * 3)  # 1350 samples: two workers


def _same(a, b) -> None:
    for ma, mb in zip(a.models, b.models, strict=True):
        assert ma.nonfinite_outputs == mb.nonfinite_outputs
        if ma.task_metrics is None or mb.task_metrics is None:  # no labels
            assert ma.task_metrics is mb.task_metrics
        else:
            assert ma.task_metrics == pytest.approx(mb.task_metrics, rel=1e-12)
        if ma.fidelity:  # None where a metric does not apply (KL of outputs that are not
            # probabilities) is the same None both ways
            assert ma.fidelity.keys() == mb.fidelity.keys()
            for key, value in ma.fidelity.items():
                assert value == (
                    None if value is None else pytest.approx(mb.fidelity[key], rel=1e-9)
                ), key
        if ma.paired:
            flips = (ma.paired.correct_to_wrong, ma.paired.wrong_to_correct)
            assert flips == (mb.paired.correct_to_wrong, mb.paired.wrong_to_correct)
            assert ma.paired.delta == mb.paired.delta
    assert a.dataset == b.dataset


def test_process_pool_equals_inline(digits_models, big_digits, workers_for_any_work) -> None:
    args = (digits_models["float"], [digits_models["int8io"], digits_models["int8"]], big_digits)
    inline = quantlens.evaluate(*args)
    pooled = quantlens.evaluate(*args, workers=2)
    assert inline.settings["engine"] == "inline" and pooled.settings["workers"] == 2
    assert pooled.settings["workers_in"] == "processes"  # small models: Python-bound batches
    _same(inline, pooled)


def test_ray_equals_inline(digits_models, big_digits) -> None:
    pytest.importorskip("ray")
    args = (digits_models["float"], [digits_models["int8io"]], big_digits)
    inline = quantlens.evaluate(*args)
    on_ray = quantlens.evaluate(*args, workers=2, engine="ray")
    assert on_ray.settings["engine"] == "ray"
    _same(inline, on_ray)


def test_small_sets_and_iterables_stay_inline(digits_models, digits_split) -> None:
    result = quantlens.evaluate(
        digits_models["float"], [digits_models["int8io"]], "digits", workers=4
    )
    assert result.settings["workers"] == 1  # 450 samples do not repay a worker's start-up
    samples = [(digits_split[2][i], digits_split[3][i]) for i in range(20)]
    with pytest.raises(quantlens.QuantlensError, match="known size"):
        quantlens.evaluate(digits_models["float"], [digits_models["int8io"]], iter(samples * 60),
                           workers=2)  # fmt: skip


def test_npz_is_memory_mapped_and_read_lazily(tmp_path, digits_split) -> None:
    x, y = digits_split[2], digits_split[3]
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    plain = NpzSource.open(tmp_path / "plain.npz")
    inputs, _ = plain._arrays()
    assert isinstance(inputs["x"], np.memmap)  # opening reads nothing but the headers
    big = np.concatenate([x] * 20)  # 9,000 samples: read in pieces of ROWS_PER_READ
    np.savez(tmp_path / "big.npz", x=big)
    sizes = [len(c[0]["x"]) for c in NpzSource.open(tmp_path / "big.npz").chunks()]
    assert sizes == [ROWS_PER_READ, ROWS_PER_READ, len(big) - 2 * ROWS_PER_READ]
    for name in ("plain.npz", "packed.npz"):
        ds = load_dataset(tmp_path / name)
        got = np.concatenate([b.inputs[0] for b in ds.bind(IMAGE, batch_size=100)])
        np.testing.assert_array_equal(got, x)
    shards = load_dataset(tmp_path / "plain.npz").shards(3)
    assert [s.num_samples for s in shards] == [150, 150, 150]
    got = np.concatenate([b.labels for s in shards for b in s.bind(IMAGE, batch_size=64)])
    np.testing.assert_array_equal(got, y)


def test_csv_streams_in_chunks(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(CHUNK * 2 + 7, 3)).round(4).astype(np.float32)
    y = rng.integers(0, 3, len(x))
    lines = ["a,b,label,c"] + [f"{r[0]},{r[1]},{t},{r[2]}" for r, t in zip(x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    source = CsvSource.open(tmp_path / "d.csv")
    sizes = [len(chunk[1]) for chunk in source.chunks()]
    assert sizes == [CHUNK, CHUNK, 7]
    ds = load_dataset(tmp_path / "d.csv")
    spec = [TensorSpec("x", (None, 3), "float32")]
    batches = list(ds.bind(spec, batch_size=100))
    np.testing.assert_allclose(np.concatenate([b.inputs[0] for b in batches]), x, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), y)
    shard = ds.shards(2)[1]
    first = next(iter(shard.bind(spec, batch_size=5)))
    np.testing.assert_allclose(first.inputs[0], x[len(x) - shard.num_samples :][:5], rtol=1e-6)


def test_image_folder_with_a_preprocessing_spec(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for k in range(3):
            img = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / cls / f"{k}.png")
            pixels[(cls, k)] = img
    spec = "size=12x10,scale=1/255,mean=0.5:0.5:0.5,std=0.25:0.25:0.25,channels=bgr,layout=nchw"
    ds = load_dataset(tmp_path, preprocess=spec)
    assert ds.num_samples == 6
    (batch,) = ds.bind([TensorSpec("img", (None, 3, 10, 12), "float32")], batch_size=6)
    np.testing.assert_array_equal(batch.labels, [0, 0, 0, 1, 1, 1])
    expected = (pixels[("dog", 1)][..., ::-1] / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(
        batch.inputs[0][4], expected.transpose(2, 0, 1), rtol=1e-5, atol=1e-6
    )
    assert ImageSpec.parse("size=32") == ImageSpec(size=(32, 32))
    with pytest.raises(quantlens.QuantlensError, match="preprocessing spec"):
        ImageSpec.parse("sise=32")


def _threads_calling(monkeypatch, module, name: str) -> list[str]:
    """``module.name`` spied on: the list fills with the name of each calling thread."""
    real, calls = getattr(module, name), []

    def spy(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_large_models_run_their_workers_as_threads(tmp_path, monkeypatch) -> None:
    """Models whose batches are spent in a runtime that releases the GIL (here ONNX convs of
    1.2 MB a sample) get worker threads, each with its own models, not processes; the report
    equals an inline run's (small models keep processes: test_process_pool_equals_inline)."""
    from quantlens.engine import pool
    from tests.test_onnx import _wide_conv

    ref, cand = (str(_wide_conv(tmp_path / f"{n}.onnx", 24, 24)) for n in ("ref", "cand"))
    x = np.random.default_rng(1).random((1100, 3, 24, 24), dtype=np.float32)
    ran_in = _threads_calling(monkeypatch, pool, "run_shard")
    inline = quantlens.evaluate(ref, [cand], x, workers=1)
    threaded = quantlens.evaluate(ref, [cand], x, workers=2)
    assert threaded.settings["workers"] == 2 and threaded.settings["workers_in"] == "threads"
    assert ran_in and set(ran_in) == {"quantlens-worker-1"}  # shards ran in the thread
    _same(inline, threaded)
    ran_in.clear()  # three workers: two threads side by side, each with its own models
    three = quantlens.evaluate(ref, [cand], x, workers=3)
    assert three.settings["workers"] == 3 and three.settings["workers_in"] == "threads"
    assert set(ran_in) <= {"quantlens-worker-1", "quantlens-worker-2"} and ran_in
    _same(inline, three)


def test_a_run_in_worker_threads_starts_no_process_machinery(tmp_path) -> None:
    """Worker threads need nothing of multiprocessing's: a run that has them does not import
    the process pool (6 ms of every such run; processes: test_process_pool_equals_inline)."""
    import subprocess
    import sys

    from tests.test_onnx import _wide_conv

    ref, cand = (str(_wide_conv(tmp_path / f"{n}.onnx", 24, 24)) for n in ("ref", "cand"))
    np.save(
        tmp_path / "x.npy", np.random.default_rng(1).random((1100, 3, 24, 24), dtype=np.float32)
    )
    code = (
        "import sys, numpy as np, quantlens\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"r = quantlens.evaluate({ref!r}, [{cand!r}], x, workers=2, bench=False)\n"
        "print(r.settings['workers_in'], 'concurrent.futures.process' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["threads", "False"]


def test_a_failing_worker_thread_fails_the_run(tmp_path, monkeypatch) -> None:
    from quantlens.engine import pool
    from tests.test_onnx import _wide_conv

    path = str(_wide_conv(tmp_path / "wide.onnx", 24, 24))
    x = np.random.default_rng(1).random((1100, 3, 24, 24), dtype=np.float32)

    def broken(*args, **kwargs):
        raise quantlens.QuantlensError("the worker's shard broke")

    monkeypatch.setattr(pool, "run_shard", broken)
    with pytest.raises(quantlens.QuantlensError, match="worker's shard broke"):
        quantlens.evaluate(path, [path], x, workers=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("quantlens-worker")]


def test_worker_threads_stop_between_batches_when_the_run_fails(tmp_path, monkeypatch) -> None:
    """The caller's own shard fails (as Ctrl-C would) while a worker thread is inside one:
    the thread stops at its next batch instead of finishing its shard."""
    from quantlens import evaluation
    from quantlens.engine import pool
    from tests.test_onnx import _wide_conv

    path = str(_wide_conv(tmp_path / "wide.onnx", 24, 24))
    x = np.random.default_rng(1).random((1100, 3, 24, 24), dtype=np.float32)
    inside, ended = threading.Event(), []
    real = pool.run_shard

    def watched(*args, **kwargs):
        inside.set()
        try:
            return real(*args, **kwargs)
        except BaseException as exc:
            ended.append(type(exc).__name__)
            raise

    def failing(*args, decided=None, **kwargs):
        if decided is not None:  # the first shard decides the batching the threads wait for
            decided([BatchingDecision("resize", "as probed")] * 2)
        assert inside.wait(60)
        raise quantlens.QuantlensError("the caller's shard failed")

    monkeypatch.setattr(pool, "run_shard", watched)
    monkeypatch.setattr(evaluation, "run_shard", failing)
    with pytest.raises(quantlens.QuantlensError, match="caller's shard failed"):
        quantlens.evaluate(path, [path], x, workers=2)
    assert ended == ["_Stopped"]


def test_worker_threads_wait_for_the_batching_the_callers_first_batch_decides(
    tmp_path, monkeypatch
) -> None:
    """With worker threads, the batching is probed once, by the caller on the data's first
    batch (which it runs on, as an inline run does), not before the shards on samples run
    for nothing; the threads load their models meanwhile and run as decided, told as soon as
    the probe has run the batch's first invoke (its first PROBE_SAMPLES here: the rest of
    the batch runs after). The report, decisions included, equals the inline run's (whose
    probe runs the whole batch)."""
    from quantlens import evaluation
    from quantlens.engine import shard
    from quantlens.models.batching import PROBE_SAMPLES
    from tests.test_onnx import _wide_conv

    ref, cand = (str(_wide_conv(tmp_path / f"{n}.onnx", 24, 24)) for n in ("ref", "cand"))
    x = np.random.default_rng(2).random((1100, 3, 24, 24), dtype=np.float32)
    probes: list[tuple[str, int]] = []
    real = shard.probe_all

    def spy(models, feeds, **kwargs):
        probes.append((threading.current_thread().name, len(feeds[0][0])))
        return real(models, feeds, **kwargs)

    monkeypatch.setattr(shard, "probe_all", spy)
    monkeypatch.setattr(evaluation, "probe_models", None)  # never called: it would fail
    inline = quantlens.evaluate(ref, [cand], x, workers=1)
    batch = inline.settings["batch_size"]
    assert batch > PROBE_SAMPLES and probes == [("MainThread", batch)]
    probes.clear()
    threaded = quantlens.evaluate(ref, [cand], x, workers=2)
    assert threaded.settings["workers_in"] == "threads"
    assert probes == [("MainThread", PROBE_SAMPLES)]
    _same(inline, threaded)
    # the same decisions (the inline run times its samples per invoke, the shards do not)
    decided = [[(m.batching.mode, m.batching.reason, m.batching.max_relative_difference)
                for m in run.models] for run in (inline, threaded)]  # fmt: skip
    assert decided[0] == decided[1]


def test_worker_threads_waiting_for_the_batching_stop_when_the_first_shard_fails(
    tmp_path, monkeypatch
) -> None:
    """The caller's first shard fails before it decides anything: the threads waiting for
    the decisions stop, and the run ends with the error (no thread left behind)."""
    from quantlens import evaluation
    from tests.test_onnx import _wide_conv

    path = str(_wide_conv(tmp_path / "wide.onnx", 24, 24))
    x = np.random.default_rng(1).random((1100, 3, 24, 24), dtype=np.float32)

    def failing(*args, **kwargs):
        raise quantlens.QuantlensError("the first shard failed")

    monkeypatch.setattr(evaluation, "run_shard", failing)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            quantlens.evaluate(path, [path], x, workers=2)
        except quantlens.QuantlensError as exc:
            raised.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    caller.join(120)  # a hang fails here instead of stalling the suite
    assert not caller.is_alive()
    assert [str(e) for e in raised] == ["the first shard failed"]
    assert not [t for t in threading.enumerate() if t.name.startswith("quantlens-worker")]


@pytest.mark.parametrize("how", ["script", "module"])
def test_worker_processes_do_not_run_the_callers_script_again(
    digits_models, big_digits, tmp_path, how: str
) -> None:
    """A script (``python script.py``) or module (``python -m job.run``) that calls evaluate
    at its top level, with no ``if __name__ == "__main__":`` block, gets its worker processes
    (small models) and its report; its top-level code runs once, in its own process, not
    again in each worker (multiprocessing's spawn would)."""
    import subprocess
    import sys

    np.savez(tmp_path / "data.npz", x=big_digits[0], y=big_digits[1])
    runs = tmp_path / "runs.txt"
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "__init__.py").write_text("")
    script = tmp_path / "job" / "run.py"
    script.write_text(
        "import quantlens\n"
        "from quantlens.engine import workers\n"
        "workers.MIN_SECONDS_PER_PROCESS = 1e-12  # a small run, given its workers anyway\n"
        f"with open({str(runs)!r}, 'a') as f:\n"
        "    f.write('ran\\n')\n"
        f"r = quantlens.evaluate({str(digits_models['float'])!r}, "
        f"[{str(digits_models['int8io'])!r}], {str(tmp_path / 'data.npz')!r}, workers=2)\n"
        "print(r.settings['workers'], r.settings['workers_in'])\n"
    )
    command = [str(script)] if how == "script" else ["-m", "job.run"]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "processes"]
    assert runs.read_text() == "ran\n"


def test_large_models_get_worker_threads_for_fewer_samples(tmp_path, digits_models) -> None:
    """Worker threads start in milliseconds: large models (2.4 MB of tensors a sample here)
    get two for 600 samples, one per MIN_BYTES_PER_THREAD of work, where worker processes
    need MIN_SAMPLES_PER_WORKER samples each (small models run 600 inline)."""
    from quantlens.engine.workers import MIN_BYTES_PER_THREAD, thread_workers_by_work
    from tests.test_onnx import _wide_conv

    path = str(_wide_conv(tmp_path / "wide.onnx", 24, 24))
    x = np.random.default_rng(1).random((600, 3, 24, 24), dtype=np.float32)
    threaded = quantlens.evaluate(path, [path], x, workers=2)
    assert threaded.settings["workers"] == 2 and threaded.settings["workers_in"] == "threads"
    digits = np.random.default_rng(1).random((600, 8, 8, 1), dtype=np.float32)
    small = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], digits, workers=2)
    assert small.settings["workers"] == 1
    assert thread_workers_by_work(4, 600, 2 * 2**20) == 2  # 1.2 GB: two threads' worth
    assert thread_workers_by_work(4, 100, MIN_BYTES_PER_THREAD) == 4  # never more than asked
    assert thread_workers_by_work(2, 600, None) == 1  # a size unknown: by samples
    assert thread_workers_by_work(4, 2048, 1) == 4  # never fewer than by samples


def test_worker_processes_by_the_time_the_first_batch_predicts(
    digits_models, big_digits, monkeypatch
) -> None:
    """Small models get a worker process per MIN_SECONDS_PER_PROCESS of the run their first
    batch, timed, predicts: 1,350 digits samples (milliseconds in all) run inline with
    --workers 2, where counting samples gave two processes; batches that took 0.5 s each
    would get them."""
    from quantlens import evaluation
    from quantlens.engine.workers import process_workers_by_time

    args = (digits_models["float"], [digits_models["int8io"]], big_digits)
    quick = quantlens.evaluate(*args, workers=2)
    assert quick.settings["workers"] == 1 and quick.settings["workers_in"] is None
    monkeypatch.setattr(evaluation, "_batch_seconds", lambda *_: 0.5)
    slow = quantlens.evaluate(*args, workers=2)
    assert slow.settings["workers"] == 2 and slow.settings["workers_in"] == "processes"
    _same(quick, slow)
    assert process_workers_by_time(2, 5000, 256, 0.005) == 1  # 20 batches: 0.1 s
    assert process_workers_by_time(4, 100_000, 256, 0.005) == 4  # 1.96 s
    assert process_workers_by_time(2, 100_000, 256, 0.005) == 2  # never more than asked
    assert process_workers_by_time(4, 2048, 256, None) == 4  # no time: 512 samples each


def test_a_model_that_refuses_batches_is_sized_as_it_runs(tmp_path, capfd) -> None:
    """A model whose graph fixes a batch of one behind an open input (a Reshape to [1, 4])
    fails on any larger batch: sizing the workers times it as the probe decided it runs, one
    sample at a time, rather than fail the run on a batch it cannot take. ONNX Runtime's own
    log of the probe's failed batch stays off stderr (the batching reason says it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
        "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "s")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "one.onnx")
    path = str(tmp_path / "one.onnx")
    x = np.random.default_rng(0).random((3000, 4), dtype=np.float32)
    result = quantlens.evaluate(path, [path], x, workers=2)
    assert result.dataset.samples == 3000
    assert [m.batching.mode for m in result.models] == ["per-sample", "per-sample"]
    assert result.models[1].fidelity["mse"] == 0.0
    assert "does not run" in result.models[0].batching.reason
    assert "onnxruntime" not in capfd.readouterr().err
