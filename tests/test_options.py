"""EvalOptions: validated once where they are made, carried unchanged through evaluate and
compare; keyword arguments override single fields."""

from __future__ import annotations

import pytest

import quantlens
from quantlens.errors import ConfigError


@pytest.mark.parametrize(("field", "value", "message"), [
    ("engine", "spark", "unknown engine 'spark'"), ("workers", 0, "workers must be at least 1"),
    ("task", "ranking", "unknown task 'ranking'"), ("layout", "nwhc", "unknown layout 'nwhc'"),
    ("batch_size", 0, "batch_size must be at least 1"), ("limit", -3, "limit must be at least 1"),
    ("num_threads", 0, "num_threads must be at least 1"),
])  # fmt: skip
def test_options_are_validated_when_made(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        quantlens.EvalOptions(**{field: value})
    with pytest.raises(ConfigError, match=message):  # and again when a field is overridden
        quantlens.EvalOptions().with_overrides(**{field: value})


def test_overrides_replace_fields_and_refuse_unknown_ones() -> None:
    base = quantlens.EvalOptions(batch_size=8, bench=True)
    assert base.with_overrides(limit=5) == quantlens.EvalOptions(batch_size=8, bench=True, limit=5)
    assert base.with_overrides(batch_size=None) is base  # an unset keyword keeps the field
    with pytest.raises(TypeError, match="batchsize"):
        base.with_overrides(batchsize=3)


def test_options_and_keywords_run_the_same(digits_models) -> None:
    options = quantlens.EvalOptions(limit=40, batch_size=16)
    by_options = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], "digits",
                                    options=options)  # fmt: skip
    by_keywords = quantlens.evaluate(digits_models["float"], [digits_models["int8"]], "digits",
                                     limit=40, batch_size=16)  # fmt: skip
    assert by_options.dataset.samples == 40
    assert by_options.settings == by_keywords.settings
    assert [m.task_metrics for m in by_options.models] == [
        m.task_metrics for m in by_keywords.models
    ]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("threads", (0,), "threads must be whole numbers of at least 1"),
    ("batch_sizes", (), "batch sizes must be at least 1"),
    ("runs", 0, "runs ≥ 1"), ("min_seconds", float("inf"), "min-seconds ≥ 0"),
])  # fmt: skip
def test_bench_options_are_validated_when_made(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        quantlens.BenchOptions(**{field: value})
    with pytest.raises(ConfigError, match=message):
        quantlens.benchmark(["unused.tflite"], **{field: value})  # refused before loading


def test_bench_options_and_keywords_run_the_same(digits_models) -> None:
    options = quantlens.BenchOptions(threads=(1,), warmup_runs=2, runs=5, min_seconds=0.0,
                                     measure_memory=False)  # fmt: skip
    by_options = quantlens.benchmark([digits_models["float"]], options=options)
    by_keywords = quantlens.benchmark([digits_models["float"]], threads=[1], warmup_runs=2,
                                      runs=5, min_seconds=0.0, measure_memory=False)  # fmt: skip
    assert by_options.settings == by_keywords.settings
    assert by_options.results[0].runs >= 5 and by_options.results[0].peak_rss_mb is None
