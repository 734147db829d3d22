"""benchmark(): latency, throughput, memory and size, measured as benchmark_model and MLPerf do.

Per configuration (threads × batch size) every model is loaded and timed in interleaved
rounds (A B C A B C ...) after a warm-up, TensorFlow models in rounds of their own; init
time, first-inference time and peak memory come from a fresh child process per model and
configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from quantlens.bench.inputs import data_inputs, synthetic_inputs
from quantlens.bench.options import BenchOptions
from quantlens.bench.probe import measure_in_child
from quantlens.bench.profile import profile_onnx
from quantlens.bench.schedule import interleave
from quantlens.bench.stats import median_ratio, summarize, warnings_for
from quantlens.data import check_batch_memory
from quantlens.errors import ConfigError
from quantlens.models.base import Model, gzip_size, path_size, unique_names
from quantlens.models.layout import Relayout
from quantlens.models.loading import load_model
from quantlens.results import BenchEntry, BenchResult

ModelRef = Model | str | os.PathLike[str]


def _load(ref: ModelRef, threads: int | None) -> Model:
    if isinstance(ref, Model):
        return ref
    return load_model(ref, num_threads=threads)


def benchmark(
    models: Sequence[ModelRef],
    *,
    data: Any = None,
    options: BenchOptions | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> BenchResult:
    """Measure latency, throughput, memory and size of each model under each configuration.

    Args:
        models: paths or loaded models; the first is the baseline of the ratios. Loaded
            models are used as they are (their thread count is whatever they were made with).
        data: inputs from this source (anything ``load_dataset`` takes); random values
            spanning each input's real range otherwise.
        options: how the benchmark runs (:class:`~quantlens.bench.options.BenchOptions`:
            threads, batch sizes, warm-up and timed runs, minimum seconds, memory, profile).
        progress: called with a short description before each configuration.
        **overrides: any field of ``options`` by name (``threads=[1, 2]``, ``runs=100``).

    Returns:
        A :class:`BenchResult` with one entry per model and configuration.
    """
    opts = (options or BenchOptions()).with_overrides(**overrides)
    if not models:
        raise ConfigError("give at least one model to benchmark")
    entries: list[BenchEntry] = []
    for t in opts.threads:
        loaded = [_load(m, t) for m in models]
        names = unique_names([m.name for m in loaded])
        for b in opts.batch_sizes:
            if progress is not None:
                progress(f"threads={t if t is not None else 'default'} batch={b}")
            entries += _bench_config(loaded, names, t, b, opts.warmup_runs, opts.runs,
                                     opts.min_seconds, data, opts.measure_memory,
                                     opts.profile)  # fmt: skip
    return BenchResult(
        tuple(entries),
        settings={
            "threads": list(opts.threads),
            "batch_sizes": list(opts.batch_sizes),
            "warmup_runs": opts.warmup_runs,
            "runs": opts.runs,
            "min_seconds": opts.min_seconds,
            "inputs": "random" if data is None else str(getattr(data, "source", data)),
        },
    )


#: Formats run by TensorFlow: never timed in the same rounds as a runtime's models (TensorFlow
#: spins up thread pools and allocators whose activity slows the interleaved neighbours).
TENSORFLOW_FORMATS = ("keras", "saved_model")


def timing_groups(models: Sequence[Model]) -> list[list[int]]:
    """Indices of the models timed together: the runtimes' models (``.tflite``, ``.onnx``),
    then TensorFlow's, each group in the given order (its first model is its ratio base)."""
    runtime = [i for i, m in enumerate(models) if m.format not in TENSORFLOW_FORMATS]
    tensorflow = [i for i, m in enumerate(models) if m.format in TENSORFLOW_FORMATS]
    return [g for g in (runtime, tensorflow) if g]


def _bench_config(
    models: list[Model], names: list[str], threads: int | None, batch: int, warmup_runs: int,
    runs: int, min_seconds: float, data: Any, measure_memory: bool, profile: bool,
) -> list[BenchEntry]:  # fmt: skip
    from quantlens.models.matching import feed_order

    base = models[0]
    sample_bytes = sum(4 * int(np.prod([d or 1 for d in s.sample_shape])) for s in base.inputs)
    check_batch_memory(batch, sample_bytes)
    real = (
        synthetic_inputs(base.inputs, batch)
        if data is None
        else data_inputs(data, base.inputs, batch)
    )
    per_model = [[real[i] for i in feed_order(base.inputs, m.inputs, m.name)] for m in models]
    if batch > 1:  # a batch runs in one invoke only where that gives the per-sample outputs
        for m, x in zip(models, per_model, strict=True):
            m.probe_batching(x)
    samples: list[np.ndarray] = [np.empty(0)] * len(models)
    rounds = [0] * len(models)
    for group in timing_groups(models):
        timed = interleave([models[i].invoker(per_model[i]) for i in group],
                           warmup_runs=warmup_runs, runs=runs, min_seconds=min_seconds)  # fmt: skip
        for i, s in zip(group, timed.samples_ms, strict=True):
            samples[i], rounds[i] = s, timed.rounds
    first_of_group = {i: group[0] for group in timing_groups(models) for i in group}
    entries = []
    for i, (m, name, s, x) in enumerate(zip(models, names, samples, per_model, strict=True)):
        summary = summarize(s)
        notes = warnings_for(summary, rounds[i])
        first = first_of_group[i]
        own = m.own_layout(x) if isinstance(m, Relayout) else x  # the child loads the file as is
        probe = measure_in_child(m.path, threads, own) if measure_memory else {}
        if "error" in probe:
            notes.append(probe["error"])
        latency = dict(summary)
        latency["init"] = probe.get("init_ms", float("nan"))
        latency["first"] = probe.get("first_ms", float("nan"))
        entries.append(
            BenchEntry(
                name=name,
                path=m.path,
                format=m.format,
                threads=threads,
                batch_size=batch,
                latency_ms=latency,
                samples_ms=tuple(s.tolist()),
                timed_runs=rounds[i],
                throughput_sps=batch * 1000.0 / summary["p50"] if summary["p50"] > 0 else 0.0,
                peak_rss_mb=probe.get("peak_rss_mb"),
                size_bytes=path_size(m.path),
                size_gzip_bytes=gzip_size(m.path),
                warnings=tuple(notes),
                ratio_to_first=median_ratio(samples[first], s) if i != first else None,
                ratio_baseline=names[first],
                profile=profile_onnx(m.path, x, threads)
                if profile and m.format == "onnx"
                else None,
            )
        )
    return entries
