"""No silent no-op quantization: the files real models ship as (old flatbuffers, float16
weights behind DEQUANTIZE, ONNX weights in Constant nodes and If branches, old opsets) are
quantized for real, and a mode that quantizes nothing is an error, never a result."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

import quantlens
from quantlens.cli import main
from quantlens.errors import ConfigError
from quantlens.quantize.normalize import normalize_tflite

RNG = np.random.default_rng(11)


def _as_old_flatbuffer(data: bytes) -> bytes:
    """The file as older converters wrote it: op types only in deprecated_builtin_code (the
    new field left at 0, which reads as ADD) and no signature."""
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for code in model.operatorCodes:
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    model.signatureDefs = []
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    interp = Interpreter(model_content=content)
    interp.resize_tensor_input(0, list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.fixture(scope="module")
def old_models(tf, tmp_path_factory):
    """A small CNN as an old float32 flatbuffer and as an old float16 one (float16 weights,
    DEQUANTIZE before each use), as mediapipe ships them."""
    keras = tf.keras
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(32)])  # fmt: skip
    out = tmp_path_factory.mktemp("old")
    float32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    float16 = converter.convert()
    paths = {"old32": out / "old32.tflite", "old16": out / "old16.tflite"}
    paths["old32"].write_bytes(_as_old_flatbuffer(float32))
    paths["old16"].write_bytes(_as_old_flatbuffer(float16))
    x = RNG.random((40, 16, 16, 3), dtype=np.float32)
    np.savez(out / "data.npz", x=x)
    paths["data"] = out / "data.npz"
    return paths


def test_the_trap_is_real(old_models) -> None:
    """Handed the old file as is, the quantizer (litert-quantizer, or ai-edge-quantizer)
    quantizes nothing (it sees only ADDs)."""
    from quantlens._quiet import captured_output
    from quantlens.quantize.aeq import quantizer_package

    _, aeq = quantizer_package()
    with captured_output():
        made = aeq.quantizer.Quantizer(str(old_models["old32"]),
                                       aeq.recipe.dynamic_wi8_afp32()).quantize()  # fmt: skip
    assert len(made.quantized_model) >= old_models["old32"].stat().st_size * 0.95


def test_the_normalised_copy_computes_what_the_source_does(old_models) -> None:
    x = RNG.random((5, 16, 16, 3), dtype=np.float32)
    for name in ("old32", "old16"):
        data = old_models[name].read_bytes()
        fixed, changes = normalize_tflite(data)
        assert changes and "signature" in changes[-1]
        np.testing.assert_array_equal(_run(fixed, x), _run(data, x))
        model = schema.ModelT.InitFromPackedBuf(fixed, 0)
        assert all(c.builtinCode == c.deprecatedBuiltinCode for c in model.operatorCodes)
        assert model.signatureDefs[0].signatureKey == b"serving_default"
    assert any("float16" in c for c in normalize_tflite(old_models["old16"].read_bytes())[1])


@pytest.mark.parametrize("source", ["old32", "old16"])
def test_old_files_are_quantized_for_real(old_models, source: str, tmp_path) -> None:
    out = tmp_path / "q"
    made = quantlens.quantize(old_models[source], ["dynamic", "weight-only-int8", "int8"], out,
                              calibration=old_models["data"], calibration_samples=20)  # fmt: skip
    assert [v.mode for v in made.variants] == ["dynamic", "weight-only-int8", "int8"]
    for v in made.variants:
        info = quantlens.load_model(v.path).info()
        assert info.weight_dtypes.get("int8", 0) >= 3 * 3 * 3 * 16 + 16 * 32  # conv + dense
        assert v.settings["normalised"]
    int8 = quantlens.load_model(made.variant("int8").path).info()
    assert int8.activation_dtypes.get("int8", 0) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["failed"] == [] and "normalised" in manifest["variants"][0]["settings"]
    # and the numbers still mean something: int8 tracks the float model
    result = quantlens.evaluate(old_models[source], [made.variant("int8").path],
                                old_models["data"])  # fmt: skip
    assert result.models[1].fidelity["sqnr_db"] > 20


def test_a_mode_that_quantizes_nothing_is_an_error_and_never_ranked(tf, tmp_path) -> None:
    # ai-edge-quantizer has no int4 blockwise DEPTHWISE_CONV_2D: it writes the model back
    # with every weight in float, and says nothing
    keras = tf.keras
    model = keras.Sequential([keras.Input((8, 8, 64)), keras.layers.DepthwiseConv2D(3),
                              keras.layers.GlobalAveragePooling2D()])  # fmt: skip
    source = tmp_path / "dw.tflite"
    source.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.savez(tmp_path / "d.npz", x=RNG.random((20, 8, 8, 64), dtype=np.float32))
    modes = ["dynamic", "dynamic-int4-block32"]
    made = quantlens.quantize(source, modes, tmp_path / "q")
    assert [v.mode for v in made.variants] == ["dynamic"]
    (failed,) = made.failed
    assert failed.code == "not_quantized" and "quantized no weight" in failed.reason
    assert not (tmp_path / "q" / "dw_dynamic-int4-block32.tflite").exists()
    result = quantlens.compare(source, tmp_path / "d.npz", modes=modes, out_dir=tmp_path / "c",
                               bench=False)  # fmt: skip
    assert [m.quantization.mode for m in result.models[1:]] == ["dynamic"]
    assert [(w.code, w.model) for w in result.warnings] == [("not_quantized",
                                                             "dynamic-int4-block32")]  # fmt: skip


def test_an_already_quantized_model_is_refused(old_models, tmp_path, capsys) -> None:
    made = quantlens.quantize(old_models["old32"], ["dynamic"], tmp_path / "q")
    with pytest.raises(ConfigError, match="already quantized"):
        quantlens.quantize(made.variants[0].path, ["int8"], tmp_path / "again",
                           calibration=old_models["data"])  # fmt: skip
    code = main(["compare", made.variants[0].path, "--data", str(old_models["data"]),
                 "--modes", "dynamic", "--out", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "already quantized" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def onnx_hidden_weights(tmp_path_factory):
    """An opset-11 ONNX model whose weights are Constant nodes, inside the branches of an
    If (as silero-vad and PaddleOCR exports hold them)."""
    out = tmp_path_factory.mktemp("hidden")
    w = RNG.normal(size=(24, 48)).astype(np.float32)
    w2 = RNG.normal(size=(48, 6)).astype(np.float32)

    def branch(name: str, scale: float) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Constant", [], [f"{name}_w"],
                              value=numpy_helper.from_array(w * scale)),
             helper.make_node("Constant", [], [f"{name}_w2"],
                              value=numpy_helper.from_array(w2)),
             helper.make_node("Identity", ["x"], [f"{name}_x"]),
             helper.make_node("MatMul", [f"{name}_x", f"{name}_w"], [f"{name}_h"]),
             helper.make_node("Relu", [f"{name}_h"], [f"{name}_r"]),
             helper.make_node("MatMul", [f"{name}_r", f"{name}_w2"], [f"{name}_y"])],
            name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["N", 6])],
        )  # fmt: skip

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["flag"], value=numpy_helper.from_array(np.array(True))),
         helper.make_node("If", ["flag"], ["y"], then_branch=branch("a", 1.0),
                          else_branch=branch("b", 0.5))],
        "hidden", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, out / "hidden.onnx")
    x = RNG.normal(size=(30, 24)).astype(np.float32)
    np.savez(out / "data.npz", x=x)
    return out / "hidden.onnx", out / "data.npz"


def test_onnx_weights_in_constants_and_branches_are_quantized(onnx_hidden_weights, tmp_path):
    source, data = onnx_hidden_weights
    made = quantlens.quantize(source, ["dynamic"], tmp_path)
    (variant,) = made.variants
    assert variant.size_bytes < source.stat().st_size * 0.6  # int8 instead of float32 weights
    info = quantlens.load_model(variant.path).info()
    assert info.weight_dtypes.get("int8", 0) >= 24 * 48 + 48 * 6
    assert any("Constant" in c for c in variant.settings["normalised"])
    x = np.load(data)["x"]
    session = ort.InferenceSession(variant.path)
    truth = np.concatenate([session.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    ref = ort.InferenceSession(str(source)).run(None, {"x": x})[0]
    result = quantlens.evaluate(source, [variant.path], data)
    err = truth.astype(np.float64) - ref
    assert result.models[1].fidelity["mse"] == pytest.approx(np.mean(err**2), rel=1e-6)


def test_opset_11_per_channel_static_quantization_is_valid(tmp_path) -> None:
    w = RNG.normal(size=(8, 4, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
         helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 6, 6])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, tmp_path / "conv.onnx")
    np.savez(tmp_path / "d.npz", x=RNG.random((20, 4, 8, 8), dtype=np.float32))
    made = quantlens.quantize(tmp_path / "conv.onnx", ["int8"], tmp_path / "q",
                              calibration=tmp_path / "d.npz")  # fmt: skip
    (variant,) = made.variants
    onnx.checker.check_model(onnx.load(variant.path))
    assert quantlens.load_model(variant.path).info().op_counts.get("QuantizeLinear", 0) > 0
    assert any("opset 11 raised to 13" in c for c in variant.settings["normalised"])


def test_repeated_tensor_names_are_made_unique(old_models, tmp_path) -> None:
    """ai-edge-quantizer keys tensors by name and refuses a model that repeats one (the
    control-flow subgraphs of openWakeWord's models all have an 'arg0')."""
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(old_models["old32"].read_bytes(), 0)
    for tensor in model.subgraphs[0].tensors[:3]:
        tensor.name = b"arg0"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    source = tmp_path / "repeats.tflite"
    source.write_bytes(bytes(builder.Output()))
    fixed, changes = normalize_tflite(source.read_bytes())
    names = [t.name for t in schema.ModelT.InitFromPackedBuf(fixed, 0).subgraphs[0].tensors]
    assert len(set(names)) == len(names) and any("repeated tensor name" in c for c in changes)
    made = quantlens.quantize(source, ["dynamic"], tmp_path / "q")
    assert [v.mode for v in made.variants] == ["dynamic"]
