"""Bad input gets a clear one-line error and exit 2, malformed models never take the process
down, non-finite numbers are handled, state does not leak between samples, and model files
stay data."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

import quantlens
from quantlens.cli import main
from quantlens.errors import ConfigError, DataError, ModelLoadError, QuantlensError
from quantlens.gates import parse_gate
from tests.test_models import hand_run


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, digits_models):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (d / "random.tflite").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "random.onnx").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "model.pt").write_bytes(b"not a model")
    (d / "notsaved").mkdir()
    data = digits_models["int8io"].read_bytes()
    (d / "truncated.tflite").write_bytes(data[: len(data) // 2])
    np.savez(d / "flat.npz", x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))
    np.savez(d / "text.npz", x=np.full((4, 8, 8, 1), "a"), y=np.zeros(4, np.int64))
    np.savez(d / "empty.npz", x=np.zeros((0, 8, 8, 1), np.float32))
    np.savez(d / "labels9.npz", x=np.zeros((10, 8, 8, 1), np.float32), y=np.zeros(9, np.int64))
    np.savez(d / "labels99.npz", x=np.zeros((10, 8, 8, 1), np.float32), y=np.full(10, 99))
    nan = np.zeros((10, 8, 8, 1), np.float32)
    nan[3, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=nan, y=np.zeros(10, np.int64))
    (d / "afile").write_text("x")
    header = io.BytesIO()
    np.save(header, np.zeros((4, 8, 8, 1), np.float32))
    (d / "negative.npy").write_bytes(header.getvalue().replace(b"(4, 8, 8, 1)", b"(-4, 8, 8, 1)"))
    np.savez(d / "strlabels.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.array(list("abcd")))
    nan_labels = np.zeros(4, np.float32)
    nan_labels[1] = np.nan
    np.savez(d / "nanlabels.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=nan_labels)
    (d / "bigfield.csv").write_text("a,label\n" + "1" * 140_000 + ",0\n")
    (d / "wide.csv").write_text(",".join(f"c{i}" for i in range(50_000)) + "\n")
    (d / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "bad.json").write_text('{"schema": "quantlens.evaluation/1", "models": 5}')
    (d / "nested.toml").write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    for cls in ("a", "b"):
        (d / "images" / cls).mkdir(parents=True)
        (d / "images" / cls / "1.png").write_bytes(_png(8, 8))
    (d / "bomb" / "a").mkdir(parents=True)
    (d / "bomb" / "a" / "big.png").write_bytes(_claims_size(_png(8, 8), 30_000, 30_000))
    os.mkfifo(d / "fifo.tflite")
    os.mkfifo(d / "fifo.npz")
    (d / "noinputs.tflite").write_bytes(_without_inputs(digits_models["float"].read_bytes()))
    return d


def _without_inputs(data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    model.subgraphs[0].inputs = []
    for sig in model.signatureDefs or []:
        sig.inputs = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _claims_size(png: bytes, w: int, h: int) -> bytes:
    """A PNG whose header claims w×h pixels (a decompression bomb as its reader sees it)."""
    import struct
    import zlib

    ihdr = png[12:29]  # b"IHDR" + 13 bytes
    new = b"IHDR" + struct.pack(">II", w, h) + ihdr[12:]
    return png[:12] + new + struct.pack(">I", zlib.crc32(new)) + png[33:]


def _png(w: int, h: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (w, h)).save(out, format="PNG")
    return out.getvalue()


def custom_op_model(path: Path, out: Path) -> Path:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(path.read_bytes())
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = b"MyFancyOp"
    out.write_bytes(bytes(fu.convert_object_to_bytearray(model)))
    return out


CASES = {
    "missing model": (["evaluate", "{d}/nope.tflite", "{float}", "--data", "digits"], "model not found"),
    "not a SavedModel": (["evaluate", "{d}/notsaved", "{float}", "--data", "digits"], "not a SavedModel"),
    "unknown extension": (["evaluate", "{d}/model.pt", "{float}", "--data", "digits"], "unknown model type"),
    "random .tflite": (["evaluate", "{d}/random.tflite", "{float}", "--data", "digits"], "not a TFLite model"),
    "random .onnx": (["evaluate", "{d}/random.onnx", "{float}", "--data", "digits"], ".onnx"),
    "truncated .tflite": (["evaluate", "{float}", "{d}/truncated.tflite", "--data", "digits"], "truncated or corrupt"),
    "custom op": (["evaluate", "{float}", "{d}/custom.tflite", "--data", "digits"], "MyFancyOp"),
    "shape mismatch": (["evaluate", "{float}", "{int8}", "--data", "{d}/flat.npz"], "expects samples of shape (8, 8, 1) float32"),
    "dtype mismatch": (["evaluate", "{float}", "{int8}", "--data", "{d}/text.npz"], "gives (8, 8, 1) str"),
    "different graphs": (["evaluate", "{float}", "{multi}", "--data", "digits"], "reference has"),
    "empty data": (["evaluate", "{float}", "{int8}", "--data", "{d}/empty.npz"], "empty"),
    "label count": (["evaluate", "{float}", "{int8}", "--data", "{d}/labels9.npz"], "9 labels for 10 samples"),
    "label range": (["evaluate", "{float}", "{int8}", "--data", "{d}/labels99.npz"], "label 99 is outside"),
    "nan input": (["evaluate", "{float}", "{int8}", "--data", "{d}/nan.npz"], "NaN or inf at sample 3"),
    "mode for source": (["quantize", "{float}", "--modes", "float16", "--out", "{d}/q1"], "does not apply"),
    "no calibration": (["quantize", "{keras}", "--modes", "int8", "--out", "{d}/q2"], "--calibration"),
    "unknown gate": (["evaluate", "{float}", "{int8}", "--data", "digits", "--fail-on", "acc>1"], "unknown metric 'acc'"),
    "unwritable report": (["evaluate", "{float}", "{int8}", "--data", "digits", "--limit", "5",
                           "--no-bench", "--markdown", "{d}/afile/r.md"], "cannot write"),
    "negative dimension": (["evaluate", "{float}", "{int8}", "--data", "{d}/negative.npy"], "cannot read"),
    "string labels": (["evaluate", "{float}", "{int8}", "--data", "{d}/strlabels.npz"], "not numbers"),
    "nan labels": (["evaluate", "{float}", "{int8}", "--data", "{d}/nanlabels.npz"], "is NaN or inf"),
    "huge csv field": (["evaluate", "{float}", "{int8}", "--data", "{d}/bigfield.csv"], "field larger than field limit"),
    "unknown label column": (["evaluate", "{float}", "{int8}", "--data", "{d}/wide.csv", "--label-column", "nope"], "50000 in all"),
    "preprocess size 0": (["evaluate", "{float}", "{int8}", "--data", "{d}/images", "--preprocess", "size=0x0"], "each side must be"),
    "preprocess negative": (["evaluate", "{float}", "{int8}", "--data", "{d}/images", "--preprocess", "size=-5x32"], "each side must be"),
    "preprocess mean": (["evaluate", "{float}", "{int8}", "--data", "{d}/images", "--preprocess", "mean=1:2:3:4:5"], "needs 1 or 3"),
    "check nested report": (["check", "{d}/nested.json", "--fail-on", "accuracy<1"], "nested too deeply"),
    "check malformed report": (["check", "{d}/bad.json", "--fail-on", "accuracy<1"], "not a well-formed"),
    "diff malformed report": (["diff", "{d}/bad.json", "{d}/bad.json"], "not a well-formed"),
    "nested toml": (["evaluate", "--config", "{d}/nested.toml"], "nested too deeply"),
    "threads": (["evaluate", "{float}", "{int8}", "--data", "digits", "--threads", "100000"], "pass --force"),
    "infinite seconds": (["bench", "{float}", "--min-seconds", "inf"], "finite number"),
    "endless runs": (["bench", "{float}", "--runs", "1000000000"], "at most 10,000,000 runs"),
    "huge batch": (["bench", "{float}", "--batch-size", "10000000"], "use a batch size of at most"),
    "model without inputs": (["bench", "{d}/noinputs.tflite"], "has no inputs"),
    "model fifo": (["evaluate", "{d}/fifo.tflite", "{float}", "--data", "digits"], "not a regular file"),
    "data fifo": (["evaluate", "{float}", "{int8}", "--data", "{d}/fifo.npz"], "not a regular file"),
    "image bomb": (["evaluate", "{float}", "{int8}", "--data", "{d}/bomb"], "decompression bomb"),
    "argparse error": (["evaluate", "{float}", "--nope"], "arguments are required"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_matrix(
    case, capsys, bad_files, digits_models, multi_io_models, tmp_path
) -> None:
    custom_op_model(digits_models["float"], bad_files / "custom.tflite")
    argv, message = CASES[case]
    values = {"d": bad_files, "float": digits_models["float"], "int8": digits_models["int8io"],
              "multi": multi_io_models["int8io"], "keras": digits_models["keras"]}  # fmt: skip
    report = tmp_path / "report.json"
    args = [a.format(**values) for a in argv]
    if args[0] == "evaluate":
        args += ["--json", str(report)]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("quantlens: error: ") and "Traceback" not in err
    assert not report.exists()


def _targeted_mutations(data: bytes, rng: np.random.Generator) -> bytes:
    """A structural mutation the flatbuffer verifier lets through: an op's input or output
    pointed at another tensor (the graph's input included), a buffer cut short, or a buffer
    moved outside the file (the offset/size fields of models over 2 GB)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    sg = model.subgraphs[0]
    op = sg.operators[int(rng.integers(0, len(sg.operators)))]
    kind = int(rng.integers(0, 4))
    if kind == 0:
        op.outputs = [int(rng.choice([*sg.inputs, *range(len(sg.tensors))]))]
    elif kind == 1:
        op.inputs = [int(rng.integers(-1, len(sg.tensors) + 3)) for _ in op.inputs]
    elif kind == 2:
        full = [b for b in model.buffers if b.data is not None and len(b.data) > 4]
        if full:
            full[int(rng.integers(0, len(full)))].data = full[0].data[: int(rng.integers(0, 4))]
    else:
        full = [b for b in model.buffers if b.data is not None and len(b.data) > 4]
        if full:
            moved = full[int(rng.integers(0, len(full)))]
            moved.data = None
            moved.offset = int(rng.choice([1, len(data) - 2, 2**40, 2**63 - 1]))
            moved.size = int(rng.choice([4, 2**31, 2**63 - 1]))
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_fuzzed_models_load_or_raise_a_quantlens_error(digits_models, tmp_path) -> None:
    """Random bytes, truncations, header-targeted bytes and structural mutations: every
    outcome is a working model or a one-line error, never a crash of this process (a model
    that crashes the runtime does so in quantlens' containment child)."""
    data = digits_models["int8io"].read_bytes()
    x = np.zeros((2, 8, 8, 1), np.float32)
    outcomes = {"ok": 0, "error": 0}
    runs = 240
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        b = bytearray(data)
        if seed % 4 == 0:
            for _ in range(int(rng.integers(1, 30))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif seed % 4 == 1:
            b = b[: int(rng.integers(8, len(b)))]
        elif seed % 4 == 2:  # the header: root offset, identifier, vtables of the root table
            for _ in range(int(rng.integers(1, 4))):
                b[int(rng.integers(0, 64))] = int(rng.integers(0, 256))
            b[4:8] = b"TFL3"
        else:
            b = bytearray(_targeted_mutations(data, rng))
        path = tmp_path / "m.tflite"
        path.write_bytes(bytes(b))
        try:
            model = quantlens.load_model(path)
            model.predict([x])
            model.info()
            outcomes["ok"] += 1
        except QuantlensError:
            outcomes["error"] += 1
    assert outcomes["ok"] + outcomes["error"] == runs and outcomes["error"] > 50


def _writes_its_input(float_model: Path, out: Path) -> Path:
    """The model with its last op writing into the graph's input: the flatbuffer verifier
    passes it, LiteRT crashes (SIGSEGV) on invoke."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(float_model.read_bytes(), 0)
    sg = model.subgraphs[0]
    sg.operators[-1].outputs = [sg.inputs[0]]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def test_a_model_that_crashes_the_runtime_is_a_one_line_error(digits_models, tmp_path, capsys):
    """An op that writes into the graph's input passes the verifier and crashes LiteRT
    (SIGSEGV) on invoke: quantlens survives it and names the model."""
    crash = _writes_its_input(digits_models["float"], tmp_path / "writes_its_input.tflite")
    for argv in (["evaluate", str(digits_models["float"]), str(crash), "--data", "digits"],
                 ["info", str(crash)], ["bench", str(crash)]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "writes_its_input.tflite crashes the TFLite runtime (SIGSEGV)" in err
        assert err.count("\n") == 1


def test_models_checked_early_are_not_checked_again(digits_models, tmp_path, monkeypatch):
    """The command line's models are checked by the containment child while quantlens
    imports: loading them later asks the child nothing more, a crash found early is the
    same one-line error, and a model changed since its check is checked again."""
    import threading

    from quantlens.models import containment

    crash = _writes_its_input(digits_models["float"], tmp_path / "early_crash.tflite")
    fine = tmp_path / "early_fine.tflite"
    fine.write_bytes(digits_models["int8io"].read_bytes() + b"\0" * 16)  # bytes of its own
    containment.prestart([str(crash), str(fine), str(tmp_path / "missing.tflite")])
    for thread in threading.enumerate():
        if thread.name == "quantlens-containment":
            thread.join(120)
    # the child the early checks restarted after the crash outlives their thread (a child
    # dies with the thread that started it: it was killed mid-check of the next model)
    time.sleep(0.5)
    assert containment._VERIFIER._proc is not None and containment._VERIFIER._proc.poll() is None
    asked: list[str] = []
    real = containment._VERIFIER._check
    monkeypatch.setattr(containment._VERIFIER, "_check", lambda p: asked.append(p) or real(p))
    hashed: list[int] = []  # the loads' own hashing of the bytes they read
    real_digest = containment.digest
    monkeypatch.setattr(containment, "digest", lambda b: hashed.append(len(b)) or real_digest(b))
    containment.ensure_contained(str(fine), fine.read_bytes())
    with pytest.raises(ModelLoadError, match=r"early_crash\.tflite crashes the TFLite runtime"):
        containment.ensure_contained(str(crash), crash.read_bytes())
    assert asked == [] and hashed == []  # the early check's digests serve, files unchanged
    fine.write_bytes(fine.read_bytes() + b"\0" * 16)
    containment.ensure_contained(str(fine), fine.read_bytes())
    assert asked == [str(fine)] and hashed == [fine.stat().st_size]
    same_size = bytearray(fine.read_bytes())
    same_size[-1] = 1  # the same length, other bytes: its identity moved all the same
    fine.write_bytes(bytes(same_size))
    containment.ensure_contained(str(fine), fine.read_bytes())
    assert asked == [str(fine)] * 2 and len(hashed) == 2


def test_stateful_model_is_reset_between_samples(tf, tmp_path) -> None:
    class Accumulator(tf.Module):
        def __init__(self) -> None:
            self.total = tf.Variable(tf.zeros([1, 4]))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x):
            self.total.assign_add(x)
            return {"y": self.total + 0.0}

    module = Accumulator()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module
    )
    converter.experimental_enable_resource_variables = True
    path = tmp_path / "stateful.tflite"
    path.write_bytes(converter.convert())
    model = quantlens.load_model(path)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = model.predict([x])[0]
    np.testing.assert_array_equal(first, x)  # each sample sees a fresh state: total = x
    np.testing.assert_array_equal(model.predict([x])[0], first)


def test_keras_models_that_run_code_need_trust(tf, tmp_path, capsys) -> None:
    keras = tf.keras
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2.0)])
    model.save(tmp_path / "lambda.keras")
    code = main(["info", str(tmp_path / "lambda.keras")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "lambda.keras"), "--trust-model"]) == 0


def test_nonfinite_outputs_are_counted_and_left_out(tf, convert, tmp_path) -> None:
    keras = tf.keras
    inp = keras.Input((4,))
    ref = keras.Model(inp, keras.layers.Lambda(lambda t: tf.math.log(tf.abs(t) + 1.0))(inp))
    cand = keras.Model(inp, keras.layers.Lambda(lambda t: tf.math.log(t + 1.0))(inp))
    (tmp_path / "ref.tflite").write_bytes(convert(ref))
    (tmp_path / "cand.tflite").write_bytes(convert(cand))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.normal(size=(50, 4)).astype(np.float32)
    result = quantlens.evaluate(tmp_path / "ref.tflite", [tmp_path / "cand.tflite"], (x, y))
    (c,) = hand_run(tmp_path / "cand.tflite", [x])
    (r,) = hand_run(tmp_path / "ref.tflite", [x])
    bad = ~np.isfinite(c).all(axis=1)
    assert 0 < bad.sum() < 50
    m = result.model("cand")
    assert m.nonfinite_outputs == int(bad.sum())
    assert m.task_metrics["excluded_nonfinite"] == bad.sum()
    assert m.task_metrics["mae"] == pytest.approx(
        skm.mean_absolute_error(y[~bad], c[~bad]), rel=1e-5
    )
    assert m.fidelity["mse"] == pytest.approx(np.mean((c[~bad] - r[~bad]) ** 2), rel=1e-5)
    # (N, 4) outputs read as scores: the top classes of the rows left in, and no others
    agree = np.mean(r[~bad].argmax(1) == c[~bad].argmax(1))
    assert m.fidelity["top1_agreement"] == pytest.approx(agree, abs=1e-12)
    assert m.paired.samples == int((~bad).sum())
    report = json.loads(json.dumps(result.to_dict()))
    assert report["models"][1]["nonfinite_outputs"] == int(bad.sum())
    gate = parse_gate("nonfinite_outputs>0")
    from quantlens.gates import check_gates

    assert check_gates([gate], report)[0].failed


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=600), suffix=st.sampled_from([".npz", ".npy"]))
def test_data_loaders_work_or_raise_data_errors(tmp_path, payload: bytes, suffix: str) -> None:
    from quantlens.results import TensorSpec

    path = tmp_path / f"data{suffix}"
    path.write_bytes(payload)
    with contextlib.suppress(DataError):
        list(quantlens.load_dataset(path).bind([TensorSpec("x", (None, 3), "float32")]))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_gate_parser_works_or_raises_config_errors(text: str) -> None:
    try:
        gate = parse_gate(text)
    except ConfigError:
        return
    assert gate.metric and gate.op


@settings(max_examples=100, deadline=None)
@given(st.from_regex(r"[a-z0-9_:]{1,20}(>|<|>=|<=|==|!=)-?[0-9.e]{1,8}", fullmatch=True))
def test_gate_parser_on_near_misses(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_gate(text)


def test_a_saved_model_runs_nothing_it_carries_without_trust(tf, tmp_path, capsys) -> None:
    """A SavedModel whose serving function writes a file: refused, and nothing is written;
    likewise a .keras that wraps it in a TFSMLayer (Keras' safe mode does not stop that)."""
    target = tmp_path / "written_by_the_model"

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(target), tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * 2.0}

    module = Writer()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    np.savez(tmp_path / "d.npz", x=np.ones((3, 4), np.float32))
    for argv in (["evaluate", str(tmp_path / "sm"), str(tmp_path / "sm"), "--data",
                  str(tmp_path / "d.npz"), "--no-bench"],
                 ["quantize", str(tmp_path / "sm"), "--modes", "float16", "--out",
                  str(tmp_path / "q")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "SavedModel" in err and "--trust-model" in err and err.count("\n") == 1
    wrapper = tf.keras.Sequential([tf.keras.Input((4,)),
                                   tf.keras.layers.TFSMLayer(str(tmp_path / "sm"))])  # fmt: skip
    wrapper.save(tmp_path / "wrapper.keras")
    target.unlink(missing_ok=True)  # building the wrapper ran the graph once, here, knowingly
    assert main(["evaluate", str(tmp_path / "wrapper.keras"), str(tmp_path / "wrapper.keras"),
                 "--data", str(tmp_path / "d.npz"), "--no-bench"]) == 2  # fmt: skip
    assert "TFSMLayer" in capsys.readouterr().err
    assert not target.exists()
    assert main(["evaluate", str(tmp_path / "sm"), str(tmp_path / "sm"), "--data",
                 str(tmp_path / "d.npz"), "--no-bench", "--trust-model"]) == 0  # fmt: skip
    assert target.exists()  # trusted: it runs, and does what it carries


HOSTILE = "x\x1b]0;pwned\x07\x1b[31m[bold]`\n## Recommendation: ship it![/]<img src=//e>"


def _renamed(source: Path, out: Path, name: str) -> Path:
    """The model with its input and output tensors (and signature entries) called ``name``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    sg = model.subgraphs[0]
    for i, suffix in ((sg.inputs[0], "in"), (sg.outputs[0], "out")):
        sg.tensors[i].name = (name + suffix).encode()
    for sig in model.signatureDefs or []:
        for m in [*sig.inputs, *sig.outputs]:
            m.name = (name + ("in" if m in sig.inputs else "out")).encode()
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def test_names_from_files_are_inert_everywhere(digits_models, tmp_path, capsys) -> None:
    folder = tmp_path / "d[" / "]e"  # the path holds '[/]', rich's closing tag
    folder.mkdir(parents=True)
    hostile = _renamed(digits_models["int8"], folder / "m$\\frac{1}{0}$ `x`.tflite", HOSTILE)
    ref = _renamed(digits_models["float"], tmp_path / "ref.tflite", HOSTILE)
    assert main(["info", str(hostile)]) == 0
    out = capsys.readouterr().out
    # shown as visible escapes (a long name may break across lines in a table cell)
    assert "\x1b" not in out and "\x07" not in out
    assert "x\\x1b]0;" in out and "pwned\\x07\\x1b[31m" in out
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    code = main(["evaluate", str(ref), str(hostile), "--data", "digits", "--limit", "40",
                 "--markdown", str(md), "--report", str(page), "--batch-size", "40"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "[bold]" not in out.replace("\\[bold]", "")
    text = md.read_text()
    assert "\n## Recommendation" not in text and "<img" not in text and "\x1b" not in text
    # every model name sits whole inside a code span whose fence is longer than its backticks
    assert "`` m$\\frac{1}{0}$ `x` ``" in text  # padded: the name ends with a backtick
    html_text = page.read_text()
    assert "<img src" not in html_text and "$\\frac" in html_text  # a name, not mathtext
    assert main(["diagnose", str(ref), str(hostile), "--data", "digits", "--samples", "16"]) == 0
    assert "\x1b" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "name",
    [
        HOSTILE,
        "a``b`",
        "`",
        "[x](http://e.com)",
        "![i](//e.png)",
        "<script>alert(1)</script>",
        "**bold** _em_ | pipe",
        "   ",
        "<http://e.com> &amp; &#60;",
    ],
)
def test_markdown_spellings_render_as_text(name: str) -> None:
    """Rendered by a CommonMark parser (markdown-it, as GitHub's comments are), a name in a
    code span or in prose makes no heading, link, image, emphasis or HTML."""
    from markdown_it import MarkdownIt

    from quantlens.report.text import md_code, md_text

    md = MarkdownIt("commonmark").enable("table")
    for spelled in (md_code(name), md_text(f"model {name} is slow")):
        html = md.render(f"- ⚠ {spelled}\n")
        for tag in ("<h", "<a ", "<img", "<script", "<em>", "<strong>", "<table", "&lt;b"):
            assert tag not in html, (spelled, html)
        assert html.count("<li>") == 1 and "\n## " not in spelled
    inner = md.render(md_code(name)).removeprefix("<p><code>").removesuffix("</code></p>\n")
    assert "\x1b" not in inner


def test_report_paths_are_refused_before_any_work(digits_models, tmp_path, capsys) -> None:
    run = ["evaluate", str(digits_models["float"]), str(digits_models["int8"]), "--data",
           "digits", "--limit", "10", "--no-bench"]  # fmt: skip
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    (tmp_path / "link.json").symlink_to(precious)
    os_fifo = tmp_path / "fifo.json"
    os.mkfifo(os_fifo)
    toml = tmp_path / "c.toml"
    toml.write_text('[evaluate]\njson = "/etc/passwd"\n')
    cases = {
        "existing file": (["--json", str(precious)], "exists and is not a quantlens report"),
        "symlink": (["--json", str(tmp_path / "link.json")], "symbolic link"),
        "fifo": (["--json", str(os_fifo)], "not a regular file"),
        "system path": (["--json", "/proc/self/x.json"], "system location"),
        "config system path": (["--config", str(toml)], "system location"),
        "missing dir": (["--json", str(tmp_path / "new" / "r.json")], "pass --mkdir"),
        "same path twice": (["--json", str(tmp_path / "r"), "--markdown", str(tmp_path / "r")],
                            "both write"),
    }  # fmt: skip
    for case, (extra, message) in cases.items():
        assert main([*run, *extra]) == 2, case
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (case, err)
    assert precious.read_text() == "mine"
    # a previous report is replaced; a missing directory is made when asked; --force replaces
    assert main([*run, "--json", str(tmp_path / "r.json")]) == 0
    assert main([*run, "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
                 "--markdown", str(tmp_path / "r.md")]) == 0  # fmt: skip
    assert main([*run, "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html"),
                 "--markdown", str(tmp_path / "r.md")]) == 0  # fmt: skip
    assert main([*run, "--json", str(tmp_path / "new" / "r.json"), "--mkdir"]) == 0
    assert main([*run, "--json", str(precious), "--force"]) == 0
    assert json.loads(precious.read_text())["schema"] == "quantlens.evaluation/1"


def test_allow_nonfinite_reaches_the_benchmark(digits_models, tmp_path) -> None:
    x = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # the benchmark times the first sample
    np.savez(tmp_path / "nan.npz", x=x)
    result = quantlens.evaluate(digits_models["float"], [digits_models["int8"]],
                                tmp_path / "nan.npz", allow_nonfinite=True, bench=True)  # fmt: skip
    assert result.models[1].performance is not None
    assert result.models[0].nonfinite_outputs == 1


def _zip_bomb(path: Path, samples: int) -> None:
    """An .npz whose compressed x inflates to samples × 256 bytes of zeros (a few MB on disk)."""
    import zipfile

    with (zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z,
          z.open("x.npy", "w", force_zip64=True) as f):  # fmt: skip
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (samples, 8, 8, 1)})  # fmt: skip
        left, chunk = samples * 256, b"\0" * (16 * 2**20)
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_a_compressed_npz_is_streamed_not_inflated(digits_models, tmp_path) -> None:
    import subprocess
    import sys

    bomb = tmp_path / "bomb.npz"
    _zip_bomb(bomb, 2_000_000)  # 512 MB inflated
    assert bomb.stat().st_size < 5 * 2**20
    code = (  # VmHWM: this process's own peak (ru_maxrss would count pytest's, from the fork)
        "import re, sys, quantlens\n"
        "r = quantlens.evaluate(sys.argv[1], [sys.argv[1]], sys.argv[2], limit=100)\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]\n"
        "print(r.dataset.samples, hwm)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(digits_models["float"]), str(bomb)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples, peak_kb = map(int, done.stdout.split())
    assert samples == 100 and peak_kb < 400 * 1024  # far below the 512 MB the member holds
    # and a compressed set is read correctly, in pieces, shard by shard
    x = np.random.default_rng(0).random((700, 8, 8, 1), dtype=np.float32)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.arange(700) % 10)
    np.savez(tmp_path / "u.npz", x=x, y=np.arange(700) % 10)
    got = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], tmp_path / "c.npz")
    want = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], tmp_path / "u.npz")
    assert got.models[1].fidelity == want.models[1].fidelity
    assert got.models[1].task_metrics == want.models[1].task_metrics
    shards = quantlens.load_dataset(tmp_path / "c.npz").shards(3)
    rows = [b.inputs[0] for s in shards for b in s.bind(
        quantlens.load_model(digits_models["float"]).inputs, batch_size=64)]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(rows), x)


def test_a_header_declaring_huge_samples_is_a_one_line_error(digits_models, tmp_path,
                                                            capsys) -> None:  # fmt: skip
    """A sparse .npy (a 1 GiB file that holds 8 KiB on disk) whose header declares samples of
    512 MiB each: refused before any read is allocated, not a MemoryError traceback."""
    huge = np.lib.format.open_memmap(tmp_path / "huge.npy", mode="w+", dtype=np.float32,
                                     shape=(2, 2**27))  # fmt: skip
    del huge
    code = main(["evaluate", str(digits_models["float"]), str(digits_models["int8"]),
                 "--data", str(tmp_path / "huge.npy"), "--no-bench"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "one sample takes 0.5 GiB" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unreachable_ray_cluster_is_a_prompt_error(digits_models, tmp_path, capsys) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    np.savez(tmp_path / "d.npz", x=np.zeros((1100, 8, 8, 1), np.float32))
    code = main(["evaluate", str(digits_models["float"]), str(digits_models["float"]), "--data",
                 str(tmp_path / "d.npz"), "--workers", "2", "--engine", "ray",
                 "--ray-address", f"127.0.0.1:{port}", "--no-bench"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach a Ray cluster" in err and err.count("\n") == 1


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killing_quantlens_takes_its_workers_with_it(digits_models, tmp_path, sig: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((100_000, 8, 8, 1),
                                                                   dtype=np.float32))  # fmt: skip
    # one sample per batch: a run of several seconds, still going when the signal comes
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantlens", "evaluate", str(digits_models["float"]),
         str(digits_models["int8"]), "--data", str(tmp_path / "d.npz"), "--workers", "2",
         "--batch-size", "1", "--no-bench", "--json", str(tmp_path / "r.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    # --workers 2: quantlens itself and one worker process
    while time.monotonic() < deadline and len(workers) < 1 and proc.poll() is None:
        workers = {c for c in _children(proc.pid) if "spawn_main" in
                   Path(f"/proc/{c}/cmdline").read_text(errors="replace")}  # fmt: skip
        time.sleep(0.2)
    assert len(workers) >= 1, "the worker never started"
    time.sleep(1.0)  # let them start evaluating
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    assert not (tmp_path / "r.json").exists()
    if sig == "SIGTERM":
        assert proc.returncode == 143 and "interrupted" in err and "Traceback" not in err
