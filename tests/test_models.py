"""Loading models and running them: I/O (de)quantization, batching, signatures, info."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from quantlens import load_model
from quantlens.errors import ModelLoadError
from quantlens.models.base import trusted_models


def hand_run(path, xs: list[np.ndarray]) -> list[np.ndarray]:
    """A careful hand-written loop: one sample per invoke, int8 scaling done here."""
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(xs[0])):
        for d, x in zip(ins, xs, strict=True):
            sample = x[i : i + 1]
            if d["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                sample = np.clip(np.round(sample / scale) + zp, info.min, info.max).astype(
                    d["dtype"]
                )
            interp.set_tensor(d["index"], sample.astype(d["dtype"]))
        interp.invoke()
        for k, d in enumerate(outs):
            y = interp.get_tensor(d["index"])
            if d["dtype"] in (np.int8, np.uint8, np.int16):
                scale, zp = d["quantization"]
                y = (y.astype(np.float64) - zp) * scale
            results[k].append(y)
    return [np.concatenate(r) for r in results]


@pytest.mark.parametrize("kind", ["float", "int8", "int8io"])
def test_batched_predict_equals_one_sample_loop(digits_models, digits_split, kind: str) -> None:
    x = digits_split[2][:45]
    model = load_model(digits_models[kind])
    got = model.predict([x])[0]
    (expected,) = hand_run(digits_models[kind], [x])
    assert got.shape == (45, 10)
    # int8 I/O: our rounding and the test's may differ at exact ties -> one output step at most
    step = model.outputs[0].quantization.scale[0] if model.outputs[0].quantization else 1e-5
    assert np.abs(got - expected).max() <= step + 1e-6


def test_int8_io_is_quantized_and_dequantized(digits_models, digits_split) -> None:
    model = load_model(digits_models["int8io"])
    assert model.inputs[0].dtype == "int8" and model.inputs[0].quantization is not None
    ref = load_model(digits_models["keras"]).predict([digits_split[2][:50]])[0]
    got = model.predict([digits_split[2][:50]])[0]
    assert got.dtype == np.float32
    # in real space the int8 model tracks the float one; raw int8 codes would not
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99


def test_predict_told_the_input_range_equals_predict(
    digits_models, fixed_batch_models, digits_split
) -> None:
    """Told the batch's range, an int8-input model skips the clip when nothing clips and
    gives the outputs predict gives; a range that clips, and a model run in padded chunks,
    take the clip as before."""
    x = digits_split[2][:37]
    for path in (digits_models["int8io"], fixed_batch_models["baked"]):
        model = load_model(path)
        for scale in (1.0, 40.0):  # the second clips at the int8 ends
            xs = (x * scale).astype(np.float32)
            want = model.predict([xs])[0]
            span = (float(xs.min()), float(xs.max()))
            np.testing.assert_array_equal(model.predict_in_range([xs], [span])[0], want)
            np.testing.assert_array_equal(model.predict_in_range([xs], [None])[0], want)


@pytest.mark.parametrize("kind", ["resizable", "baked"])
def test_fixed_batch_of_one_runs_any_batch(fixed_batch_models, digits_split, kind: str) -> None:
    x = digits_split[2][:13]
    model = load_model(fixed_batch_models[kind])
    assert model.inputs[0].shape[0] == 1
    assert model.batching == "chunks"  # the declared batch, until a probe shows otherwise
    decision = model.probe_batching([x])
    assert model.batching == decision.mode == ("resize" if kind == "resizable" else "chunks")
    got = model.predict([x])[0]
    (expected,) = hand_run(fixed_batch_models[kind], [x])
    assert got.shape == (13, 10)
    np.testing.assert_allclose(got, expected, atol=model.outputs[0].quantization.scale[0] + 1e-6)
    # and again, with a different batch size, after the first call settled the strategy
    np.testing.assert_allclose(model.predict([x[:5]])[0], expected[:5], atol=1e-2)


def test_multi_output_order_follows_the_signature(multi_io_models) -> None:
    tfl = load_model(multi_io_models["int8io"])
    ker = load_model(multi_io_models["keras"])
    assert [t.name for t in ker.outputs] == ["zcls", "areg"]
    assert [t.name for t in tfl.outputs] == ["output_0", "output_1"]
    assert [t.sample_shape for t in tfl.outputs] == [(3,), (2,)]
    assert {t.name for t in tfl.inputs} == {"feats", "aux"}


def test_info_counts_ops_and_weight_dtypes(digits_models) -> None:
    info = load_model(digits_models["int8io"]).info()
    assert info.format == "tflite"
    assert info.size_bytes == digits_models["int8io"].stat().st_size
    assert info.op_counts.get("CONV_2D") == 1 and info.op_counts.get("FULLY_CONNECTED") == 1
    assert info.weight_dtypes.get("int8", 0) >= 8 * 9 + 8 * 64 * 10  # conv + dense kernels
    assert "float32" not in info.weight_dtypes
    float_info = load_model(digits_models["float"]).info()
    assert float_info.weight_dtypes.get("float32", 0) >= 8 * 9 + 8 * 64 * 10
    assert info.inputs[0].quantization is not None


def test_missing_and_unknown_models_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="model not found"):
        load_model(tmp_path / "nope.tflite")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model type"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        load_model(tmp_path)
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a TFLite model"):
        load_model(tmp_path / "junk.tflite")


def test_keras_h5_and_saved_model_agree(multi_io_models, tf, tmp_path) -> None:
    from quantlens._quiet import captured_output

    keras_model = tf.keras.models.load_model(multi_io_models["keras"])
    with captured_output():  # export lists its endpoints on stdout
        keras_model.export(tmp_path / "saved")
    keras_model.save(tmp_path / "m.h5")
    rng = np.random.default_rng(0)
    x = {"feats": rng.random((6, 4), dtype=np.float32), "aux": rng.random((6, 3), dtype=np.float32)}
    expected = [o.numpy() for o in keras_model([x["feats"], x["aux"]], training=False)]
    for path, fmt in ((tmp_path / "saved", "saved_model"), (tmp_path / "m.h5", "keras")):
        with trusted_models(fmt == "saved_model"):  # a SavedModel runs its graph: trust it
            model = load_model(path)
        assert model.format == fmt
        # a SavedModel signature's inputs are named, not ordered: feed them by name
        assert {t.name for t in model.inputs} == {"feats", "aux"}
        got = model.predict([x[t.name] for t in model.inputs])
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    with trusted_models():
        assert load_model(tmp_path / "saved").info().size_bytes > 0


def test_a_twin_runs_while_the_tensors_of_the_first_are_read_in_place(
    digits_models, digits_split
) -> None:
    """Tensors read in place stay valid while the model's twin runs the next batch, and equal
    a copying run of a model of its own; the runtime refuses to run the first model again
    until they are let go."""
    from quantlens.errors import ModelRunError
    from quantlens.models.litert import LiteRTModel

    def inspected() -> LiteRTModel:
        return LiteRTModel(digits_models["int8"], use_default_delegates=False,
                           preserve_all_tensors=True)  # fmt: skip

    x = digits_split[2][:16]
    model, plain = inspected(), inspected()
    twin = model.twin()
    hidden = [t.index for t in model._graph.tensors if not t.constant][1:4]
    (out_a,), held = model.predict_tensors([x[:8]], hidden, views=True)
    copies = [h.copy() for h in held]
    (out_b,), seen_b = twin.predict_tensors([x[8:]], hidden, views=True)
    for h, c in zip(held, copies, strict=True):  # the twin did not touch them
        np.testing.assert_array_equal(h, c)
    for got, xs in (((out_a, copies), x[:8]), ((out_b, seen_b), x[8:])):
        (want,), want_hidden = plain.predict_tensors([xs], hidden)
        np.testing.assert_array_equal(got[0], want)
        for g, w in zip(got[1], want_hidden, strict=True):
            np.testing.assert_array_equal(g, w)
    del seen_b
    with pytest.raises(ModelRunError):
        model.predict_tensors([x[:8]], hidden, views=True)
    del held, h  # the last loop variable held one too
    (again,), _ = model.predict_tensors([x[:8]], hidden, views=True)
    np.testing.assert_array_equal(again, out_a)


def test_what_load_reads_of_the_graph_equals_the_full_parse(digits_models) -> None:
    """The main subgraph's activations and the QUANTIZE ops reading inputs, taken from the
    load's one pass over the flatbuffer, equal what the full graph parse gives; the input
    quantization of a float-input int8 model is its QUANTIZE op's, found without it."""
    from quantlens.models.batching import tensor_bytes
    from quantlens.models.tflite_file import read_graph

    for kind in ("float", "int8", "int8io"):
        path = digits_models[kind]
        model = load_model(path)
        graph = read_graph(path.read_bytes(), str(path))
        want = sum(tensor_bytes([max(d, 1) for d in t.shape], t.dtype)
                   for t in graph.tensors if not t.constant)  # fmt: skip
        assert model.working_bytes_per_sample() == want
        first: dict[int, int] = {}
        for op in graph.ops:
            if op.op_type == "QUANTIZE":
                first.setdefault(op.inputs[0], op.outputs[0])
        quant = model.input_quantization()
        if kind == "float":
            assert quant == [None]
        elif kind == "int8":  # float input, quantized by the graph's first op
            ((qp, dtype),) = quant
            detail = next(d for d in Interpreter(str(path)).get_tensor_details()
                          if d["index"] == first[graph.inputs[0]])  # fmt: skip
            assert dtype == "int8" and qp.scale[0] == pytest.approx(detail["quantization"][0])
        else:
            assert quant == [(model.inputs[0].quantization, "int8")]
