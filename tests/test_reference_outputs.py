"""Golden outputs: ``evaluate --save-reference-outputs`` stores what a plain one-sample LiteRT
loop gives, with digests anyone can recompute; ``--reference-outputs`` evaluates candidates
against them without the reference model to the same numbers as running it, refuses other
data before any model runs, works across workers, gates, and survives crafted files."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import quantlens
from quantlens.cli import main
from quantlens.errors import ConfigError, DataError, ModelLoadError
from quantlens.models.stored import Recorder, load_reference_outputs
from tests.test_models import hand_run


@pytest.fixture()
def setup(digits_models, digits_split, tmp_path):
    """The float model copied where it can be deleted, its int8 variant, a labelled set."""
    x, y = digits_split[2][:150], digits_split[3][:150]
    data = tmp_path / "test.npz"
    np.savez(data, x=x, y=y)
    ref = tmp_path / "float.tflite"
    shutil.copy(digits_models["float"], ref)
    return {"ref": ref, "int8": digits_models["int8"], "data": data, "x": x, "y": y,
            "dir": tmp_path}  # fmt: skip


def _sqnr(ref: np.ndarray, cand: np.ndarray) -> float:
    ref, cand = ref.astype(np.float64), cand.astype(np.float64)
    return float(10 * np.log10((ref**2).sum() / ((ref - cand) ** 2).sum()))


def _digest(sample: np.ndarray) -> bytes:
    """The documented per-sample digest, computed here from its description."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{sample.dtype.str}{sample.shape}".encode())
    h.update(np.ascontiguousarray(sample).tobytes())
    return h.digest()


def test_stored_outputs_are_the_plain_loops_and_replace_the_reference(setup, capsys) -> None:
    s = setup
    golden, saved_json = s["dir"] / "golden.npz", s["dir"] / "s.json"
    json_path = s["dir"] / "a.json"
    code = main(["evaluate", str(s["ref"]), "--data", str(s["data"]), "--no-bench",
                 "--batch-size", "16", "--save-reference-outputs", str(golden),
                 "--json", str(saved_json)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "--reference-outputs" in " ".join(capsys.readouterr().out.split())

    # what the file holds, read with plain NumPy and checked against independent work
    (ref_out,) = hand_run(s["ref"], [s["x"]])
    with np.load(golden) as z:
        meta = json.loads(z["quantlens.json"])
        np.testing.assert_allclose(z["output_0"], ref_out, rtol=1e-6, atol=1e-6)
        digests = z["digests"]
    assert [bytes(d) for d in digests] == [_digest(x) for x in s["x"]]
    stored = meta["stored"]
    assert stored["samples"] == len(s["x"])
    assert stored["data_digest"] == hashlib.sha256(digests.tobytes()).hexdigest()
    assert stored["model_sha256"] == hashlib.sha256(s["ref"].read_bytes()).hexdigest()
    saved = json.loads(saved_json.read_text())["reference_outputs"]
    assert saved["role"] == "saved" and saved["data_digest"] == stored["data_digest"]

    ref_size = s["ref"].stat().st_size
    s["ref"].unlink()  # the reference is not needed any more
    code = main(["evaluate", "--reference-outputs", str(golden), str(s["int8"]), "--data",
                 str(s["data"]), "--no-bench", "--json", str(json_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(json_path.read_text())
    ref_m, cand_m = report["models"]
    (cand_out,) = hand_run(s["int8"], [s["x"]])
    assert cand_m["fidelity"]["sqnr_db"] == pytest.approx(_sqnr(ref_out, cand_out), rel=1e-5)
    agree = (ref_out.argmax(1) == cand_out.argmax(1)).mean()
    assert cand_m["fidelity"]["top1_agreement"] == pytest.approx(agree)
    assert ref_m["task_metrics"]["accuracy"] == pytest.approx((ref_out.argmax(1) == s["y"]).mean())
    assert cand_m["task_metrics"]["accuracy"] == pytest.approx(
        (cand_out.argmax(1) == s["y"]).mean()
    )
    assert ref_m["format"] == "stored" and ref_m["path"] == str(golden)
    assert ref_m["size_bytes"] == ref_size  # the reference's own, for the size ratios
    assert report["reference_outputs"]["role"] == "loaded"
    assert report["reference_outputs"]["model_sha256"] == stored["model_sha256"]
    assert "paired" in cand_m  # the paired tests use the stored reference's labels too


def test_the_same_numbers_as_running_the_reference(setup) -> None:
    s = setup
    golden = s["dir"] / "golden.npz"
    direct = quantlens.evaluate(s["ref"], [s["int8"]], s["data"], bench=False, batch_size=16,
                                save_reference_outputs=golden)  # fmt: skip
    replay = quantlens.evaluate(load_reference_outputs(golden), [s["int8"]], s["data"],
                                bench=False, batch_size=7)  # fmt: skip
    for a, b in zip(direct.models, replay.models, strict=True):
        assert a.name == b.name
        assert a.task_metrics == pytest.approx(b.task_metrics)
        assert (a.fidelity or {}) == pytest.approx(b.fidelity or {})
        assert (a.distribution or {}) == pytest.approx(b.distribution or {})
    assert replay.models[1].paired == pytest.approx(direct.models[1].paired)
    assert direct.settings["workers"] == 1  # recording runs in this process


def test_other_data_is_refused_before_any_model_runs(setup, capsys) -> None:
    s = setup
    golden = s["dir"] / "golden.npz"
    quantlens.evaluate(s["ref"], [], s["data"], bench=False, save_reference_outputs=golden)
    x, y = s["x"], s["y"]
    changed = x.copy()
    changed[37, 3, 3, 0] += 1e-3
    variants = {
        "reordered": ({"x": x[::-1], "y": y[::-1]}, [], "sample 0 of"),
        "one value": ({"x": changed, "y": y}, [], "sample 37 of"),
        "float64": ({"x": x.astype(np.float64), "y": y}, [], "sample 0 of"),
        "more": ({"x": np.concatenate([x, x[:5]]), "y": np.concatenate([y, y[:5]])}, [],
                 "on 150 samples; the data gives 155"),
        "limit": ({"x": x, "y": y}, ["--limit", "100"], "the data gives 100 (--limit 100)"),
    }  # fmt: skip
    for name, (arrays, extra, said) in variants.items():
        data = s["dir"] / f"{name.replace(' ', '_')}.npz"
        np.savez(data, **arrays)
        out = s["dir"] / f"{name.replace(' ', '_')}.json"
        code = main(["evaluate", "--reference-outputs", str(golden), str(s["int8"]), "--data",
                     str(data), "--no-bench", "--json", str(out), *extra])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, name
        assert said in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert not out.exists(), name  # no report
    # the API refuses the same way
    with pytest.raises(DataError, match="sample 37"):
        quantlens.evaluate(load_reference_outputs(golden), [s["int8"]], {"x": changed, "y": y},
                           bench=False)  # fmt: skip
    # data read once cannot be checked first, so it is refused
    batches = ((x[i : i + 50], y[i : i + 50]) for i in range(0, len(x), 50))
    with pytest.raises(ConfigError, match="read twice"):
        quantlens.evaluate(load_reference_outputs(golden), [s["int8"]], batches, bench=False)


def test_across_workers(digits_models, digits_split, tmp_path, workers_for_any_work) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([digits_split[2]] * 4)[:1100]
    x = (x + rng.normal(0, 0.01, x.shape)).astype(np.float32)
    y = np.concatenate([digits_split[3]] * 4)[:1100]
    data = tmp_path / "big.npz"
    np.savez(data, x=x, y=y)
    golden = tmp_path / "golden.npz"
    inline = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], data,
                                bench=False, workers=2, save_reference_outputs=golden)  # fmt: skip
    sharded = quantlens.evaluate(load_reference_outputs(golden), [digits_models["int8"]], data,
                                 bench=False, workers=2)  # fmt: skip
    assert sharded.settings["workers"] == 2 and inline.settings["workers"] == 1
    assert sharded.models[1].fidelity == pytest.approx(inline.models[1].fidelity, rel=1e-9)
    assert sharded.models[1].task_metrics == pytest.approx(inline.models[1].task_metrics)


def test_a_ci_gates_a_candidate_against_stored_outputs(setup, capsys) -> None:
    s = setup
    golden = s["dir"] / "golden.npz"
    result = quantlens.evaluate(s["ref"], [s["int8"]], s["data"], bench=False,
                                save_reference_outputs=golden)  # fmt: skip
    sqnr = result.models[1].fidelity["sqnr_db"]
    base = ["evaluate", "--reference-outputs", str(golden), str(s["int8"]), "--data",
            str(s["data"]), "--no-bench"]  # fmt: skip
    assert main([*base, "--fail-on", f"sqnr_db<{sqnr - 1:.3f}"]) == 0
    assert main([*base, "--fail-on", f"sqnr_db<{sqnr + 1:.3f}"]) == 1
    capsys.readouterr()


def test_benchmark_times_the_candidates_only(setup) -> None:
    s = setup
    golden = s["dir"] / "golden.npz"
    quantlens.evaluate(s["ref"], [], s["data"], bench=False, save_reference_outputs=golden)
    result = quantlens.evaluate(load_reference_outputs(golden), [s["int8"]], s["data"], bench=True)
    ref, cand = result.models
    assert ref.performance is None
    assert cand.performance is not None and cand.performance.latency_ms["p50"] > 0
    assert cand.performance.speedup is None  # nothing ran to be faster than


def test_outputs_whose_shape_varies_cannot_be_stored(digits_models, tmp_path) -> None:
    model = quantlens.load_model(digits_models["float"])
    recorder = Recorder(model, tmp_path / "never.npz")

    def varying(inputs):
        return [np.zeros((len(inputs[0]), 10 + len(inputs[0])), np.float32)]

    recorder._model = type("M", (), {"predict": staticmethod(varying)})()
    recorder.predict([np.zeros((2, 8, 8, 1), np.float32)])
    with pytest.raises(ConfigError, match="shape varies"):
        recorder.predict([np.zeros((3, 8, 8, 1), np.float32)])
    recorder.close()


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a golden file member by member, letting ``change(name, data)`` alter each
    (return None to drop it, or (data, compress_type))."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            got = change(info.filename, zin.read(info))
            if got is not None:
                data, kind = got
                zout.writestr(info.filename, data, compress_type=kind)


def test_crafted_files_are_refused_in_one_line(setup, capsys) -> None:
    s = setup
    golden = s["dir"] / "golden.npz"
    quantlens.evaluate(s["ref"], [], s["data"], bench=False, save_reference_outputs=golden)
    stored = zipfile.ZIP_STORED

    def meta_edit(edit):
        def change(name, data):
            if name != "quantlens.json":
                return data, stored
            meta = json.loads(data)
            edit(meta)
            return json.dumps(meta).encode(), stored

        return change

    def longer_shape(meta):
        meta["outputs"][0]["shape"] = [1000]

    def more_samples(meta):
        meta["stored"]["samples"] = 10**6

    def object_dtype(meta):
        meta["outputs"][0]["dtype"] = "|O"

    def long_path(meta):
        meta["stored"]["model_path"] = "x" * 100_000

    def other_digest(meta):
        meta["stored"]["data_digest"] = "0" * 64

    def truncate(name, data):
        return (data[: len(data) // 2], stored) if name == "output_0.npy" else (data, stored)

    cases = {  # each refused for its own reason
        "not a zip": (None, "not a zip"),
        "no metadata": (lambda n, d: None if n == "quantlens.json" else (d, stored),
                        "no 'quantlens.json'"),
        "metadata not JSON": (lambda n, d: (b"{", stored) if n == "quantlens.json"
                              else (d, stored), "Expecting property name"),
        "other schema": (meta_edit(lambda m: m.update(schema="quantlens.evaluation/1")),
                         "expected 'quantlens.reference-outputs/1'"),
        "deflated outputs": (lambda n, d: (d, zipfile.ZIP_DEFLATED if n.startswith("output")
                                           else stored), "is compressed"),
        "shape that overruns": (meta_edit(longer_shape), "the metadata says float32[150, 1000]"),
        "more samples than stored": (meta_edit(more_samples), "says uint8[1000000, 16]"),
        "object outputs": (meta_edit(object_dtype), "not numbers"),
        "a path of 100,000 characters": (meta_edit(long_path), "longer than 4096"),
        "digest that does not add up": (meta_edit(other_digest), "do not give the data digest"),
        "truncated member": (truncate, "shorter than the (150, 10) float32 array"),
    }  # fmt: skip
    for name, (change, reason) in cases.items():
        bad = s["dir"] / f"bad_{name.replace(' ', '_')}.npz"
        if change is None:
            bad.write_bytes(b"PK\x03\x04 not really a zip")
        else:
            _rewrite(golden, bad, change)
        with pytest.raises(ModelLoadError, match=re.escape(reason)):
            load_reference_outputs(bad)
        code = main(["evaluate", "--reference-outputs", str(bad), str(s["int8"]), "--data",
                     str(s["data"]), "--no-bench"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)
