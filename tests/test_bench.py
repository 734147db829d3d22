"""Benchmark machinery: summaries against NumPy, the interleaving order, ratio intervals, the
child-process memory probe, and the JSON report. No test asserts on wall time."""

from __future__ import annotations

import json

import numpy as np
import pytest

import quantlens
from quantlens.bench import benchmark
from quantlens.bench.inputs import real_range, synthetic_inputs
from quantlens.bench.probe import measure_in_child
from quantlens.bench.schedule import interleave
from quantlens.bench.stats import median_ratio, summarize, warnings_for
from quantlens.cli import main
from quantlens.errors import ConfigError
from quantlens.results import QuantParams, TensorSpec


def test_summary_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    samples = rng.lognormal(0.0, 0.5, size=501)
    got = summarize(samples)
    assert got["mean"] == pytest.approx(np.mean(samples))
    assert got["std"] == pytest.approx(np.std(samples))
    assert got["min"] == samples.min() and got["max"] == samples.max()
    for p in (50, 90, 95, 99):
        assert got[f"p{p}"] == pytest.approx(np.percentile(samples, p))
    assert got["cv"] == pytest.approx(np.std(samples) / np.mean(samples))


def test_known_samples() -> None:
    got = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (got["p50"], got["mean"], got["min"], got["max"]) == (3.0, 3.0, 1.0, 5.0)
    assert got["p90"] == pytest.approx(4.6)  # linear interpolation between order statistics
    assert got["std"] == pytest.approx(np.sqrt(2.0))


def test_warnings_for_noise_and_few_runs() -> None:
    assert warnings_for({"cv": 0.05}, 100) == []
    notes = warnings_for({"cv": 0.25}, 10)
    assert any("25%" in n for n in notes) and any("only 10" in n for n in notes)


class FakeClock:
    """A clock that advances 1 ms per reading and records who ran when."""

    def __init__(self) -> None:
        self.now = 0
        self.trace: list[str] = []

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now

    def invoker(self, name: str):
        return lambda: self.trace.append(name)


def test_rounds_interleave_models_and_discard_warmup() -> None:
    clock = FakeClock()
    invokers = [clock.invoker(n) for n in "ABC"]
    timed = interleave(invokers, warmup_runs=2, runs=4, min_seconds=0.0, clock=clock)
    assert "".join(clock.trace) == "ABC" * 6  # 2 warm-up rounds, then 4 timed
    assert [len(s) for s in timed.samples_ms] == [4, 4, 4] and timed.rounds == 4
    assert all(v == pytest.approx(1.0) for s in timed.samples_ms for v in s)


def test_rounds_continue_until_min_seconds() -> None:
    clock = FakeClock()
    timed = interleave([clock.invoker("A")], warmup_runs=0, runs=1, min_seconds=0.05, clock=clock)
    # each timed run reads the clock twice and the loop once: 3 ms per round on this clock
    assert len(timed.samples_ms[0]) == 17 and clock.now >= 50_000_000


def test_kept_rounds_stay_bounded_and_evenly_spread() -> None:
    class Counting:
        """Each invoke takes as many ns as its round's index (readable from the samples)."""

        def __init__(self) -> None:
            self.now, self.round = 0, 0

        def __call__(self) -> int:
            return self.now

        def invoke(self) -> None:
            self.now += self.round + 1
            self.round += 1

    clock = Counting()
    timed = interleave([clock.invoke], warmup_runs=0, runs=10_000, min_seconds=0, clock=clock,
                       max_kept=64)  # fmt: skip
    kept = np.rint(timed.samples_ms[0] * 1e6).astype(int) - 1  # the round each sample came from
    assert timed.rounds == 10_000 and len(kept) <= 64 and timed.stride == 256
    assert np.all(np.diff(kept) == timed.stride) and kept[0] == 0  # evenly spread, from the start


def test_endless_settings_are_capped() -> None:
    clock = FakeClock()
    timed = interleave([clock.invoker("A")], warmup_runs=0, runs=1, min_seconds=float("inf"),
                       clock=clock, max_kept=16)  # fmt: skip
    assert clock.now >= 3600 * 1e9 and len(timed.samples_ms[0]) <= 16  # an hour, then it stops


def test_median_ratio_interval() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 0.5, 200)
    other = base * 0.5 + rng.normal(0.0, 0.1, 200)  # half as slow, drifting with base
    got = median_ratio(base, other)
    assert got["ratio"] == pytest.approx(np.median(other) / np.median(base))
    assert got["ci95_low"] < 0.5 < got["ci95_high"] or abs(got["ratio"] - 0.5) < 0.01
    assert got["ci95_high"] - got["ci95_low"] < 0.05
    same = median_ratio(base, base)
    assert same["ratio"] == 1.0 and same["ci95_low"] == same["ci95_high"] == 1.0


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    shocks = rng.normal(0.0, sd, n)
    x = np.empty(n)
    x[0] = shocks[0] / np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + shocks[i]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.9, 0.98])
def test_ratio_interval_covers_the_true_ratio_under_drift(phi: float) -> None:
    """Paired rounds with a shared drift (AR(1), the machine's state) and each model's own
    autocorrelated noise; the true ratio of medians is 1.3. A 95% interval must cover it in
    90-99% of runs. (An interval that resamples rounds one by one covers it far less often
    as soon as rounds are autocorrelated: checked below for the strongest drift.)"""
    rng = np.random.default_rng(int(phi * 100))
    true_ratio, sims, n = 1.3, 150, 600
    hits = naive_hits = 0
    for s in range(sims):
        drift = _ar1(rng, n, phi, 0.05)
        base = np.exp(drift + _ar1(rng, n, 0.5, 0.1))
        other = true_ratio * np.exp(drift + _ar1(rng, n, 0.5, 0.1))
        got = median_ratio(base, other, seed=s, resamples=400)
        hits += got["ci95_low"] <= true_ratio <= got["ci95_high"]
        if phi == 0.98:
            idx = rng.integers(0, n, size=(400, n))
            iid = np.median(other[idx], axis=1) / np.median(base[idx], axis=1)
            lo, hi = np.percentile(iid, [2.5, 97.5])
            naive_hits += lo <= true_ratio <= hi
    assert 0.90 <= hits / sims <= 0.99
    if phi == 0.98:
        assert naive_hits / sims < 0.85


def test_synthetic_inputs_span_the_quantized_range() -> None:
    spec = TensorSpec("x", (None, 4), "int8", QuantParams((0.5,), (-28,)))
    assert real_range(spec) == (-50.0, 77.5)  # (-128 + 28) * 0.5, (127 + 28) * 0.5
    (x,) = synthetic_inputs([spec], batch=3)
    assert x.shape == (3, 4) and x.dtype == np.float32
    assert x.min() >= -50.0 and x.max() <= 77.5


def test_memory_is_measured_in_a_child_process(digits_models, tf) -> None:
    ballast = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB in this process, none in the child
    x = np.zeros((1, 8, 8, 1), np.float32)
    got = measure_in_child(str(digits_models["int8io"]), 1, [x])
    assert "error" not in got, got
    assert 0 < got["peak_rss_mb"] < 32
    # the child never imported TensorFlow, which this process has (hundreds of MiB)
    assert got["baseline_rss_mb"] < 150
    assert got["init_ms"] > 0 and got["first_ms"] > 0
    del ballast


def test_bench_cli_json_has_the_documented_keys(capsys, tmp_path, digits_models) -> None:
    out = tmp_path / "bench.json"
    code = main([
        "bench", str(digits_models["float"]), str(digits_models["int8io"]), "--runs", "5",
        "--warmup-runs", "1", "--min-seconds", "0", "--batch-size", "1,4", "--json", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["schema"] == "quantlens.bench/1"
    assert len(report["results"]) == 4
    for e in report["results"]:
        for key in ("path", "threads", "batch_size", "latency_ms", "samples_ms", "throughput_sps",
                    "peak_rss_mb", "size_bytes", "size_gzip_bytes"):  # fmt: skip
            assert key in e
        assert set(e["latency_ms"]) >= {"p50", "p90", "p95", "p99", "mean", "std", "min", "max",
                                        "init", "first"}  # fmt: skip
        assert len(e["samples_ms"]) >= 5
        assert e["latency_ms"]["p50"] == pytest.approx(np.percentile(e["samples_ms"], 50))
        assert e["throughput_sps"] == pytest.approx(e["batch_size"] * 1000 / e["latency_ms"]["p50"])
        assert any("steady-state runs" in w for w in e["warnings"])
        assert e["size_gzip_bytes"] < e["size_bytes"]
    second = report["results"][1]
    assert second["ratio_to_first"]["ci95_low"] <= second["ratio_to_first"]["ratio"]


def test_fixed_batch_model_refuses_other_batch_sizes(fixed_batch_models) -> None:
    with pytest.raises(ConfigError, match=r"runs 1 sample.* use batch size 1"):
        benchmark([fixed_batch_models["baked"]], batch_sizes=[4], runs=1, min_seconds=0,
                  measure_memory=False)  # fmt: skip


def test_evaluate_reports_latency_per_model(capsys, tmp_path, digits_models) -> None:
    out = tmp_path / "r.json"
    code = main(["evaluate", str(digits_models["float"]), str(digits_models["int8io"]),
                 "--data", "digits", "--limit", "50", "--json", str(out)])  # fmt: skip
    assert code == 0
    models = json.loads(out.read_text())["models"]
    for m in models:
        assert set(m["latency_ms"]) == {"p50", "p90", "p99", "mean", "std", "init", "first"}
        assert m["throughput_sps"] > 0 and m["size_gzip_bytes"] > 0
    assert models[0]["speedup"] == 1.0
    assert models[1]["speedup"] == pytest.approx(
        models[0]["latency_ms"]["p50"] / models[1]["latency_ms"]["p50"]
    )
    args = ["evaluate", str(digits_models["float"]), str(digits_models["int8io"])]
    code = main([*args, "--data", "digits", "--limit", "50", "--no-bench", "--json", str(out)])
    assert code == 0
    assert "latency_ms" not in json.loads(out.read_text())["models"][0]


def test_tensorflow_models_are_timed_apart(digits_models, monkeypatch) -> None:
    import quantlens.bench as bench_module

    calls: list[int] = []
    real = bench_module.interleave

    def spy(invokers, **kw):
        calls.append(len(invokers))
        return real(invokers, **kw)

    monkeypatch.setattr(bench_module, "interleave", spy)
    result = quantlens.evaluate(digits_models["keras"], [digits_models["float"],
                                digits_models["int8"]], "digits", limit=20, bench=True)  # fmt: skip
    assert calls == [2, 1]  # the two .tflite models in one set of rounds, Keras in its own
    keras, flt, int8 = (m.performance for m in result.models)
    assert keras.speedup is None and keras.speed_baseline is None
    assert flt.speedup == 1.0 and int8.speed_baseline == "cnn_float"
    low, high = int8.speedup_ci95
    assert low <= int8.speedup <= high
