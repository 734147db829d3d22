"""diagnose: the badly quantizable layer is blamed first, the metrics match NumPy on the raw
tensors, tensors match when names differ, and --suggest keeps that layer in float."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import interpreter as litert

from quantlens.cli import main
from quantlens.diagnose import diagnose, diagnose_source
from quantlens.models.tflite_file import read_graph
from tests.model_explorer_format import colour, read_model_node_data
from tests.test_models import hand_run

BAD = "bad_1/MatMul"


def test_the_bad_layer_is_ranked_first(bad_layer) -> None:
    result = diagnose(bad_layer["float"], bad_layer["int8"], bad_layer["data"])
    top = result.top_ops(3)
    assert BAD in top[0].output and top[0].op_type == "FULLY_CONNECTED"
    assert top[0].error_added_db > 20 > top[1].error_added_db
    row = next(t for t in result.tensors if BAD in t.name)
    # the failure tensor-wide SQNR hides: the wide channel is fine, the others carry nothing
    assert row.sqnr_db > 25 and row.channel_sqnr_median_db < 5
    assert row.channel_range_ratio > 100  # and why: one channel a thousand times wider
    assert row.scale > 1 and row.zero_point is not None
    consumer = next(o for o in result.ops if o.index in top[0].consumers)
    assert consumer.error_added_db < 5  # it inherits the error, it does not add it
    assert result.end_to_end["output_0"]["top1_agreement"] < 0.9
    assert result.unmatched == {"quantized": [], "float": []}
    assert "built-in kernels, no delegate" in result.note


def _run_all_tensors(path, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    interp = litert.Interpreter(
        model_path=str(path), experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )  # fmt: skip
    details = {d["name"]: d for d in interp.get_tensor_details()}
    values: dict[str, list[np.ndarray]] = {}
    inp = interp.get_input_details()[0]
    interp.allocate_tensors()
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        for name, d in details.items():
            if len(d["shape"]) == 2 and d["shape"][0] == 1:
                values.setdefault(name, []).append(interp.get_tensor(d["index"]))
    return {k: np.concatenate(v) for k, v in values.items()}, details


def test_tensor_metrics_match_numpy_on_the_raw_tensors(bad_layer) -> None:
    x = np.load(bad_layer["data"])["x"][:64]
    result = diagnose(bad_layer["float"], bad_layer["int8"], bad_layer["data"], samples=64)
    f_vals, _ = _run_all_tensors(bad_layer["float"], x)
    q_vals, q_details = _run_all_tensors(bad_layer["int8"], x)
    for row in result.tensors:
        if row.name not in q_vals or row.float_name not in f_vals:
            continue
        ref = f_vals[row.float_name].astype(np.float64)
        raw = q_vals[row.name]
        scale, zp = q_details[row.name]["quantization"]
        cand = (raw.astype(np.float64) - zp) * scale if scale else raw.astype(np.float64)
        err = cand - ref
        fid = row.fidelity
        assert fid["mse"] == pytest.approx(np.mean(err**2), rel=1e-5, abs=1e-12)
        assert fid["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5, abs=1e-12)
        # quantlens dequantizes to float32, this test in float64
        assert fid["max_abs_error"] == pytest.approx(np.abs(err).max(), rel=1e-5, abs=1e-9)
        assert (row.float_min, row.float_max) == pytest.approx((ref.min(), ref.max()))
        ch_max = np.abs(ref).max(axis=0)
        if (ch_max > 0).any():
            live = ch_max[ch_max > 0]
            assert row.channel_range_ratio == pytest.approx(live.max() / np.median(live))
        if np.sum(err**2) > 0:
            sqnr = 10 * np.log10(np.sum(ref**2) / np.sum(err**2))
            assert row.sqnr_db == pytest.approx(sqnr, rel=1e-5)
            live = (np.sum(ref**2, 0) > 0) | (np.sum(err**2, 0) > 0)
            with np.errstate(divide="ignore"):
                ch = 10 * np.log10(np.sum(ref**2, 0)[live] / np.sum(err**2, 0)[live])
            ch = np.clip(ch, -100, 100)
            assert row.channel_sqnr_median_db == pytest.approx(np.median(ch), rel=1e-5, abs=1e-6)
            assert row.channel_sqnr_worst_db == pytest.approx(ch.min(), rel=1e-5, abs=1e-6)
        if scale:
            expected = np.sqrt(np.mean(err**2)) / scale
            assert row.rmse_over_scale == pytest.approx(expected, rel=1e-5)
        if raw.dtype.kind == "i":
            ends = np.iinfo(raw.dtype)
            assert row.clipped_fraction == np.mean((raw == ends.min) | (raw == ends.max))
        else:
            assert row.clipped_fraction is None


def test_a_model_of_batch_one_gives_the_same_diagnosis_in_place_or_copied(
    fixed_batch_models, digits_split
) -> None:
    """A model baked to batch 1 runs a batch of 20 one sample at a time (its tensors copied
    out of the interpreter) or, with batch size 1, one invoke per batch (read in place, two
    interpreters in turn): the same tensor metrics, and the end-to-end SQNR a hand loop
    gives."""
    x = digits_split[2][:20]
    flt, int8 = fixed_batch_models["baked_float"], fixed_batch_models["baked"]
    copied = diagnose(flt, int8, x, samples=20)
    in_place = diagnose(flt, int8, x, samples=20, batch_size=1)
    assert copied.samples == in_place.samples == 20
    assert [t.name for t in copied.tensors] == [t.name for t in in_place.tensors]
    for a, b in zip(copied.tensors, in_place.tensors, strict=True):
        assert a.fidelity == pytest.approx(b.fidelity, rel=1e-6)
        assert a.channel_sqnr_median_db == pytest.approx(b.channel_sqnr_median_db, rel=1e-6)
        assert a.clipped_fraction == b.clipped_fraction
    (ref,) = hand_run(flt, [x])
    (cand,) = hand_run(int8, [x])
    sqnr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((cand - ref) ** 2))
    for result in (copied, in_place):
        (end,) = result.end_to_end.values()
        assert end["sqnr_db"] == pytest.approx(sqnr, rel=1e-5)


def test_tensors_match_by_position_when_names_differ(bad_layer, tmp_path) -> None:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bad_layer["int8"].read_bytes())
    for i, t in enumerate(model.subgraphs[0].tensors):
        t.name = f"renamed_{i}".encode()
    renamed = tmp_path / "renamed.tflite"
    renamed.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    original = diagnose(bad_layer["float"], bad_layer["int8"], bad_layer["data"], samples=64)
    result = diagnose(bad_layer["float"], renamed, bad_layer["data"], samples=64)
    assert [t.float_name for t in result.tensors] == [t.float_name for t in original.tensors]
    assert result.top_ops(1)[0].index == original.top_ops(1)[0].index
    assert result.unmatched == {"quantized": [], "float": []}


def test_suggest_keeps_the_bad_layer_in_float_and_meets_the_budget(capsys, bad_layer, tmp_path):
    out = tmp_path / "report.json"
    code = main(["diagnose", str(bad_layer["float"]), str(bad_layer["int8"]), "--data",
                 str(bad_layer["data"]), "--suggest", "--max-drop", "0.02", "--out",
                 str(tmp_path / "out"), "--json", str(out),
                 "--node-data", str(tmp_path / "overlays")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    _check_overlays(capsys.readouterr().out, tmp_path / "overlays", bad_layer["int8"])
    report = json.loads(out.read_text())
    assert report["schema"] == "quantlens.diagnosis/1"
    for op in report["ops"]:
        assert {"index", "op_type", "output", "error_added_db"} <= set(op)
    s = report["suggestion"]
    assert s["met_budget"] is True
    # the planted fix: the wide layer's output kept wider than int8 (float or int16)
    assert any(BAD in k["tensor"] and k["precision"] in ("float", "int16-act")
               for k in s["kept"])  # fmt: skip
    assert BAD in s["rankings"]["error_added"][0]["tensor"]
    assert BAD in s["rankings"]["sensitivity"][0]["tensor"]
    steps = s["steps"]
    chosen = next(st for st in steps if st["step"] == s["model_step"])
    assert steps[0]["kept"] == [] and chosen["drop"] <= 0.02 + 1e-9
    # every accepted step and the suggested one are benchmarked; every step has a size
    assert all(st["p50_ms"] > 0 for st in steps if st["accepted"] or st is chosen)
    assert all(st["size_bytes"] > 0 for st in steps)
    # the suggested model's accuracy, measured here by hand (with our own int8 scaling)
    data = np.load(bad_layer["data"])
    (logits,) = hand_run(s["model"], [data["x"]])
    assert np.mean(logits.argmax(1) == data["y"]) >= 1.0 - 0.02 - 1e-9
    assert 0 in s["pareto"]["size"]  # the fully quantized model is the smallest


def _check_overlays(printed: str, folder: Path, quantized: Path) -> None:
    """The overlays are Model Explorer node data keyed as its TFLite adapter keys the
    quantized model's nodes, the planted layer red, and the printed command opens them."""
    graph = read_graph(quantized.read_bytes(), str(quantized))
    op_outputs = {graph.tensors[op.outputs[0]].name for op in graph.ops}
    inputs = {graph.tensors[i].name for i in graph.inputs}
    files = sorted(folder.iterdir())
    assert {f.name for f in files} == {
        "error_added_db.json", "tensor_sqnr_db.json", "channel_sqnr_worst_db.json",
        "weight_sqnr_db.json", "clipped_fraction.json", "sensitivity.json"}  # fmt: skip
    overlays = {f.name: read_model_node_data(f) for f in files}
    for name, data in overlays.items():
        (graph_id,) = data
        assert graph_id == (graph.name or "main"), name  # the graph id the adapter uses
        keys = set(data[graph_id]["results"])
        assert keys and keys <= op_outputs | inputs, (name, keys - op_outputs - inputs)
    (added,) = overlays["error_added_db.json"].values()
    bad = next(k for k in added["results"] if BAD in k)
    assert colour(added, bad) == "#d7301f"  # red: the op that adds the error
    assert {colour(added, k) for k in added["results"] if k != bad} <= {"#91cf60", "#fee08b"}
    (worst,) = overlays["channel_sqnr_worst_db.json"].values()
    assert colour(worst, bad) == "#d7301f"  # the crushed channels
    (sens,) = overlays["sensitivity.json"].values()
    values = {k: r["value"] for k, r in sens["results"].items()}
    assert max(values, key=values.__getitem__) == bad  # the most recovered: most red
    command = next(line for line in printed.splitlines() if line.startswith("model-explorer"))
    argv = shlex.split(command)
    assert argv[1] == str(quantized)
    assert sorted(argv[2].removeprefix("--node_data_paths=").split(",")) == [str(f) for f in files]


def test_keras_source_merges_the_quantization_debugger(bad_layer, tmp_path) -> None:
    result = diagnose_source(
        bad_layer["keras"], bad_layer["data"], mode="int8", calibration=bad_layer["data"],
        out_dir=tmp_path, samples=64,
    )  # fmt: skip
    with_debugger = [t for t in result.tensors if t.debugger is not None]
    assert with_debugger
    worst = max(with_debugger, key=lambda t: t.debugger["mean_squared_error"])
    assert BAD in worst.name
    assert BAD in result.top_ops(1)[0].output


def test_an_op_fed_by_tensors_the_float_model_lacks_is_measured_from_their_sources() -> None:
    """Tensors with no float counterpart (an ONNX float16 conversion's Casts, a QDQ
    softmax's intermediate) count as the matched tensors they are computed from: an op fed
    only by them is charged with the error since those, not blamed for every error above it
    as if its input were lossless (rapidocr's int8 classifier ranked a Reshape first, +46 dB;
    PP-OCRv4's float16 detector, six Casts). Ops fed by constants, or by an input nothing
    matched, still count from lossless."""
    from types import SimpleNamespace

    from quantlens.diagnose.core import LOSSLESS_DB, _op_rows
    from quantlens.models.tflite_file import Graph, GraphOp, GraphTensor
    from quantlens.results import TensorRow

    names = ["x", "mul", "to_half", "sig", "y", "sum", "w", "from_w", "orphan", "from_orphan"]
    constant = {"w"}
    graph = Graph(
        ops=(
            GraphOp(0, "MUL", (0,), (1,)),  # x -> mul (matched, 20 dB)
            GraphOp(1, "CAST", (1,), (2,)),  # -> to_half (no float counterpart)
            GraphOp(2, "LOGISTIC", (2,), (3,)),  # -> sig (none either)
            GraphOp(3, "CAST", (3,), (4,)),  # -> y (matched, 18 dB)
            GraphOp(4, "ADD", (3, 1), (5,)),  # sig and mul -> sum (matched, 10 dB)
            GraphOp(5, "DEQUANTIZE", (6,), (7,)),  # a weight -> from_w (matched, 30 dB)
            GraphOp(6, "CAST", (8,), (9,)),  # an unmatched graph input -> from_orphan (25 dB)
        ),
        tensors=tuple(
            GraphTensor(i, n, "float32", (4,), n in constant) for i, n in enumerate(names)
        ),
        inputs=(0, 8),
        outputs=(4, 5),
    )
    sqnr = {0: 90.0, 1: 20.0, 4: 18.0, 5: 10.0, 7: 30.0, 9: 25.0}
    tensors = {i: TensorRow(i, names[i], names[i], "float32", "X", {"sqnr_db": v}, v, v, 0.0, 1.0)
               for i, v in sqnr.items()}  # fmt: skip
    qnt = SimpleNamespace(graph=graph, aliases={}, skip_ops=())
    added = {row.index: row.error_added_db for row in _op_rows(qnt, tensors)}
    assert added[0] == pytest.approx(LOSSLESS_DB - 20.0)
    assert added[1] is None and added[2] is None  # their outputs are not measured
    assert added[3] == pytest.approx(20.0 - 18.0)  # from mul, two unmatched tensors up
    assert added[4] == pytest.approx(20.0 - 10.0)
    assert added[5] == pytest.approx(LOSSLESS_DB - 30.0)
    assert added[6] == pytest.approx(LOSSLESS_DB - 25.0)
