"""ONNX models: evaluate, quantize, diagnose, profile, and across runtimes, against an
independent computation with onnxruntime and NumPy."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from sklearn import metrics as skm

import quantlens
from quantlens.bench.profile import aggregate
from quantlens.cli import main
from quantlens.errors import ModelLoadError
from tests.model_explorer_format import read_model_node_data

RNG = np.random.default_rng(0)
W1, B1 = RNG.normal(size=(8, 16)).astype(np.float32), RNG.normal(size=16).astype(np.float32)
W2, B2 = RNG.normal(size=(16, 4)).astype(np.float32), RNG.normal(size=4).astype(np.float32)


class Reader(CalibrationDataReader):
    def __init__(self, x: np.ndarray) -> None:
        self.rows = iter(x)

    def get_next(self):
        row = next(self.rows, None)
        return None if row is None else {"x": row[None]}


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "B1"], ["h1"], name="add1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "W2"], ["h3"], name="mm2"),
        helper.make_node("Add", ["h3", "B2"], ["logits"], name="add2"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for a, n in ((W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2"))],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, out / "mlp.onnx")
    x = RNG.normal(size=(300, 8)).astype(np.float32)
    y = ort.InferenceSession(str(out / "mlp.onnx")).run(None, {"x": x})[0].argmax(1)
    np.savez(out / "data.npz", x=x, y=y)
    quantize_static(str(out / "mlp.onnx"), str(out / "mlp_qdq.onnx"), Reader(x[:100]),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    return {"float": out / "mlp.onnx", "qdq": out / "mlp_qdq.onnx", "data": out / "data.npz"}


def ort_run(path, x: np.ndarray, names=None) -> list[np.ndarray]:
    return ort.InferenceSession(str(path)).run(names, {"x": x})


def test_evaluate_onnx_equals_onnxruntime_and_numpy(capsys, tmp_path, onnx_models) -> None:
    out = tmp_path / "r.json"
    code = main(["evaluate", str(onnx_models["float"]), str(onnx_models["qdq"]), "--data",
                 str(onnx_models["data"]), "--batch-size", "32", "--no-bench", "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    data = np.load(onnx_models["data"])
    (ref,) = ort_run(onnx_models["float"], data["x"])
    (cand,) = ort_run(onnx_models["qdq"], data["x"])
    m = report["models"][1]
    assert m["format"] == "onnx"
    err = cand.astype(np.float64) - ref
    assert m["fidelity"]["mse"] == pytest.approx(np.mean(err**2), rel=1e-5)
    assert m["fidelity"]["sqnr_db"] == pytest.approx(
        10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum(err**2)), rel=1e-5
    )
    assert m["task_metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(data["y"], cand.argmax(1))
    )
    assert report["models"][0]["task_metrics"]["accuracy"] == 1.0


def test_onnx_model_info(onnx_models) -> None:
    info = quantlens.load_model(onnx_models["qdq"], num_threads=1).info()
    graph = onnx.load(str(onnx_models["qdq"])).graph
    assert info.format == "onnx" and info.size_bytes == onnx_models["qdq"].stat().st_size
    assert sum(info.op_counts.values()) == len(graph.node)
    assert info.op_counts["QuantizeLinear"] >= 2 and info.op_counts["DequantizeLinear"] >= 2
    int8 = sum(numpy_helper.to_array(i).size for i in graph.initializer
               if numpy_helper.to_array(i).dtype == np.int8)  # fmt: skip
    assert info.weight_dtypes["int8"] == int8 >= W1.size + W2.size
    assert [t.name for t in info.inputs] == ["x"] and info.inputs[0].shape == (None, 8)


def test_quantize_onnx_modes(tmp_path, onnx_models) -> None:
    made = quantlens.quantize(onnx_models["float"], "all", tmp_path, calibration=onnx_models["data"],
                              calibration_samples=50)  # fmt: skip
    modes = {v.mode for v in made.variants}
    assert modes == {
        "float16",
        "dynamic",
        "int8",
        "int8-percentile",
        "int8-entropy",
        "int8-qoperator",
    }
    ops = {v.mode: {n.op_type for n in onnx.load(v.path).graph.node} for v in made.variants}
    inits = {v.mode: {numpy_helper.to_array(i).dtype.name for i in onnx.load(v.path).graph.initializer}
             for v in made.variants}  # fmt: skip
    assert "float16" in inits["float16"]
    assert "DynamicQuantizeLinear" in ops["dynamic"] or "MatMulInteger" in ops["dynamic"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops["int8"] and "int8" in inits["int8"]
    assert "QLinearMatMul" in ops["int8-qoperator"]
    assert made.variant("int8-entropy").settings["calibrate_method"] == "Entropy"
    x = np.load(onnx_models["data"])["x"][:50]
    (ref,) = ort_run(onnx_models["float"], x)
    for v in made.variants:
        (out,) = ort_run(v.path, x)
        assert np.mean(out.argmax(1) == ref.argmax(1)) > 0.9, v.mode


def test_diagnose_onnx_matches_numpy_on_the_raw_tensors(onnx_models) -> None:
    result = quantlens.diagnose(onnx_models["float"], onnx_models["qdq"], onnx_models["data"],
                                samples=100)  # fmt: skip
    x = np.load(onnx_models["data"])["x"][:100]
    rows = {t.float_name: t for t in result.tensors}
    assert {"h0", "h2", "logits"} <= set(rows)

    def with_outputs(path, names):
        model = onnx.load(str(path))
        for n in names:
            model.graph.output.append(onnx.ValueInfoProto(name=n))
        return ort.InferenceSession(model.SerializeToString()).run(names, {"x": x})

    for name, row in rows.items():
        (f,) = with_outputs(onnx_models["float"], [name])
        (q,) = with_outputs(onnx_models["qdq"], [row.name])
        err = q.astype(np.float64) - f
        assert row.fidelity["mse"] == pytest.approx(np.mean(err**2), rel=1e-5, abs=1e-12), name
    ranked = [o for o in result.top_ops(10)]
    assert ranked and all(o.op_type not in ("QuantizeLinear", "DequantizeLinear") for o in ranked)
    assert {w.name for w in result.weights} >= {"W1", "W2"}
    assert all(w.sqnr_db > 30 for w in result.weights if w.name in ("W1", "W2"))


def test_an_onnx_model_tells_its_intermediate_tensors(onnx_models, tmp_path) -> None:
    """Shape inference with the batch at one: the MLP's h0..h3 (16, 16, 16, 4 floats) and
    its logits (4), counted by hand; a QDQ model counts its integer tensors too; an input
    with another open dimension leaves the size unknown; the auto batch then fits the
    caches, not only the inputs and outputs."""
    from quantlens.models.batching import INVOKE_BYTES, auto_invoke_size

    mlp = quantlens.load_model(onnx_models["float"])
    assert mlp.working_bytes_per_sample() == (16 + 16 + 16 + 4 + 4) * 4
    assert quantlens.load_model(onnx_models["qdq"]).working_bytes_per_sample() > 56 * 4
    open_width = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "W"])],
    )  # fmt: skip
    model = helper.make_model(open_width, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "open.onnx")
    assert quantlens.load_model(tmp_path / "open.onnx").working_bytes_per_sample() is None
    # 8 MiB of activations a sample behind 48 KiB of input: one thread's budget holds 2
    conv = quantlens.load_model(_wide_conv(tmp_path / "wide.onnx", 64, 64))
    assert conv.working_bytes_per_sample() == WIDE_WORKING
    size = auto_invoke_size(conv, threads=1)
    assert size * WIDE_TOTAL <= INVOKE_BYTES < 2 * size * WIDE_TOTAL


#: The wide conv model's tensors for one 64×64 image: the conv and relu outputs (256 channels)
#: and the pooled output; with the input and the output counted again.
WIDE_WORKING = 2 * 256 * 64 * 64 * 4 + 256 * 4
WIDE_TOTAL = WIDE_WORKING + 3 * 64 * 64 * 4 + 256 * 4


def _wide_conv(path, height, width):
    """A 3x3 conv to 256 channels, relu and global pooling: large activations behind a small
    input and output (``height``/``width`` given as ints, or names for open dimensions)."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["y"])], "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256, 1, 1])],
        [numpy_helper.from_array(RNG.normal(size=(256, 3, 3, 3)).astype(np.float32), "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def test_models_run_in_threads_when_their_runtimes_hold_the_batch(tmp_path) -> None:
    """Threads (the probe's, an evaluation's workers) when the models hold at least 1 MiB a
    sample on average: a float conv of 2.1 MB with a small model of 0.13 MB beside it (as an
    int8 candidate's tensors are a quarter of its reference's) says yes, two convs of 0.53
    MB no; an open image size says nothing until the data's shapes fill it."""
    from quantlens.models.batching import THREADED_BYTES, run_in_threads, sample_bytes

    big, small, mid = (quantlens.load_model(str(_wide_conv(tmp_path / f"{n}.onnx", s, s)))
                       for n, s in (("big", 32), ("small", 8), ("mid", 16)))  # fmt: skip
    assert sample_bytes(small) < THREADED_BYTES < sample_bytes(big)
    assert run_in_threads([big, small])
    assert sample_bytes(mid) < THREADED_BYTES and not run_in_threads([mid, mid])
    assert not run_in_threads([small])
    open_size = quantlens.load_model(str(_wide_conv(tmp_path / "open.onnx", "H", "W")))
    assert not run_in_threads([open_size, big])
    assert run_in_threads([open_size, big], [[(3, 32, 32)], [(3, 32, 32)]])


def test_open_image_sizes_are_read_from_the_data_for_the_auto_batch(tmp_path, monkeypatch) -> None:
    """A conv model whose image size is open (as rapidocr's are) is sized from the data's
    first sample: 64×64 images give 8 MiB of activations a sample, 2 samples per invoke by
    the byte rule and a batch of 4 (both models' tensors) — in a run, 1 to 8 timed on the
    first batches, in batches of 16 (two parts of 8), and the rule's 2 kept unless another
    size wins by TUNE_MARGIN (made unreachable here: timings are this machine's); NHWC data
    into it (layout nhwc) gives the same; an iterable, read once, is not peeked at and runs
    at the batch for an unknown size, untimed."""
    from quantlens.models import batching
    from quantlens.models.batching import AUTO_BATCH_UNKNOWN, BATCH_BYTES, INVOKE_BYTES

    monkeypatch.setattr(batching, "TUNE_MARGIN", 1.0)
    path = str(_wide_conv(tmp_path / "open.onnx", "H", "W"))
    conv = quantlens.load_model(path)
    assert conv.working_bytes_per_sample() is None
    assert conv.working_bytes_per_sample([(3, 64, 64)]) == WIDE_WORKING
    per_invoke = INVOKE_BYTES // WIDE_TOTAL  # 2: the largest power of two within the budget
    assert batching.auto_batch_size([conv, conv], shapes=[[(3, 64, 64)]] * 2) == 4
    assert 4 * 2 * WIDE_TOTAL <= BATCH_BYTES < 2 * 4 * 2 * WIDE_TOTAL
    assert batching.tune_candidates(conv, per_invoke, [(3, 64, 64)]) == (1, 2, 4, 8)
    x = RNG.random((40, 3, 64, 64), dtype=np.float32)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for run in (quantlens.evaluate(path, [path], x),
                quantlens.evaluate(path, [path], nhwc, layout="nhwc")):  # fmt: skip
        assert run.settings["batch_size"] == 16 and run.dataset.samples == 40
        assert [m.batching.samples_per_invoke for m in run.models] == [per_invoke] * 2 == [2, 2]
    once = quantlens.evaluate(path, [path], (row for row in x))
    assert once.settings["batch_size"] == AUTO_BATCH_UNKNOWN and once.dataset.samples == 40


def test_profile_aggregation() -> None:
    events = [
        {"cat": "Node", "name": "a_kernel_time", "dur": 30, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "a_kernel_time", "dur": 10, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "b_kernel_time", "dur": 40, "args": {"op_name": "Relu"}},
        {"cat": "Node", "name": "b_kernel_time", "dur": 20, "args": {"op_name": "Relu"}},
        {"cat": "Node", "name": "b_fence_before", "dur": 99, "args": {"op_name": "Relu"}},
        {"cat": "Session", "name": "model_run", "dur": 500},
    ]
    got = aggregate(events)
    assert got["runs"] == 2 and got["total_us"] == pytest.approx(50.0)
    assert [(r["op_type"], r["share"]) for r in got["by_op_type"]] == [
        ("Relu", 0.6),
        ("MatMul", 0.4),
    ]
    assert [(r["node"], r["mean_us"]) for r in got["by_node"]] == [("b", 30.0), ("a", 20.0)]


def test_bench_profile_of_an_onnx_model(onnx_models) -> None:
    result = quantlens.benchmark([onnx_models["qdq"]], runs=5, min_seconds=0, measure_memory=False,
                                 profile=True)  # fmt: skip
    prof = result.results[0].profile
    assert prof and prof["runs"] >= 5
    assert sum(r["share"] for r in prof["by_op_type"]) == pytest.approx(1.0)
    assert {"QuantizeLinear", "DequantizeLinear"} & {r["op_type"] for r in prof["by_op_type"]}


def test_tflite_candidate_against_an_onnx_reference(tf, convert, tmp_path, onnx_models) -> None:
    keras = tf.keras
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(4)(h))
    model.layers[1].set_weights([W1, B1])
    model.layers[2].set_weights([W2, B2])
    (tmp_path / "mlp.tflite").write_bytes(convert(model))
    result = quantlens.evaluate(
        onnx_models["float"], [tmp_path / "mlp.tflite"], onnx_models["data"]
    )
    assert result.models[1].format == "tflite" and result.models[1].fidelity["sqnr_db"] > 100


def test_random_bytes_are_not_an_onnx_model(tmp_path) -> None:
    (tmp_path / "junk.onnx").write_bytes(RNG.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        quantlens.load_model(tmp_path / "junk.onnx")


def test_nchw_onnx_against_nhwc_tflite_with_a_layout(tf, convert, tmp_path) -> None:
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 3, 8)).astype(np.float32)  # Keras: kh, kw, cin, cout
    bias = rng.normal(size=8).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), "W"),
         numpy_helper.from_array(bias, "B")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "conv.onnx")
    keras = tf.keras
    inp = keras.Input((16, 16, 3), name="x")
    conv = keras.layers.Conv2D(8, 3, activation="relu")
    out = keras.layers.GlobalAveragePooling2D()(conv(inp))
    km = keras.Model(inp, out)
    conv.set_weights([kernel, bias])
    (tmp_path / "conv.tflite").write_bytes(convert(km))
    x = rng.normal(size=(40, 3, 16, 16)).astype(np.float32)  # the data is NCHW
    with pytest.raises(quantlens.QuantlensError, match="per-sample shape"):
        quantlens.evaluate(tmp_path / "conv.onnx", [tmp_path / "conv.tflite"], x)
    result = quantlens.evaluate(tmp_path / "conv.onnx", [tmp_path / "conv.tflite"], x,
                                layout="nchw", bench=True)  # fmt: skip
    assert result.models[1].fidelity["sqnr_db"] > 80
    assert not result.models[1].performance.warnings or all(
        "probe" not in w for w in result.models[1].performance.warnings
    )


def test_suggest_keeps_onnx_nodes_in_float(capsys, tmp_path, onnx_models) -> None:
    out = tmp_path / "diag.json"
    code = main(["diagnose", str(onnx_models["float"]), str(onnx_models["qdq"]), "--data",
                 str(onnx_models["data"]), "--suggest", "--budget-metric", "sqnr", "--max-drop",
                 "0.001", "--calibration", str(onnx_models["data"]), "--out", str(tmp_path / "o"),
                 "--json", str(out), "--node-data", str(tmp_path / "me")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "--extensions=model_explorer_onnx" in capsys.readouterr().out
    # overlays keyed as model-explorer-onnx keys the nodes: by graph name and node name
    qdq_nodes = {n.name for n in onnx.load(onnx_models["qdq"]).graph.node}
    overlays = {f.name: read_model_node_data(f) for f in (tmp_path / "me").iterdir()}
    assert all(list(d) == ["mlp"] for d in overlays.values())
    assert set(overlays["error_added_db.json"]["mlp"]["results"]) >= {"mm1", "mm2", "add2"}
    assert set(overlays["weight_sqnr_db.json"]["mlp"]["results"]) <= {"mm1", "mm2", "add1",
                                                                     "add2"}  # fmt: skip
    for d in overlays.values():
        assert set(d["mlp"]["results"]) <= qdq_nodes
    s = json.loads(out.read_text())["suggestion"]
    assert len(s["steps"]) >= 2
    step = next(st for st in s["steps"][1:] if st["accepted"])
    kept_nodes = {k["name"] for k in step["kept"] if k["precision"] == "float"}
    built = onnx.load(step["path"])
    floats = {i.name for i in built.graph.initializer if i.data_type == TensorProto.FLOAT}
    weights = {"mm1": "W1", "mm2": "W2", "add1": "B1", "add2": "B2"}
    for node in built.graph.node:
        if node.name in kept_nodes:  # a kept node runs in float on its float weight
            assert weights[node.name] in node.input and weights[node.name] in floats, node.name
    assert step["drop"] < s["steps"][0]["drop"]


def test_the_onnx_rebuilder_keeps_a_node_at_int16_and_reuses_its_calibration(onnx_models):
    # int16 activations for one node: its output's Q/DQ pair turns int16 (onnxruntime's
    # TensorQuantOverrides), the others stay int8; builds after the first reuse the
    # calibrated ranges and equal a build that calibrates afresh
    from quantlens.quantize.ort import keep_in_float_builder, quantize_onnx

    x = np.load(onnx_models["data"])["x"]
    calibration = [[row[None]] for row in x[:100]]
    rebuild = keep_in_float_builder(onnx_models["float"], "int8", calibration, ["x"])
    assert rebuild.precisions == ("float", "int16-act")
    first = rebuild({})
    # as the search asks it: the node and its reader (onnxruntime folds the Relu into the
    # Add's quantization, so the Add's output is the Relu's, h2)
    plan = {"add1": "int16-act", "relu": "int16-act"}
    built = onnx.load_from_string(rebuild(plan))
    zero_points = {i.name: i.data_type for i in built.graph.initializer}
    quantized = {n.input[0]: zero_points[n.input[2]] for n in built.graph.node
                 if n.op_type == "QuantizeLinear" and len(n.input) > 2}  # fmt: skip
    assert quantized["h2"] == TensorProto.INT16 and quantized["h3"] == TensorProto.INT8
    fresh = quantize_onnx(onnx_models["float"], "int8", calibration, ["x"], [],
                          int16_tensors=["h1", "h2"])[0]  # fmt: skip
    assert rebuild(plan) == fresh and rebuild({}) == first
