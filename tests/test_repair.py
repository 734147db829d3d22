"""diagnose --suggest on a real quantizer (litert-quantizer) and a planted bad weight: the
search blames the weights, keeps that op's weights in float (a cheaper precision that keeps
int8 weights does not help), meets the budget, writes a manifest of exactly its plan, and
compare evaluates the repaired model beside the variants; every number equals a plain
one-sample LiteRT loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quantlens.cli import main
from tests.conftest import four_dense
from tests.test_models import hand_run

BADW = "badw_1/MatMul"


@pytest.fixture(scope="module")
def bad_weight(tf, tmp_path_factory) -> dict[str, Path]:
    """An MLP whose layer 'badw' has one input row of weights a thousand times the others;
    that row multiplies a channel that is always exactly zero (a ReLU of -1), so the float
    model never feels it, but per-channel int8 weights spend their whole range on it and
    round every other weight of the layer to zero. Every sample spans [-1, 1] (features 1
    and 2), so the quantizer's calibration covers the inputs."""
    from quantlens.quantize import quantize

    model = four_dense(tf, "badw")
    k, b = model.get_layer("d1").get_weights()
    k[:, 0], b[0] = 0.0, -1.0
    model.get_layer("d1").set_weights([k, b])
    k, b = model.get_layer("badw").get_weights()
    k[0, :] = 1000.0
    model.get_layer("badw").set_weights([k, b])
    x = np.random.default_rng(0).uniform(-1, 1, size=(600, 16)).astype(np.float32)
    x[:, 1], x[:, 2] = -1.0, 1.0
    out = tmp_path_factory.mktemp("badw")
    np.savez(out / "data.npz", x=x[:300])
    np.savez(out / "calibration.npz", x=x[300:])
    model.save(out / "badw.keras")
    made = quantize(out / "badw.keras", ["float32"], out)
    source = Path(made.variant("float32").path)
    made = quantize(source, ["int8"], out / "q", calibration=out / "calibration.npz")
    return {"float": source, "int8": Path(made.variant("int8").path), "data": out / "data.npz",
            "calibration": out / "calibration.npz"}  # fmt: skip


def _sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((candidate - reference) ** 2).sum()))


def test_a_planted_bad_weight_is_kept_in_float_and_the_repair_is_measured_true(
    capsys, bad_weight, tmp_path
) -> None:
    report = tmp_path / "d.json"
    code = main(["diagnose", str(bad_weight["float"]), str(bad_weight["int8"]), "--data",
                 str(bad_weight["data"]), "--calibration", str(bad_weight["calibration"]),
                 "--suggest", "--budget-metric", "sqnr", "--max-drop", "0.1", "--out",
                 str(tmp_path / "out"), "--json", str(report)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    s = json.loads(report.read_text())["suggestion"]
    assert s["met_budget"] is True and set(s["precisions"]) == {"float", "int16-act",
                                                                 "int8-weights"}  # fmt: skip
    base = s["steps"][0]["drop"]

    def alone(precision: str) -> float:
        return next(r["drop"] for r in s["rankings"]["sensitivity"]
                    if BADW in r["tensor"] and r["precision"] == precision)  # fmt: skip

    # the cause is the weights: keeping them int8 (with float or int16 activations) does
    # nothing, float weights do; and the weights alone (activations float) lose as much
    assert alone("int8-weights") == pytest.approx(base, rel=0.05)
    assert alone("int16-act") == pytest.approx(base, rel=0.05)
    assert alone("float") < 0.5 * base
    weights = next(c for c in s["sources"] if c["source"] == "weights")
    assert weights["drop"] == pytest.approx(base, rel=0.1)
    kept = {k["tensor"]: k["precision"] for k in s["kept"]}
    assert any(BADW in name and p == "float" for name, p in kept.items())

    # the suggested model's SQNR is a plain loop's, and it is smaller than the float model
    data = np.load(bad_weight["data"])["x"]
    (reference,) = hand_run(bad_weight["float"], [data])
    (repaired,) = hand_run(s["model"], [data])
    chosen = next(st for st in s["steps"] if st["step"] == s["model_step"])
    assert chosen["metric"] == pytest.approx(_sqnr(reference, repaired), abs=1e-3)
    assert _sqnr(reference, repaired) >= 20.0
    assert Path(s["model"]).stat().st_size < bad_weight["float"].stat().st_size

    # the manifest says exactly what the model keeps, and at which precision
    manifest = json.loads(Path(s["manifest"]).read_text())
    assert manifest["schema"] == "quantlens.repair/1" and manifest["mode"] == "int8"
    assert {k["name"]: k["precision"] for k in manifest["kept"]} == kept
    assert manifest["budget"] == {"metric": "sqnr", "max_drop": 0.1, "met": True}
    recipe = manifest["quantizer_settings"]["recipe"]
    assert any(e.get("algorithm_key") == "no_quantize" and BADW in e["regex"].replace("\\", "")
               for e in recipe)  # fmt: skip

    # compare evaluates it beside the variants it makes, named by its manifest
    cmp_json = tmp_path / "c.json"
    code = main(["compare", str(bad_weight["float"]), "--data", str(bad_weight["data"]),
                 "--calibration", str(bad_weight["calibration"]), "--modes", "int8",
                 "--with", s["model"], "--no-bench", "--out", str(tmp_path / "cmp"),
                 "--json", str(cmp_json)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    models = json.loads(cmp_json.read_text())["models"]
    theirs = next(m for m in models if m["path"] == s["model"])
    assert theirs["quantization"]["mode"] == "int8 + kept"
    assert theirs["fidelity"]["sqnr_db"] == pytest.approx(chosen["metric"], abs=1e-6)
    ours = next(m for m in models if (m.get("quantization") or {}).get("mode") == "int8")
    (int8,) = hand_run(ours["path"], [data])
    assert ours["fidelity"]["sqnr_db"] == pytest.approx(_sqnr(reference, int8), abs=1e-3)
