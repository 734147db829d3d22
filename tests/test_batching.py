"""Batch semantics, measured not assumed: every trap of a real model, in a small fixture, and
the truth is always the same model run one sample at a time with the bare runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import quantize_dynamic

import quantlens
from quantlens.cli import main
from quantlens.errors import DataError

RNG = np.random.default_rng(7)


def litert_one_at_a_time(path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The bare runtime, one sample per invoke, each input resized to the sample's shape."""
    interp = Interpreter(model_path=str(path))
    ins, outs = interp.get_input_details(), interp.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(xs[0])):
        for d, x in zip(ins, xs, strict=True):
            interp.resize_tensor_input(d["index"], list(x[i : i + 1].shape))
        interp.allocate_tensors()
        for d, x in zip(ins, xs, strict=True):
            interp.set_tensor(d["index"], x[i : i + 1])
        interp.invoke()
        for k, d in enumerate(outs):
            got[k].append(interp.get_tensor(d["index"]).copy())
    return [np.concatenate(g) for g in got]


def onnx_one_at_a_time(path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path))
    runs = [session.run(None, f) for f in feeds]
    return [np.stack([r[k] for r in runs]) for k in range(len(runs[0]))]


@pytest.fixture(scope="module")
def traps(tf, tmp_path_factory):
    """TFLite models that lie about their batch, as mediapipe's hand_recrop does."""
    keras = tf.keras
    out = tmp_path_factory.mktemp("traps")
    # Declared batch 1; after a resize STRIDED_SLICE keeps sample 0 and ADD reuses it.
    fixed = keras.Sequential([keras.Input((6,), batch_size=1), keras.layers.Dense(4),
                              keras.layers.Lambda(lambda t: t + t[0:1] * 0.5)])  # fmt: skip
    # Open batch, yet each sample is centred on the batch's mean.
    dependent = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Lambda(
        lambda t: t - tf.reduce_mean(t, axis=0, keepdims=True))])  # fmt: skip
    # Open audio length, as openWakeWord's melspectrogram ([-1, -1]).
    audio = keras.Input((None,))
    frames = keras.layers.Reshape((-1, 4))(audio)
    spectrum = keras.layers.Dense(3)(frames)
    audio_model = keras.Model(audio, spectrum)
    # Fully convolutional: every spatial dimension open.
    fcn = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3),
                            keras.layers.GlobalAveragePooling2D()])  # fmt: skip
    paths = {}
    for name, model in (("fixed", fixed), ("dependent", dependent), ("audio", audio_model),
                        ("fcn", fcn)):  # fmt: skip
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return paths


def test_a_declared_batch_that_mixes_samples_runs_in_chunks(traps, tmp_path) -> None:
    x = RNG.normal(size=(20, 6)).astype(np.float32)
    (truth,) = litert_one_at_a_time(traps["fixed"], [x])
    # the trap is real: resized to 20 the runtime gives other numbers, in the right shape
    bare = Interpreter(model_path=str(traps["fixed"]))
    bare.resize_tensor_input(0, [20, 6], strict=False)
    bare.allocate_tensors()
    bare.set_tensor(0, x)
    bare.invoke()
    resized = bare.get_tensor(bare.get_output_details()[0]["index"])
    assert resized.shape == truth.shape and not np.allclose(resized, truth, atol=1e-3)

    np.savez(tmp_path / "d.npz", x=x)
    out = tmp_path / "r.json"
    code = main(["evaluate", str(traps["fixed"]), str(traps["fixed"]), "--data",
                 str(tmp_path / "d.npz"), "--batch-size", "16", "--no-bench",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["models"][0]["batching"]["batching"] == "chunks"
    assert report["models"][0]["batching"]["samples_per_invoke"] == 1
    assert {w["code"] for w in report["warnings"]} == {"batch_size_overridden"}
    model = quantlens.load_model(traps["fixed"])
    model.probe_batching([x])
    np.testing.assert_array_equal(model.predict([x])[0], truth)


def test_the_probe_puts_two_samples_in_an_invoke_whatever_size_is_chosen(traps) -> None:
    """A model given one sample per invoke (as the byte rule gives a model too large for
    two) and sizes to time: the probe's batched run still holds two samples an invoke, so
    the declared batch that mixes samples is found out, not compared one sample at a time
    with itself and then run four at a time."""
    from quantlens.models.batching import set_invoke_size

    x = RNG.normal(size=(16, 6)).astype(np.float32)
    (truth,) = litert_one_at_a_time(traps["fixed"], [x])
    model = quantlens.load_model(traps["fixed"])
    set_invoke_size(model, 1, (1, 2, 4))
    decision, outputs = model.probe_on_batch([x])
    assert decision.mode == "chunks" and "change their outputs" in decision.reason
    for _ in range(4):  # any timing left would run sizes the model mixes samples at
        np.testing.assert_array_equal(model.predict([x])[0], truth)
    np.testing.assert_array_equal(outputs[0], truth)


def test_an_open_batch_that_depends_on_its_neighbours_runs_per_sample(traps) -> None:
    x = RNG.normal(size=(12, 6)).astype(np.float32)
    (truth,) = litert_one_at_a_time(traps["dependent"], [x])
    model = quantlens.load_model(traps["dependent"])
    decision = model.probe_batching([x])
    assert decision.mode == "per-sample" and decision.batch_dependent
    np.testing.assert_array_equal(model.predict([x])[0], truth)
    result = quantlens.evaluate(traps["dependent"], [traps["dependent"]], x)
    assert [w.code for w in result.warnings] == ["batch_dependent", "batch_dependent"]


def test_every_open_dimension_is_resized_to_the_data(traps, tmp_path) -> None:
    audio = RNG.normal(size=(5, 40)).astype(np.float32)
    model = quantlens.load_model(traps["audio"])  # its placeholder shape does not prepare
    assert model.inputs[0].shape == (None, None)
    model.probe_batching([audio])
    (truth,) = litert_one_at_a_time(traps["audio"], [audio])
    np.testing.assert_allclose(model.predict([audio])[0], truth, rtol=1e-6, atol=1e-6)
    images = RNG.normal(size=(4, 9, 7, 3)).astype(np.float32)
    fcn = quantlens.load_model(traps["fcn"])
    fcn.probe_batching([images])
    (truth,) = litert_one_at_a_time(traps["fcn"], [images])
    np.testing.assert_allclose(fcn.predict([images])[0], truth, rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "a.npz", x=audio)
    assert main(["info", str(traps["audio"])]) == 0
    assert main(["evaluate", str(traps["audio"]), str(traps["audio"]), "--data",
                 str(tmp_path / "a.npz"), "--no-bench"]) == 0  # fmt: skip


@pytest.fixture(scope="module")
def onnx_dynamic(tmp_path_factory):
    """A float MLP and its onnxruntime dynamic quantization (DynamicQuantizeLinear takes the
    activation range over the whole batch)."""
    out = tmp_path_factory.mktemp("dyn")
    w1 = RNG.normal(size=(16, 32)).astype(np.float32)
    w2 = RNG.normal(size=(32, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, out / "float.onnx")
    quantize_dynamic(str(out / "float.onnx"), str(out / "dynamic.onnx"))
    return out / "float.onnx", out / "dynamic.onnx"


def test_onnx_dynamic_quantization_is_measured_one_sample_at_a_time(onnx_dynamic) -> None:
    float_path, dyn_path = onnx_dynamic
    # wide-ranging samples: a batch's activation range is set by its largest sample
    x = (RNG.normal(size=(40, 16)) * RNG.uniform(0.1, 10, size=(40, 1))).astype(np.float32)
    feeds = [{"x": x[i : i + 1]} for i in range(40)]
    (ref,) = onnx_one_at_a_time(float_path, feeds)
    (cand,) = onnx_one_at_a_time(dyn_path, feeds)
    ref, cand = ref[:, 0].astype(np.float64), cand[:, 0].astype(np.float64)
    result = quantlens.evaluate(float_path, [dyn_path], x, batch_size=40)
    got = result.models[1]
    assert got.batching is not None and got.batching.mode == "per-sample"
    assert got.fidelity["mse"] == pytest.approx(np.mean((cand - ref) ** 2), rel=1e-6)
    batched = ort.InferenceSession(str(dyn_path)).run(None, {"x": x})[0]
    assert np.mean((batched - ref) ** 2) != pytest.approx(got.fidelity["mse"], rel=1e-2)
    assert [w.code for w in result.warnings] == ["batch_dependent"]
    assert result.models[0].batching.mode == "resize"  # float MatMul: any batch is fine


@pytest.fixture(scope="module")
def stateful_onnx(tmp_path_factory):
    """silero-vad's interface: audio [N, T], a state [2, N, 4] (batch on axis 1) and a
    scalar int64 sample rate; outputs a score [N, 1] and the next state [2, N, 4]."""
    out = tmp_path_factory.mktemp("silero")
    w = RNG.normal(size=(8, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["audio", "w"], ["h"]),  # [N, 4]
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["h", "srf"], ["hs"]),
        helper.make_node("Add", ["state", "hs"], ["state_next"]),  # [2, N, 4]
        helper.make_node("ReduceSum", ["state_next", "axes"], ["s"], keepdims=0),  # [N, 4]
        helper.make_node("ReduceSum", ["s", "axes1"], ["score"], keepdims=1),  # [N, 1]
    ]
    graph = helper.make_graph(
        nodes, "vad",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "N", 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("state_next", TensorProto.FLOAT, [2, "N", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([0]), "axes"),
         numpy_helper.from_array(np.array([1]), "axes1")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, out / "vad.onnx")
    return out / "vad.onnx"


def test_constant_inputs_reach_the_calibration_of_static_modes(stateful_onnx, tmp_path) -> None:
    """--const fixes an input for the calibration as for the evaluation: compare and quantize
    on data without the sample rate calibrate int8 (silero-vad's compare stopped with "model
    input 'sr' not found" before anything was made), and diagnose runs the pair."""
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "const.npz", audio=rng.normal(size=(40, 8)).astype(np.float32),
             state=rng.normal(size=(40, 2, 4)).astype(np.float32))  # fmt: skip
    data = str(tmp_path / "const.npz")
    assert main(["quantize", str(stateful_onnx), "--modes", "int8", "--calibration", data,
                 "--const", "sr=16000", "--out", str(tmp_path / "q")]) == 0  # fmt: skip
    assert (tmp_path / "q" / "vad_int8.onnx").is_file()
    report = tmp_path / "c.json"
    assert main(["compare", str(stateful_onnx), "--data", data, "--const", "sr=16000",
                 "--modes", "int8", "--no-bench", "--out", str(tmp_path / "c"),
                 "--json", str(report)]) == 0  # fmt: skip
    made = json.loads(report.read_text())["models"]
    assert [m["quantization"]["mode"] for m in made[1:]] == ["int8"]
    # diagnose takes them too (its --suggest not yet: one line, exit 2)
    pair = [str(stateful_onnx), str(tmp_path / "q" / "vad_int8.onnx"), "--data", data]
    diagnosis = tmp_path / "d.json"
    assert main(["diagnose", *pair, "--const", "sr=16000", "--json", str(diagnosis)]) == 0
    assert json.loads(diagnosis.read_text())["samples"] == 40
    assert main(["diagnose", *pair, "--const", "sr=16000", "--suggest"]) == 2


def test_inputs_batched_on_another_axis_or_not_at_all(stateful_onnx, tmp_path) -> None:
    audio = RNG.normal(size=(10, 8)).astype(np.float32)
    state = RNG.normal(size=(10, 2, 4)).astype(np.float32)  # sample-first in the data
    feeds = [{"audio": audio[i : i + 1], "state": state[i][:, None], "sr": np.array(16000)}
             for i in range(10)]  # fmt: skip
    score, state_next = onnx_one_at_a_time(stateful_onnx, feeds)
    model = quantlens.load_model(stateful_onnx)
    assert [s.batch_axis for s in model.inputs] == [0, 1, None]
    np.savez(tmp_path / "per_sample.npz", audio=audio, state=state, sr=np.array(16000))
    np.savez(tmp_path / "const.npz", audio=audio, state=state)
    for data, extra in ((tmp_path / "per_sample.npz", []),
                        (tmp_path / "const.npz", ["--const", "sr=16000"])):  # fmt: skip
        fixed = {"sr": np.array(16000)} if extra else None
        batches = list(quantlens.load_dataset(data).bind(model.inputs, batch_size=4,
                                                         constants=fixed))  # fmt: skip
        got = [model.predict(b.inputs) for b in batches]
        np.testing.assert_allclose(np.concatenate([g[0] for g in got]), score[:, 0], rtol=1e-6)
        # the next state comes back sample-first: [N, 2, 4]
        np.testing.assert_allclose(np.concatenate([g[1] for g in got]), state_next[:, :, 0],
                                   rtol=1e-6)  # fmt: skip
        assert main(["evaluate", str(stateful_onnx), str(stateful_onnx), "--data", str(data),
                     "--no-bench", *extra]) == 0  # fmt: skip
    # a batch run 3 samples per invoke: each part laid out (the state's batch on axis 1, the
    # rate given once) and its outputs put back sample-first, in order
    (whole,) = quantlens.load_dataset(tmp_path / "per_sample.npz").bind(model.inputs,
                                                                         batch_size=10)  # fmt: skip
    model.set_invoke_size(3)
    parts = model.predict(whole.inputs)
    model.set_invoke_size(None)
    np.testing.assert_allclose(parts[0], score[:, 0], rtol=1e-6)
    np.testing.assert_allclose(parts[1], state_next[:, :, 0], rtol=1e-6)
    # one state for every sample, given without a sample axis
    np.savez(tmp_path / "once.npz", audio=audio, state=state[0], sr=np.array(16000))
    (batch,) = quantlens.load_dataset(tmp_path / "once.npz").bind(model.inputs, batch_size=10)
    assert batch.inputs[1].shape == (10, 2, 4) and np.all(batch.inputs[1] == state[0])


def test_inconsistent_sample_counts_are_one_line_errors(stateful_onnx, tmp_path, capsys) -> None:
    model = quantlens.load_model(stateful_onnx)
    np.savez(tmp_path / "bad.npz", audio=np.zeros((10, 8), np.float32),
             state=np.zeros((9, 2, 4), np.float32), sr=np.array(16000))  # fmt: skip
    with pytest.raises(DataError, match="'state' has 9 samples where another input has 10"):
        next(quantlens.load_dataset(tmp_path / "bad.npz").bind(model.inputs))
    np.savez(tmp_path / "sr.npz", audio=np.zeros((3, 8), np.float32),
             state=np.zeros((3, 2, 4), np.float32), sr=np.array([8000, 16000, 8000]))  # fmt: skip
    with pytest.raises(DataError, match="'sr' is not batched by the model"):
        next(quantlens.load_dataset(tmp_path / "sr.npz").bind(model.inputs))
    code = main(["evaluate", str(stateful_onnx), str(stateful_onnx), "--data",
                 str(tmp_path / "bad.npz"), "--no-bench"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_workers_run_models_as_the_probe_decided(
    onnx_dynamic, stateful_onnx, tmp_path, workers_for_any_work
) -> None:
    """The probe runs once, in the caller; every worker process runs its shard the same way,
    with the same fixed inputs, so the merged numbers equal an inline run's."""
    float_path, dyn_path = onnx_dynamic
    x = (RNG.normal(size=(1100, 16)) * RNG.uniform(0.1, 10, size=(1100, 1))).astype(np.float32)
    inline = quantlens.evaluate(float_path, [dyn_path], x, batch_size=64)
    pooled = quantlens.evaluate(float_path, [dyn_path], x, batch_size=64, workers=2)
    assert pooled.settings["workers"] == 2
    assert pooled.models[1].batching.mode == "per-sample"
    assert pooled.models[1].fidelity["mse"] == pytest.approx(inline.models[1].fidelity["mse"],
                                                             rel=1e-9)  # fmt: skip
    audio = RNG.normal(size=(1100, 8)).astype(np.float32)
    state = RNG.normal(size=(1100, 2, 4)).astype(np.float32)
    data = {"audio": audio, "state": state}
    fixed = {"sr": np.array(8000)}
    one = quantlens.evaluate(stateful_onnx, [stateful_onnx], data, constants=fixed)
    two = quantlens.evaluate(stateful_onnx, [stateful_onnx], data, constants=fixed, workers=2)
    assert two.settings["workers"] == 2 and two.dataset.samples == one.dataset.samples == 1100


def test_workers_probe_as_many_samples_as_an_inline_run(onnx_dynamic, workers_for_any_work) -> None:
    """The caller's probe for its workers compares as many samples as an inline run's first
    batch does: PROBE_SAMPLES, or the batch size when it is smaller (a batch of 2 is what
    runs; a batch of 8 would only cost the start-up more)."""
    from quantlens.models.batching import PROBE_SAMPLES

    float_path, _ = onnx_dynamic
    x = RNG.normal(size=(1100, 16)).astype(np.float32)
    for batch in (2, 64):
        inline = quantlens.evaluate(float_path, [float_path], x, batch_size=batch)
        pooled = quantlens.evaluate(float_path, [float_path], x, batch_size=batch, workers=2)
        assert pooled.settings["workers"] == 2
        n = min(PROBE_SAMPLES, batch)
        for one, two in zip(inline.models, pooled.models, strict=True):
            assert one.batching.reason == two.batching.reason
            assert f"{n} samples in a batch" in two.batching.reason, two.batching.reason


def test_data_read_once_is_probed_without_losing_samples(onnx_dynamic) -> None:
    float_path, dyn_path = onnx_dynamic
    x = (RNG.normal(size=(50, 16)) * RNG.uniform(0.1, 10, size=(50, 1))).astype(np.float32)
    once = quantlens.evaluate(float_path, [dyn_path], (row for row in x), batch_size=16)
    arrays = quantlens.evaluate(float_path, [dyn_path], x, batch_size=16)
    assert once.dataset.samples == 50
    assert once.models[1].batching.mode == "per-sample"
    assert once.models[1].fidelity["mse"] == pytest.approx(arrays.models[1].fidelity["mse"],
                                                           rel=1e-12)  # fmt: skip


class _Sized:
    """A model as the batch-size rules see it: its inputs, ten outputs, what its runtime
    says its intermediate tensors take, and whether it runs its own samples per invoke (a
    Keras model runs each batch whole)."""

    def __init__(self, shape, working=None, parts=True):
        from quantlens.results import TensorSpec

        self.inputs = (TensorSpec("x", shape, "float32"),)
        self.outputs = (TensorSpec("y", (None, 10), "float32"),)
        if working is not None:
            self.working_bytes_per_sample = lambda shapes=None: working
        if parts:
            self.set_invoke_size = lambda size, candidates=(): None


def _largest_power_of_two(fits) -> int:
    """Independently of the rules: the largest power of two up to 1024 that ``fits``, or 1."""
    return max((k for k in (2**i for i in range(11)) if fits(k)), default=1)


def test_samples_per_invoke_chosen_keep_an_invoke_in_the_caches() -> None:
    """Each model's samples per invoke, when the user gives no batch size: its tensors within
    INVOKE_BYTES per runtime thread, and beyond INVOKE_FEW samples within INVOKE_CACHE_BYTES
    (a small model runs tens or hundreds, not the whole batch; a large one a few)."""
    from quantlens.models.batching import (
        INVOKE_BYTES,
        INVOKE_CACHE_BYTES,
        INVOKE_FEW,
        auto_invoke_size,
    )

    def expected(per_sample: int, threads: int = 1) -> int:
        return _largest_power_of_two(
            lambda k: (
                k * per_sample <= INVOKE_BYTES * threads
                and (k <= INVOKE_FEW or k * per_sample <= INVOKE_CACHE_BYTES * threads)
            )
        )

    own = 8 * 4 + 10 * 4  # a sample's input and outputs
    # a few bytes, an MNIST-size CNN, a mid-size model, an int8 and a float image model, and
    # one larger than every budget
    for working in (0, 42_000, 300_000, 2_400_000, 9_400_000, 3 * INVOKE_BYTES):
        model = _Sized((None, 8), working=working)
        for threads in (1, 2):
            got = auto_invoke_size(model, threads=threads)
            assert got == expected(own + working, threads), (working, threads, got)
    assert auto_invoke_size(_Sized((None, 8))) == 1024
    assert auto_invoke_size(_Sized((None, 8), working=42_000)) == 64  # the MNIST-size CNN
    assert auto_invoke_size(_Sized((None, 8), working=9_400_000)) == 2  # MobileNetV2-128
    assert auto_invoke_size(_Sized((None, 8), working=3 * INVOKE_BYTES)) == 1
    assert auto_invoke_size(_Sized((None, None))) is None  # unknown: the whole batch


def _timed_runner(monkeypatch, per_sample: dict[int, float]):
    """A runner over a fake model whose invokes advance a fake clock: ``per_sample[k]``
    seconds a sample in an invoke of k, and 100 s more for the first invoke at a new size
    (the allocation, which the timing must leave out). Its output is twice its input."""
    from quantlens.models import batching
    from quantlens.results import TensorSpec

    clock, last = [0.0], [0]
    monkeypatch.setattr(batching, "perf_counter", lambda: clock[0])

    def run(own):
        n = own[0].shape[0]
        clock[0] += per_sample[n] * n + (100.0 if n != last[0] else 0.0)
        last[0] = n
        return [own[0] * 2.0]

    runner = batching.BatchRunner([TensorSpec("x", (None, 3), "float32")],
                                  [TensorSpec("y", (None, 3), "float32")])  # fmt: skip
    return runner, run


@pytest.mark.parametrize(
    ("per_sample", "kept", "batches"),
    [
        # 10% faster than the rule's 2: kept; the others far behind after the first round
        ({1: 1.0, 2: 1.0, 4: 0.9, 8: 1.2}, 4, 4 + 1),
        # 1% faster: within the noise, the rule's; only 8 far behind
        ({1: 1.0, 2: 1.0, 4: 0.99, 8: 1.2}, 2, 4 + 3),
        ({1: 0.5, 2: 1.0, 4: 0.9, 8: 1.2}, 1, 4 + 1),  # half: kept
    ],
)
def test_samples_per_invoke_are_timed_on_the_first_batches(monkeypatch, per_sample, kept, batches):
    """A large model's samples per invoke, timed among sizes around the rule's on the run's
    first batches (the sizes in turn, a batch each, a batch's first invoke left out; a
    second round for those not far behind the fastest), then kept; every batch's outputs
    are the model's, whatever size ran them."""
    from quantlens.models.batching import InvokeTuning

    runner, run = _timed_runner(monkeypatch, per_sample)
    runner.invoke_size, runner.tuning = 2, InvokeTuning((1, 2, 4, 8), 2)
    x = np.arange(48, dtype=np.float32).reshape(16, 3)
    ran = 0
    while runner.tuning is not None:
        assert np.array_equal(runner.predict([x], run, 1)[0], x * 2)
        ran += 1
    assert runner.invoke_size == kept and ran == batches
    assert np.array_equal(runner.predict([x], run, 1)[0], x * 2)


def test_a_size_the_model_fails_at_is_dropped_from_the_timing(monkeypatch) -> None:
    """A model that runs 1, 2 and 4 samples an invoke but fails at 8 (as a runtime refuses
    a shape): that batch runs at the size chosen, and the timing goes on without 8."""
    from quantlens.models.batching import InvokeTuning

    runner, timed_run = _timed_runner(monkeypatch, {1: 1.0, 2: 1.0, 4: 0.9, 8: 0.1})
    sizes: list[int] = []

    def run(own):
        sizes.append(own[0].shape[0])
        if own[0].shape[0] == 8:
            raise RuntimeError("cannot resize to 8")
        return timed_run(own)

    runner.invoke_size, runner.tuning = 2, InvokeTuning((1, 2, 4, 8), 2)
    x = np.arange(48, dtype=np.float32).reshape(16, 3)
    while runner.tuning is not None:
        assert np.array_equal(runner.predict([x], run, 1)[0], x * 2)
    assert runner.invoke_size == 4 and 8 in sizes

    # the size chosen failing too is the model's failure, as it would be untimed
    def refuses_4_and_8(own):
        if own[0].shape[0] == 4:
            raise RuntimeError("cannot resize to 4")
        return run(own)

    runner.tuning = InvokeTuning((4,), 8)
    with pytest.raises(RuntimeError, match="cannot resize to 8"):
        runner.predict([x], refuses_4_and_8, 1)


def test_the_sizes_timed_are_around_the_rules_and_bounded_by_what_a_batch_holds() -> None:
    from quantlens.models.batching import BATCH_BYTES, TUNE_BYTES, TUNE_MAX_BYTES, tune_candidates

    large = _Sized((None, 8), working=TUNE_BYTES)
    assert tune_candidates(large, 2) == (1, 2, 4, 8) and tune_candidates(large, 1) == (1, 2, 4)
    assert tune_candidates(_Sized((None, 8), working=TUNE_BYTES // 2), 2) == ()  # small
    assert tune_candidates(_Sized((None, 8), working=TUNE_BYTES, parts=False), 2) == ()
    assert tune_candidates(large, None) == ()  # a sample of unknown size
    # inputs of BATCH_BYTES / 24 a sample: a batch that times 16 (32 samples) would hold too
    # many, one that times 8 (16 samples) not
    wide = _Sized((None, BATCH_BYTES // 24 // 4))
    assert tune_candidates(wide, 4) == (2, 4, 8)
    assert tune_candidates(_Sized((None, BATCH_BYTES // 4)), 1) == ()  # one sample: the rule's
    # tensors of a third of TUNE_MAX_BYTES a sample: two samples an invoke fit, not four
    assert tune_candidates(_Sized((None, 8), working=TUNE_MAX_BYTES // 3), 1) == (1, 2)
    assert tune_candidates(_Sized((None, 8), working=TUNE_MAX_BYTES), 1) == ()


def test_only_large_models_time_their_samples_per_invoke(
    tmp_path, digits_models, digits_split, monkeypatch
) -> None:
    """Sizes are timed for a model of at least TUNE_BYTES a sample (the wide conv: 8 MiB at
    64×64) by this process's copy, in batches holding two invokes of the largest, and the
    report names the size kept, equal to a run at that batch size; worker threads time
    nothing and take the size it keeps; small models (the digits CNNs) keep the byte rule's
    sizes."""
    import threading

    from quantlens.models import batching
    from tests.test_onnx import _wide_conv

    path = str(_wide_conv(tmp_path / "open.onnx", "H", "W"))
    x = np.random.default_rng(3).random((160, 3, 64, 64), dtype=np.float32)
    # the fake clock of the test above, one per thread, driven by the real model's parts
    cost = {1: 1.0, 2: 1.0, 4: 0.5, 8: 1.0}
    clocks = threading.local()
    monkeypatch.setattr(batching, "perf_counter", lambda: getattr(clocks, "now", 0.0))
    real = batching.BatchRunner.predict
    sizes_run: dict[str, set[int]] = {}

    def predict(self, inputs, run, n_outputs):
        def timed(own):
            n = own[0].shape[0]
            clocks.now = getattr(clocks, "now", 0.0) + cost.get(n, 1.0) * n
            sizes_run.setdefault(threading.current_thread().name, set()).add(n)
            return run(own)

        return real(self, inputs, timed, n_outputs)

    monkeypatch.setattr(batching.BatchRunner, "predict", predict)
    auto = quantlens.evaluate(path, [path], x)
    assert auto.settings["batch_size"] == 16  # two invokes of 8, the largest size timed
    assert [m.batching.samples_per_invoke for m in auto.models] == [4, 4]
    given = quantlens.evaluate(path, [path], x, batch_size=4)
    assert given.models[1].fidelity == auto.models[1].fidelity
    assert [m.batching.samples_per_invoke for m in given.models] == [4, 4]
    sizes_run.clear()
    sharded = quantlens.evaluate(path, [path], np.concatenate([x] * 8), workers=2)
    assert sharded.settings["workers_in"] == "threads" and sharded.settings["batch_size"] == 16
    assert [m.batching.samples_per_invoke for m in sharded.models] == [4, 4]
    # the thread ran the rule's 2 until the caller kept 4 (if it started before), timing nothing
    ran = {n for n in sizes_run["quantlens-worker-1"] if n > 1}
    assert 4 in ran and ran <= {2, 4}
    assert {1, 2, 4, 8} <= sizes_run["MainThread"]
    # small models: the byte rule's sizes, untimed
    ref, cand = digits_models["float"], digits_models["int8"]
    small = quantlens.evaluate(ref, [cand], (digits_split[2], digits_split[3]))
    rule = [batching.auto_invoke_size(quantlens.load_model(p)) for p in (ref, cand)]
    n = small.dataset.samples
    assert [m.batching.samples_per_invoke for m in small.models] == [min(k, n) for k in rule]
    assert all(batching.tune_candidates(quantlens.load_model(p), k) == ()
               for p, k in zip((ref, cand), rule, strict=True))  # fmt: skip


def test_the_batch_size_chosen_bounds_the_models_work() -> None:
    from quantlens.models.batching import (
        AUTO_BATCH_MAX,
        AUTO_BATCH_UNKNOWN,
        BATCH_BYTES,
        INVOKE_BYTES,
        auto_batch_size,
        auto_invoke_size,
        sample_bytes,
    )

    tiny, images = _Sized((None, 8)), _Sized((None, 224, 224, 3))
    assert auto_batch_size([tiny]) == AUTO_BATCH_MAX
    # all the models' tensors together within BATCH_BYTES per runtime thread
    mnist, mnist_int8 = _Sized((None, 8), working=42_000), _Sized((None, 8), working=10_000)
    for models in ([mnist, mnist_int8], [images], [images, tiny], [tiny, _Sized((None, 8), 10**6)]):
        per_sample = sum(sample_bytes(m) for m in models)
        for threads in (1, 2):
            within = BATCH_BYTES * threads
            budget = _largest_power_of_two(lambda k, p=per_sample, b=within: k * p <= b)
            assert auto_batch_size(models, threads=threads) == budget
    assert auto_batch_size([mnist, mnist_int8]) == 1024  # 52 KB a sample
    # ...each model running its own samples per invoke within the batch
    assert auto_invoke_size(mnist) == 64 and auto_invoke_size(mnist_int8) == 256
    # a model that runs each batch whole keeps its samples within INVOKE_BYTES per thread
    whole = _Sized((None, 224, 224, 3), parts=False)
    for threads in (1, 2):
        own = _largest_power_of_two(
            lambda k, t=threads: k * sample_bytes(whole) <= INVOKE_BYTES * t
        )
        assert auto_batch_size([whole, tiny], threads=threads) == own
        assert auto_batch_size([images, tiny], threads=threads) > own  # the same, in parts
    assert auto_batch_size([images], threads=None) == auto_batch_size([images], threads=1)
    huge = _Sized((None, 8), working=3 * BATCH_BYTES)
    assert auto_batch_size([tiny, huge]) == 1  # a sample beyond every budget: one at a time
    assert auto_batch_size([_Sized((None, None))]) == AUTO_BATCH_UNKNOWN
    # whole batches of what a model declares: in chunks of 4, a batch of 1 would be padded to 4
    assert auto_batch_size([_Sized((4, 8), working=3 * BATCH_BYTES)]) == 4
    sixteen = BATCH_BYTES // 16 - 72  # 16 samples fit
    assert auto_batch_size([_Sized((3, 8), working=sixteen)]) == 18
    halves = BATCH_BYTES // 32 - 72  # 16 samples of both fit
    assert auto_batch_size([_Sized((4, 8), working=halves), _Sized((6, 8), halves)]) == 24
    assert auto_batch_size([_Sized((None, None)), _Sized((5, 8))]) == 35  # unknown: 32, rounded


def test_a_tflite_model_counts_its_intermediate_tensors(digits_models) -> None:
    import quantlens

    model = quantlens.load_model(digits_models["float"])
    # conv 8×8×8 float32 activations and the 10 logits at least, weights excluded
    got = model.working_bytes_per_sample()
    assert 8 * 8 * 8 * 4 + 10 * 4 <= got < 8 * 8 * 8 * 4 * 4 + 4096


def test_a_batch_runs_its_models_own_samples_per_invoke(digits_models, digits_split) -> None:
    """A resized batch larger than a model's samples per invoke runs in invokes of that many
    (the last one what is left), with the outputs of one invoke over the whole batch; with
    no batch size given, each model runs as many per invoke as auto_invoke_size says within
    the larger batch, and the report says so, with the results of a batch size given."""
    from quantlens.models.batching import auto_invoke_size
    from quantlens.models.litert import LiteRTModel

    _, _, x, y = digits_split
    model = quantlens.load_model(digits_models["int8io"])
    whole = model.predict([x[:10]])
    sizes: list[int] = []
    own = LiteRTModel._invoke

    def spy(self, arrays, *args, **kwargs):
        sizes.append(int(arrays[0].shape[0]))
        return own(self, arrays, *args, **kwargs)

    model.set_invoke_size(4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LiteRTModel, "_invoke", spy)
        parts = model.predict([x[:10]])
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(parts[0], whole[0])

    ref, cand = digits_models["float"], digits_models["int8io"]
    x, y = np.concatenate([x] * 5)[:1500], np.concatenate([y] * 5)[:1500]
    auto = quantlens.evaluate(ref, [cand], (x, y), bench=False)
    per_invoke = [auto_invoke_size(quantlens.load_model(p)) for p in (ref, cand)]
    batch = auto.settings["batch_size"]
    assert min(per_invoke) < batch  # small models: a batch of several invokes
    assert [m.batching.samples_per_invoke for m in auto.models] == per_invoke
    given = quantlens.evaluate(ref, [cand], (x, y), batch_size=batch, bench=False)
    assert [m.batching.samples_per_invoke for m in given.models] == [batch] * 2
    for one, two in zip(auto.models, given.models, strict=True):
        assert (one.fidelity, one.task_metrics, one.distribution, one.paired) == (
            two.fidelity, two.task_metrics, two.distribution, two.paired)  # fmt: skip
    # a Keras reference runs each batch whole, and says so, however few the others run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("quantlens.evaluation.auto_invoke_size", lambda *args: 16)
        keras = quantlens.evaluate(digits_models["keras"], [cand], (x, y), bench=False)
    batch = keras.settings["batch_size"]
    assert [m.batching.samples_per_invoke for m in keras.models] == [batch, 16]


def test_the_first_batch_is_the_probes_batched_run(traps) -> None:
    """Inline, the probe's batched run is the data's first batch itself: a model that can
    batch runs that batch once (its outputs are the run's), one whose samples depend on
    their neighbours runs it again one sample at a time; both give one-at-a-time outputs."""
    from quantlens.models.batching import PROBE_SAMPLES, probe_all

    cases = (
        ("fcn", RNG.normal(size=(12, 5, 5, 3)), "resize", [PROBE_SAMPLES, 12]),
        ("dependent", RNG.normal(size=(12, 6)), "per-sample", [PROBE_SAMPLES, 12, 12]),
    )
    for name, x, mode, sizes in cases:
        x = x.astype(np.float32)
        (truth,) = litert_one_at_a_time(traps[name], [x])
        model = quantlens.load_model(traps[name])
        calls: list[int] = []
        real = model.predict
        model.predict = lambda xs, real=real, calls=calls: calls.append(len(xs[0])) or real(xs)  # type: ignore[method-assign]
        ((decision, outs),) = probe_all([model], [[x]], batch=True)
        assert decision.mode == mode and calls == sizes, (name, calls)
        np.testing.assert_allclose(outs[0], truth, rtol=1e-5, atol=1e-6)


def test_the_probe_spans_one_invoke_of_each_model() -> None:
    """Workers waiting for the decisions are told once the probe has run the first
    PROBE_SAMPLES or one invoke of each model, whichever is more; a model that runs batches
    whole needs the whole batch."""
    from types import SimpleNamespace

    from quantlens.models.batching import PROBE_SAMPLES, probe_span

    def runs(size):
        return SimpleNamespace(set_invoke_size=lambda *a: None, invoke_size=size)

    whole = SimpleNamespace()  # no samples per invoke of its own (Keras, stored outputs)
    assert probe_span([runs(1), runs(2)], 64) == PROBE_SAMPLES
    assert probe_span([runs(2), runs(32)], 64) == 32
    assert probe_span([runs(2), runs(128)], 64) == 64
    assert probe_span([runs(2)], 5) == 5
    assert probe_span([runs(2), runs(None)], 64) == 64
    assert probe_span([runs(2), whole], 64) == 64
