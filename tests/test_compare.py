"""Paired statistics against hand-computed cases, the recommendation rule, and compare
end to end on a tiny fixture model."""

from __future__ import annotations

import dataclasses
import json
from math import comb
from pathlib import Path

import numpy as np
import pytest

import quantlens
from quantlens.cli import main
from quantlens.compare import recommend
from quantlens.metrics.paired import paired_classification, paired_regression, significantly_worse
from quantlens.results import (
    DatasetSummary,
    EvaluationResult,
    ModelResult,
    Performance,
    VariantQuantization,
)


def contingency(both: int, to_wrong: int, to_right: int, neither: int) -> tuple[np.ndarray, ...]:
    ref = np.array([1] * both + [1] * to_wrong + [0] * to_right + [0] * neither, dtype=bool)
    cand = np.array([1] * both + [0] * to_wrong + [1] * to_right + [0] * neither, dtype=bool)
    return ref, cand


def test_mcnemar_exact_on_a_known_table() -> None:
    ref, cand = contingency(80, 10, 2, 8)
    got = paired_classification(ref, cand)
    # exact two-sided binomial test of 2 successes in 12 fair trials, written out by hand
    expected_p = 2 * sum(comb(12, k) for k in range(3)) / 2**12
    assert got.p_value == pytest.approx(expected_p)  # 0.0386
    assert (got.correct_to_wrong, got.wrong_to_correct) == (10, 2)
    assert got.delta == pytest.approx(-0.08)
    assert got.samples == 100 and got.resamples == 2000
    # the percentile bootstrap agrees with the normal approximation of the paired difference
    d = cand.astype(float) - ref.astype(float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert got.ci95_low == pytest.approx(d.mean() - half, abs=0.015)
    assert got.ci95_high == pytest.approx(d.mean() + half, abs=0.015)
    assert got.ci95_high < 0 and significantly_worse(got)


def test_identical_models_have_an_interval_on_zero_and_p_of_one() -> None:
    ref, _ = contingency(90, 0, 0, 10)
    got = paired_classification(ref, ref)
    assert got.ci95_low <= 0 <= got.ci95_high
    assert got.p_value == 1.0 and not significantly_worse(got)


def test_balanced_flips_are_not_significant() -> None:
    got = paired_classification(*contingency(80, 5, 5, 10))
    assert got.delta == 0 and got.p_value == pytest.approx(1.0)
    assert got.ci95_low < 0 < got.ci95_high and not significantly_worse(got)


def test_paired_regression() -> None:
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    ref = np.abs(rng.normal(size=300))
    cand = ref + rng.normal(0.05, 0.1, size=300)
    got = paired_regression(ref, cand)
    assert got.delta == pytest.approx(np.mean(cand) - np.mean(ref))
    assert got.p_value == pytest.approx(wilcoxon(cand, ref).pvalue)
    assert got.ci95_low < got.delta < got.ci95_high
    assert got.ci95_low > 0 and significantly_worse(got)
    same = paired_regression(ref, ref)
    assert same.p_value == 1.0 and same.ci95_low == same.ci95_high == 0.0


def test_damaged_model_interval_excludes_zero(tf, convert, digits_models, digits_split, tmp_path):
    model = tf.keras.models.load_model(digits_models["keras"])
    kernel, bias = model.layers[-1].get_weights()
    rng = np.random.default_rng(0)
    model.layers[-1].set_weights([kernel + rng.normal(0, 2 * kernel.std(), kernel.shape), bias])
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(convert(model))
    result = quantlens.evaluate(digits_models["float"], [damaged, digits_models["float"]], "digits")
    bad = result.models[1].paired
    same = result.models[2].paired
    assert bad.ci95_high < 0 and bad.p_value < 0.05
    acc = result.models[1].task_metrics["accuracy"] - result.models[0].task_metrics["accuracy"]
    assert bad.delta == pytest.approx(acc)
    assert same.ci95_low <= 0 <= same.ci95_high and same.p_value == 1.0


def _model(
    name: str, size: int, acc: float, p50: float, mode: str | None,
    speedup_ci: tuple[float, float] | None = None, io: str | None = None,
) -> ModelResult:  # fmt: skip
    perf = Performance({"p50": p50}, 1.0, None, size, 1.0 / p50, speedup_ci95=speedup_ci)
    quantization = VariantQuantization(mode, {}, io) if mode else None
    return ModelResult(name, f"{name}.tflite", "tflite", "candidate" if mode else "reference",
                       size, {"accuracy": acc}, None, (), perf, None, quantization)  # fmt: skip


def test_recommendation_rule() -> None:
    models = (
        _model("ref", 1000, 0.90, 5.0, None),
        _model("f32", 400, 0.90, 1.0, "float32"),
        _model("f16", 200, 0.899, 1.1, "float16", (0.85, 1.02)),  # slower, within the noise
        _model("i8", 100, 0.885, 0.5, "int8"),  # 1.5 points lost: too much
        _model("dyn", 110, 0.895, 1.5, "dynamic", (0.6, 0.7)),  # within 1 point, slower
    )
    result = EvaluationResult(DatasetSummary("d", 1000, "classification"), "ref", models)
    rec = recommend(result, "f32", 0.01)
    # dyn is the smallest within the budget, but significantly slower than float: held back
    assert rec.model == "f16" and rec.slower_than_float == ("dyn",)
    assert "significantly slower than the float model: dyn" in rec.reason
    assert "50% of the float model's size" in rec.reason  # 200 / 400
    assert "a drop of 0.1 accuracy points" in rec.reason
    # when every acceptable variant is slower, the smallest is still the answer
    only_slow = EvaluationResult(result.dataset, "ref", (models[0], models[4]))
    slow = recommend(only_slow, "ref", 0.01)
    assert slow.model == "dyn" and "significantly slower" not in slow.reason
    assert "0.67× the float model's speed [95% CI 0.60–0.70]" in slow.reason
    assert "a drop of 0.5 accuracy points" in slow.reason
    assert recommend(result, "f32", 0.02).model == "i8"
    assert recommend(result, "f32", 0.01, prefer="latency").model == "f32"
    none = EvaluationResult(result.dataset, "ref", (models[0], models[3]))
    assert recommend(none, "ref", 0.001).model == "ref"


def test_unlabelled_drops_are_named_by_what_they_count() -> None:
    """With no labels the drop is 1 − top-1 agreement for class outputs and the relative
    RMSE (10^(−SQNR/20)) for any other (an embedding, a mask): the recommendation and the
    legend say which (a 38 dB embedding read "1.00% disagreement" as its allowed drop)."""
    from quantlens.report.formats import compare_legend

    def unlabelled(name, size, fidelity, mode):
        m = _model(name, size, 0.0, 1.0, mode)
        return dataclasses.replace(m, task_metrics=None, fidelity=fidelity)

    ref = unlabelled("ref", 1000, None, None)
    rmse = (unlabelled("w8", 300, {"sqnr_db": 38.2}, "weight-only-int8"),
            unlabelled("f16", 500, {"sqnr_db": 80.0}, "float16"))  # fmt: skip
    result = EvaluationResult(DatasetSummary("d", 256, "none"), "ref", (ref, *rmse))
    rec = recommend(result, "ref", 0.01)
    assert rec.model == "f16"  # 38.2 dB is a relative RMSE of 1.23%, over the budget
    assert "1.00% RMS error relative to the reference" in rec.reason
    assert "disagreement" not in rec.reason
    assert "allowed 1.00% RMS error relative to the reference" in compare_legend(
        dataclasses.replace(result, recommendation=rec)
    )
    classes = unlabelled("i8", 300, {"sqnr_db": 30.0, "top1_agreement": 0.995}, "int8")
    result = EvaluationResult(DatasetSummary("d", 256, "none"), "ref", (ref, classes))
    rec = recommend(result, "ref", 0.01)
    assert rec.model == "i8" and "0.50% disagreement with the reference" in rec.reason


def test_recommendation_weighs_speed_and_the_io_contract() -> None:
    models = (
        _model("ref", 1000, 0.90, 5.0, None),
        _model("f32", 400, 0.90, 1.0, "float32", (1.0, 1.0)),
        _model("int8io", 100, 0.90, 0.5, "int8-io", (1.9, 2.1), io="float32 -> int8"),
        _model("dyn", 104, 0.90, 1.0, "dynamic", (0.9, 1.1)),  # smallest float-I/O, as float
        _model("int8", 110, 0.90, 0.5, "int8", (1.9, 2.1)),  # 6% larger, four times faster
    )
    result = EvaluationResult(DatasetSummary("d", 1000, "classification"), "ref", models)
    rec = recommend(result, "f32", 0.01)
    assert rec.model == "int8"  # not int8io: it changes the I/O contract
    assert "int8io" in rec.reason and "--allow-io-change" in rec.reason
    assert "significantly faster" in rec.reason and rec.io_change == ("int8io",)
    assert recommend(result, "f32", 0.01, allow_io_change=True).model == "int8io"
    # without evidence that it is faster, the smallest stays the choice
    noisy = tuple(_model(m.name, m.size_bytes, 0.90, 0.5, "int8", (0.3, 2.5))
                  if m.name == "int8" else m for m in models)  # fmt: skip
    assert recommend(EvaluationResult(result.dataset, "ref", noisy), "f32", 0.01).model == "dyn"


def test_compare_cli_end_to_end(capsys, tmp_path, digits_models) -> None:
    out = tmp_path / "compare.json"
    modes = ["--modes", "float16,dynamic,int8"]
    code = main(["compare", str(digits_models["keras"]), "--data", "digits", *modes,
                 "--out", str(tmp_path / "variants"), "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "recommendation:" in captured.out
    report = json.loads(out.read_text())
    assert report["schema"] == "quantlens.compare/1"
    assert report["settings"]["calibration"] == "digits:train"
    names = [m["name"] for m in report["models"]]
    assert names[0] == "cnn" and {"cnn_float32", "cnn_float16", "cnn_dynamic", "cnn_int8"} <= set(
        names
    )
    ref = report["models"][0]
    for m in report["models"][1:]:
        assert m["quantization"]["mode"] in ("float32", "float16", "dynamic", "int8")
        assert m["quantization"]["settings"]["tool"].startswith("tf.lite.TFLiteConverter")
        p = m["paired"]
        delta = m["task_metrics"]["accuracy"] - ref["task_metrics"]["accuracy"]
        assert p["accuracy_delta"] == pytest.approx(delta)
        assert p["ci95_low"] <= p["accuracy_delta"] <= p["ci95_high"]
        assert "latency_ms" in m
    # the recommendation, checked by hand: the smallest variant within one accuracy point, or
    # one at most 10% larger whose speed-up interval lies wholly above the smallest one's
    ok = [m for m in report["models"][1:]
          if ref["task_metrics"]["accuracy"] - m["task_metrics"]["accuracy"] <= 0.01]  # fmt: skip
    smallest = min(ok, key=lambda m: m["size_bytes"])
    faster = [m for m in ok if m["size_bytes"] <= 1.1 * smallest["size_bytes"]
              and m["speedup_ci95"][0] > smallest["speedup_ci95"][1]]  # fmt: skip
    rec = report["recommendation"]
    expected = max(faster, key=lambda m: m["speedup"]) if faster else smallest
    assert rec["model"] == expected["name"]
    assert rec["float_baseline"] == "cnn_float32"


def test_compare_a_float_tflite_without_tensorflow_modes(tmp_path, digits_models) -> None:
    result = quantlens.compare(digits_models["float"], "digits", modes="dynamic,weight-only-int4",
                               bench=False)  # fmt: skip
    assert result.recommendation.float_baseline == "cnn_float"
    modes = [m.quantization.mode for m in result.models[1:]]
    assert modes == ["dynamic", "weight-only-int4"]
    # the manifest says which quantizer package made each variant, and its version
    from importlib.metadata import version

    from quantlens.quantize.aeq import quantizer_package

    package, module = quantizer_package()
    for m in result.models[1:]:
        settings = m.quantization.settings
        assert settings["tool"] == module.__name__ == "litert_quantizer"
        assert (settings["package"], settings["version"]) == (package, version(package))
    # without out_dir the variants are kept where the result points, in a folder it names
    kept = Path(result.settings["out_dir"])
    assert all(Path(m.path).is_file() and Path(m.path).parent == kept for m in result.models[1:])


def test_a_mode_that_cannot_be_made_does_not_stop_the_others(tf, tmp_path) -> None:
    keras = tf.keras
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16), keras.layers.PReLU(),
                              keras.layers.Dense(4)])  # fmt: skip
    model.save(tmp_path / "prelu.keras")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(64, 16)))
    result = quantlens.compare(tmp_path / "prelu.keras", tmp_path / "d.npz", modes="int8,int16x8",
                               out_dir=tmp_path / "out", bench=False)  # fmt: skip
    assert [m.quantization.mode for m in result.models[1:]] == ["float32", "int8"]
    (warning,) = result.warnings
    assert warning.code == "mode_failed" and "PRELU" in warning.message
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [f["mode"] for f in manifest["failed"]] == ["int16x8"]


def test_the_quantizer_falls_back_to_its_predecessor(monkeypatch) -> None:
    from quantlens.errors import MissingDependencyError
    from quantlens.quantize import aeq

    pytest.importorskip("ai_edge_quantizer")
    missing = ("no-such-quantizer", "no_such_quantizer_module")
    monkeypatch.setattr(aeq, "QUANTIZER_PACKAGES", (missing, aeq.QUANTIZER_PACKAGES[1]))
    package, module = aeq.quantizer_package()
    assert (package, module.__name__) == ("ai-edge-quantizer", "ai_edge_quantizer")
    monkeypatch.setattr(aeq, "QUANTIZER_PACKAGES", (missing, missing))
    with pytest.raises(MissingDependencyError, match=r"quantlens\[aeq\]"):
        aeq.quantizer_package()


def test_exact_mcnemar_equals_scipy_binomtest() -> None:
    from scipy import stats

    from quantlens.metrics.paired import exact_mcnemar

    rng = np.random.default_rng(3)
    cases = [(0, 0), (0, 1), (1, 0), (3, 9), (10, 10), (0, 40), (1, 1000), (12345, 12000)]
    cases += [tuple(int(v) for v in rng.integers(0, 3000, 2)) for _ in range(30)]
    for b, c in cases:
        want = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        assert exact_mcnemar(b, c) == pytest.approx(want, rel=1e-9, abs=1e-300), (b, c)


def test_the_counted_bootstrap_matches_resampling_the_pairs() -> None:
    """Resampling −1/0/+1 differences through their counts (a multinomial draw) gives the
    bootstrap distribution SciPy gets by resampling the pairs one by one."""
    from scipy import stats

    from quantlens.metrics.paired import _bootstrap_mean_interval

    rng = np.random.default_rng(5)
    for p in ((0.03, 0.94, 0.03), (0.1, 0.85, 0.05), (0.0, 0.9, 0.1)):
        d = rng.choice([-1.0, 0.0, 1.0], p=p, size=3000)
        low, high = _bootstrap_mean_interval(d)
        ref = stats.bootstrap((d,), np.mean, n_resamples=20000, method="percentile",
                              rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
        se = d.std(ddof=1) / np.sqrt(d.size)  # Monte Carlo error of the ends is far smaller
        assert low == pytest.approx(ref.low, abs=0.15 * se + 1e-4)
        assert high == pytest.approx(ref.high, abs=0.15 * se + 1e-4)
