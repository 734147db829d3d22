"""The metric registry: every metric a gate can name is documented, has a kind that spells
it, and the Pareto front matches a brute-force reading of its definition."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from quantlens.metric_registry import METRICS, pareto_front, spell, spell_change

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_metric_is_documented_for_gates() -> None:
    documented = set(re.findall(r"`([a-z0-9_]+)`", README.read_text()))
    assert set(METRICS) <= documented, sorted(set(METRICS) - documented)


def test_diffed_metrics_have_a_direction() -> None:
    assert all(s.higher_is_better is not None for s in METRICS.values() if s.diffed)


@pytest.mark.parametrize(("key", "value", "text"), [
    ("accuracy", 0.9, "0.9000"), ("sqnr_db", 41.234, "41.2"), ("p50_ms", 0.0052, "5.2 µs"),
    ("p99_ms", 12.345, "12.3 ms"), ("size_bytes", 46182, "45.1 KiB"),
    ("mse", 1.23456e-5, "1.235e-05"),
    ("cosine_similarity", 0.999974, "0.99997"), ("speedup", 1.5, "1.50×"), ("accuracy", None, "—"),
    ("sqnr_db", float("inf"), "inf"),
])  # fmt: skip
def test_values_are_spelled_by_kind(key: str, value: float | None, text: str) -> None:
    assert spell(key, value) == text


def test_changes_are_points_db_or_relative() -> None:
    assert spell_change("accuracy", -0.0123) == "-1.23\u00a0pt"
    assert spell_change("sqnr_db", 1.26) == "+1.3\u00a0dB"
    assert spell_change("p50_ms", 0.1) == "+10.0%"


def test_pareto_front_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [tuple(map(float, p)) for p in rng.integers(0, 5, size=(int(rng.integers(1, 9)), 2))]
        brute = {
            i for i, (x, y) in enumerate(pts)
            if not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in pts)
        }  # fmt: skip
        front = pareto_front(pts)
        assert set(front) == brute
        assert all(pts[a][0] <= pts[b][0] for a, b in itertools.pairwise(front))
