"""Distribution statistics of class outputs equal an independent SciPy computation on the
outputs of a plain one-sample-at-a-time LiteRT loop; shards merge to the same numbers; the
statistics are gates and reach the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special, stats

import quantlens
from quantlens.cli import main
from quantlens.metrics.fidelity import FidelityState
from tests.test_models import hand_run

PERCENTILES = {"max": 100, "p99_9": 99.9, "p99": 99, "p95": 95, "p90": 90, "median": 50,
               "p10": 10, "p5": 5, "p1": 1, "p0_1": 0.1, "min": 0}  # fmt: skip


def _expected(ref_logits: np.ndarray, cand_logits: np.ndarray, y: np.ndarray) -> dict:
    p, q = special.softmax(ref_logits, axis=1), special.softmax(cand_logits, axis=1)
    pc, qc = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    kl = stats.entropy(pc, qc, axis=1)  # normalises each row itself
    dp = q[np.arange(len(y)), y] - p[np.arange(len(y)), y]
    agree = (p.argmax(1) == q.argmax(1)).mean()
    out = {"kl_mean": kl.mean(), "kl_mean_se": stats.sem(kl), "delta_p_mean": dp.mean(),
           "delta_p_mean_se": stats.sem(dp), "delta_p_rms": np.sqrt((dp**2).mean()),
           "top1_agreement": agree,
           "top1_agreement_se": np.sqrt(agree * (1 - agree) / len(y))}  # fmt: skip
    for name, pct in PERCENTILES.items():
        out[f"kl_{name}"] = np.percentile(kl, pct)
        out[f"delta_p_{name}"] = np.percentile(dp, pct)
    return out


def test_distribution_statistics_equal_scipy_on_a_plain_loop(bad_layer, tmp_path) -> None:
    data = np.load(bad_layer["data"])
    x, y = data["x"], data["y"]
    (ref,) = hand_run(bad_layer["float"], [x])
    (cand,) = hand_run(bad_layer["int8"], [x])
    want = _expected(ref.astype(np.float64), cand.astype(np.float64), y)
    result = quantlens.evaluate(bad_layer["float"], [bad_layer["int8"]], bad_layer["data"],
                                batch_size=7)  # fmt: skip
    got = result.models[1].distribution
    assert got is not None and set(want) <= set(got)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=2e-4, abs=2e-7), key
    # the fidelity table's KL and top-1 agreement are the same numbers
    assert result.models[1].fidelity["kl_divergence"] == pytest.approx(got["kl_mean"], rel=1e-6)
    assert result.models[0].distribution is None  # the reference against itself: nothing


def test_shards_merge_to_the_whole() -> None:
    rng = np.random.default_rng(1)
    ref, cand = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    y = rng.integers(0, 5, 300)
    whole = FidelityState().update(ref, cand, y).distribution()
    parts = [FidelityState().update(ref[a:b], cand[a:b], y[a:b])
             for a, b in ((0, 17), (17, 200), (200, 300))]  # fmt: skip
    merged = parts[0].merge(parts[1]).merge(parts[2]).distribution()
    assert whole is not None and merged is not None
    assert merged == pytest.approx(whole, rel=1e-5)
    # labels that are not classes of this output give no Δp, and no partial one
    assert "delta_p_mean" not in FidelityState().update(ref, cand, y + 10).distribution()


def test_distribution_gates_and_report(bad_layer, tmp_path, capsys) -> None:
    out = tmp_path / "e.json"
    code = main(["evaluate", str(bad_layer["float"]), str(bad_layer["int8"]), "--data",
                 str(bad_layer["data"]), "--no-bench", "--json", str(out), "--report",
                 str(tmp_path / "e.html"), "--fail-on", "kl_p99>1e-9"])  # fmt: skip
    assert code == 1 and "broke gate kl_p99>1e-9" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["models"][1]["distribution"]["kl_p99"] > 0
    html = (tmp_path / "e.html").read_text()
    assert "Distribution of the class outputs" in html and "KL(reference" in html


def test_metrics_do_not_depend_on_how_batches_are_grouped_into_blocks(
    bad_layer, monkeypatch
) -> None:
    """Metrics are updated on blocks of batches; any grouping gives the same numbers."""
    import quantlens.engine.shard as shard

    whole = quantlens.evaluate(bad_layer["float"], [bad_layer["int8"]], bad_layer["data"],
                               batch_size=7)  # fmt: skip
    monkeypatch.setattr(shard, "BLOCK_SAMPLES", 20)  # blocks of 3 batches, and a ragged end
    blocks = quantlens.evaluate(bad_layer["float"], [bad_layer["int8"]], bad_layer["data"],
                                batch_size=7)  # fmt: skip
    a, b = whole.models[1], blocks.models[1]
    assert a.fidelity == pytest.approx(b.fidelity, rel=1e-9)
    assert a.task_metrics == pytest.approx(b.task_metrics)
    assert a.distribution == pytest.approx(b.distribution, rel=1e-9)
    assert a.paired == pytest.approx(b.paired)
    assert whole.models[0].task_metrics == pytest.approx(blocks.models[0].task_metrics)
