"""quantlens kernels: each kernel path's error against the reference kernels, and the float
model's against the quantized one, equal plain runtime loops (one sample at a time, NumPy)
under each op resolver or graph optimization level."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert import interpreter as litert

import quantlens
from quantlens.cli import main
from quantlens.results import decode_number
from tests.test_onnx import onnx_models  # noqa: F401  (the fixture)

RESOLVERS = {
    "reference": litert.OpResolverType.BUILTIN_REF,
    "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    "xnnpack": litert.OpResolverType.AUTO,
}


def _litert_loop(path, x: np.ndarray, resolver) -> np.ndarray:
    """One sample at a time; integer inputs quantized as LiteRT's QUANTIZE op does (float32
    times the reciprocal scale, half to even), integer outputs dequantized."""
    it = litert.Interpreter(model_path=str(path), experimental_op_resolver_type=resolver,
                            num_threads=1)  # fmt: skip
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for s in x:
        v = s[None].astype(np.float32)
        if i["dtype"] != np.float32:
            scale, zp = i["quantization"]
            q = np.rint(v * np.float32(1 / np.float32(scale))) + zp
            v = np.clip(q, np.iinfo(i["dtype"]).min, np.iinfo(i["dtype"]).max)
        it.set_tensor(i["index"], v.astype(i["dtype"]))
        it.invoke()
        y = it.get_tensor(o["index"]).astype(np.float64)
        if o["dtype"] != np.float32:
            scale, zp = o["quantization"]
            y = (y - zp) * scale
        out.append(y[0])
    return np.array(out)


def _sqnr(ref: np.ndarray, cand: np.ndarray) -> float:
    err = float(((cand - ref) ** 2).sum())
    return 10 * np.log10(float((ref**2).sum()) / err) if err else float("inf")


def test_tflite_kernel_paths_equal_plain_loops(bad_layer, tmp_path, capsys) -> None:
    x = np.load(bad_layer["data"])["x"][:64]
    np.savez(tmp_path / "d.npz", x=x)
    out = tmp_path / "k.json"
    code = main(["kernels", str(bad_layer["int8"]), "--data", str(tmp_path / "d.npz"),
                 "--reference", str(bad_layer["float"]), "--json", str(out), "--report",
                 str(tmp_path / "k.html"), "--markdown", str(tmp_path / "k.md")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    printed = " ".join(capsys.readouterr().out.split())  # sentences wrap at the terminal
    report = json.loads(out.read_text())
    runs = {k: _litert_loop(bad_layer["int8"], x, r) for k, r in RESOLVERS.items()}
    flt = _litert_loop(bad_layer["float"], x, RESOLVERS["reference"])
    kernels = {m["name"]: m for m in report["kernels"]["models"]}
    assert list(kernels) == list(RESOLVERS)
    for name in ("builtin", "xnnpack"):
        got = decode_number(kernels[name]["fidelity"]["sqnr_db"])
        want = _sqnr(runs["reference"], runs[name])
        assert got == want or got == pytest.approx(want, rel=1e-6)
    against = {m["name"]: m for m in report["against_float"]["models"]}
    for name in RESOLVERS:
        assert decode_number(against[name]["fidelity"]["sqnr_db"]) == pytest.approx(
            _sqnr(flt, runs[name]), rel=1e-6
        )
    q = _sqnr(flt, runs["reference"])
    assert f"SQNR {q:.1f} dB" in printed  # the quantization error, said in words
    assert "Quantization error (float vs quantized, both on the reference kernels)" in printed
    assert "quantlens kernel check" in (tmp_path / "k.md").read_text()


def test_onnx_optimization_levels_equal_plain_sessions(onnx_models) -> None:  # noqa: F811
    x = np.load(onnx_models["data"])["x"][:100]
    check = quantlens.check_kernels(onnx_models["qdq"], x, reference=onnx_models["float"])
    assert list(check.paths) == ["unoptimized", "basic", "optimized"]
    levels = {
        "unoptimized": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "optimized": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }

    def run(path, level) -> np.ndarray:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = levels[level]
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])

    runs = {k: run(onnx_models["qdq"], k).astype(np.float64) for k in levels}
    by = {m.name: m for m in check.kernels.models}
    for k in ("basic", "optimized"):
        want = _sqnr(runs["unoptimized"], runs[k])
        assert by[k].fidelity["sqnr_db"] == pytest.approx(want, rel=1e-6)
    flt = run(onnx_models["float"], "unoptimized").astype(np.float64)
    q = check.quantization_error
    assert q is not None and q.fidelity["sqnr_db"] == pytest.approx(
        _sqnr(flt, runs["unoptimized"]), rel=1e-6
    )
