"""evaluate(): run a reference and candidates on the same data and accumulate the metrics."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from quantlens.data import Batch, Dataset, load_dataset
from quantlens.engine.options import EvalOptions
from quantlens.engine.shard import (
    Plan,
    RunState,
    ShardOutcome,
    input_quantization,
    run_shard,
)
from quantlens.engine.workers import (
    process_workers_by_time,
    releases_gil,
    thread_workers_by_work,
    workers_by_samples,
)
from quantlens.errors import ConfigError, DataError, QuantlensError
from quantlens.metrics.paired import paired
from quantlens.models import containment
from quantlens.models.base import (
    Model,
    models_trusted,
    unique_names,
)
from quantlens.models.batching import (
    PROBE_SAMPLES,
    auto_batch_size,
    auto_invoke_size,
    declared_batch,
    follow_invoke_size,
    invoke_size,
    models_sample_bytes,
    probe_all,
    run_in_threads,
    set_invoke_size,
    takes_invoke_size,
    tune_candidates,
    tuning_batch,
)
from quantlens.models.layout import adapt
from quantlens.models.loading import load_model
from quantlens.models.matching import wire
from quantlens.models.quantization import integer_parts
from quantlens.models.stored import Recorder, StoredOutputs
from quantlens.results import (
    EVALUATION_LATENCY_KEYS,
    BatchingDecision,
    DatasetSummary,
    EvaluationResult,
    ModelResult,
    OutputFidelity,
    Performance,
    ReportWarning,
)


def _as_model(m: Model | str | os.PathLike[str], num_threads: int | None) -> Model:
    return m if isinstance(m, Model) else load_model(m, num_threads=num_threads)


def evaluate(
    reference: Model | str | os.PathLike[str],
    candidates: Sequence[Model | str | os.PathLike[str]],
    data: Any,
    *,
    labels: Any = None,
    options: EvalOptions | None = None,
    progress: Callable[[int], None] | None = None,
    status: Callable[[str], None] | None = None,
    save_reference_outputs: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Run a reference model and its candidates on the same data; report accuracy and fidelity.

    Args:
        reference: the float model (a path or a loaded :class:`Model`), or its outputs
            stored earlier (:func:`quantlens.load_reference_outputs`): the data must then be
            the data they were stored from, sample for sample, which is checked before any
            model runs.
        candidates: the quantized models to compare with it.
        data: anything :func:`quantlens.load_dataset` accepts.
        labels: labels for array data that does not carry them.
        options: how the run goes (:class:`~quantlens.engine.options.EvalOptions`: task,
            batch size, limit, threads, workers and engine, layout, constants, bench).
        progress: called with the number of samples after each batch.
        status: called with a line of text before the benchmark.
        save_reference_outputs: also store the reference's outputs in this file, with the
            digests of the data and of the reference model, for later runs without the
            reference. The run is then made in this process (no workers).
        **overrides: any field of ``options`` by name (``batch_size=64``, ``workers=2``).

    Returns:
        An :class:`EvaluationResult`, the reference first. Task metrics are computed on each
        model's first output; fidelity on every output, matched to the reference's.

    Raises:
        QuantlensError: a model or the data cannot be loaded, or they do not fit each other;
            the data is not the data stored reference outputs were stored from.
    """
    opts = (options or EvalOptions()).with_overrides(**overrides)
    limit, layout = opts.limit, opts.layout
    dataset = load_dataset(data, labels)
    stored = reference if isinstance(reference, StoredOutputs) else None
    if stored is not None and save_reference_outputs is not None:
        raise ConfigError("the reference is already stored outputs; save them from the model")
    n = dataset.samples_read(limit)
    requested = 1 if save_reference_outputs else opts.workers
    local = opts.engine == "local"
    # LiteRT and ONNX models get their workers once loaded and probed (milliseconds for those
    # runtimes): threads for large models, counted by their tensors; else processes, counted
    # by the time their first batch takes (see engine/workers.py). Others (Keras) get worker
    # processes counted by samples and started now, importing their runtime meanwhile.
    sized_later = local and requested > 1 and all(
        releases_gil(m) for m in (reference, *candidates)
    )  # fmt: skip
    workers = requested if sized_later else workers_by_samples(requested, n)
    if workers > 1 and not dataset.rereadable:
        raise ConfigError("--workers needs data of known size (a file or arrays); "
                          "an iterable or tf.data.Dataset runs with one worker")  # fmt: skip
    threads = opts.num_threads
    if workers > 1 and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)  # do not oversubscribe the cores
    started = (_start_workers(workers - 1, (reference, *candidates))
               if local and workers > 1 and not sized_later else None)  # fmt: skip
    in_threads = False
    try:
        # Stored outputs are in the data's layout already: they were recorded as bound.
        models = [m if m is stored else adapt(_as_model(m, threads), layout)
                  for m in (reference, *candidates)]  # fmt: skip
        wiring = wire(models)  # refuse mismatched models before any work
        fixed = dict(opts.constants)
        # read only when a sample's size is asked for: the auto batch, or the workers
        sized = opts.batch_size is None or sized_later
        shapes = _data_shapes(models, wiring, dataset, fixed) if sized else None
        batch_size = (auto_batch_size(models, threads, shapes)
                      if opts.batch_size is None else opts.batch_size)  # fmt: skip
        # Chosen for the user, each model that can runs its own samples per invoke within a
        # batch (Keras runs each batch whole; stored outputs are read); a large model's is
        # then timed among sizes around it on the first batches (below, once the workers are
        # known).
        invoke_sizes = tuple(
            auto_invoke_size(m, threads, shapes[k] if shapes else None)
            if opts.batch_size is None and takes_invoke_size(m) else None
            for k, m in enumerate(models)
        )  # fmt: skip
        for model, size in zip(models, invoke_sizes, strict=True):
            set_invoke_size(model, size)
        if stored is not None:
            stored.check_data(dataset, batch_size=batch_size, limit=limit, constants=fixed,
                              allow_nonfinite=opts.allow_nonfinite)  # fmt: skip
        # Batching is decided once, on the data's first samples: on the run's first batch
        # itself when it runs inline or its other workers are threads, which wait for the
        # caller's decisions (engine/pool.py); here, before the shards, for worker processes,
        # which are handed the decisions, and before sizing them by a batch's time (a model
        # run one sample at a time costs what that costs).
        decisions: list[BatchingDecision] = []
        if sized_later:

            def first_batch_seconds() -> float | None:
                """The models' first batch, timed once they are probed (it allocates them at
                the run's batch, as the run would)."""
                decisions[:] = probe_models(models, wiring, dataset, fixed,
                                            opts.allow_nonfinite, batch_size)  # fmt: skip
                return _batch_seconds(models, stored, wiring, dataset.head(
                    models[0].inputs, batch_size, allow_nonfinite=opts.allow_nonfinite,
                    constants=fixed))  # fmt: skip

            workers, in_threads = _sized_workers(models, stored, shapes, workers, n,
                                                 batch_size, first_batch_seconds)  # fmt: skip
            if workers > 1 and not in_threads:
                started = _start_workers(workers - 1, (reference, *candidates))
        shards = dataset.guided_shards(workers, limit, unit=batch_size) if workers > 1 else None
        # A large model's samples per invoke are timed by this process's copy, inline or in
        # its shards; worker threads take the size it keeps (timing each copy cost
        # MobileNetV2-128 3% of a two-thread run). All run the batches that timing takes
        # (tuning_batch), where each model runs several invokes before the other takes the
        # caches (MobileNetV2-128 inline: 0.97 of the bare loop in batches of 8, 1.02-1.06 in
        # 64; two threads 3.57 -> 3.45 s); shards stay in units of the rule's batch. Worker
        # processes (small models, which time nothing) keep the rule's batch.
        timed = tuple(
            tune_candidates(m, size, shapes[k] if shapes else None)
            if shards is None or in_threads else ()
            for k, (m, size) in enumerate(zip(models, invoke_sizes, strict=True))
        )  # fmt: skip
        if any(timed):
            for model, size, sizes in zip(models, invoke_sizes, timed, strict=True):
                set_invoke_size(model, size, sizes)
            every = [k for sizes in timed for k in sizes]
            batch_size = auto_batch_size(models, threads, shapes, at_least=tuning_batch(every))
        recorder = None
        if save_reference_outputs is not None:
            models[0] = recorder = Recorder(models[0], save_reference_outputs)
        if shards and not decisions and not in_threads:
            decisions = probe_models(models, wiring, dataset, fixed, opts.allow_nonfinite,
                                     batch_size)  # fmt: skip
        plan = Plan(tuple(m.path for m in models), opts.task, batch_size, threads,
                    opts.allow_nonfinite, models_trusted(), layout,
                    tuple(d.mode for d in decisions), fixed, containment.verified(),
                    stored_reference=stored is not None, invoke_sizes=invoke_sizes)  # fmt: skip
    except BaseException:
        if started is not None:
            started.shutdown(wait=False, cancel_futures=True)
        raise
    if shards is None:
        outcome = run_shard(models, dataset, plan, limit=limit, progress=progress)
    else:
        from quantlens.engine import run_shards

        def inline(shard: Dataset, plan: Plan, decided: Any) -> ShardOutcome:
            """A shard on this process's own models, as a worker runs it."""
            return run_shard(models, shard, plan, decided=decided)

        def follow(theirs: list[Any]) -> None:
            """A worker thread's models take the samples per invoke this process's keep."""
            for leader, model in zip(models, theirs, strict=True):
                follow_invoke_size(model, leader)

        parts = run_shards(plan, shards, engine=opts.engine, workers=workers,
                           ray_address=opts.ray_address, progress=progress,
                           inline=inline, started=started, threads=in_threads,
                           follow=follow if in_threads else None)  # fmt: skip
        outcome = functools.reduce(ShardOutcome.merge, parts)
    decisions = outcome.decisions or decisions  # probed in the run, or here before it
    if outcome.samples == 0:
        raise DataError(f"the data set {dataset.source} is empty; give at least one sample")
    names = unique_names([m.name for m in models])
    if opts.bench and status is not None:
        status(f"benchmarking {len(models)} models: latency, then memory in a child process "
               "each…")  # fmt: skip
    perf = _performance(models, outcome.first_sample, threads) if opts.bench else None
    decisions = [_with_invoke_size(d, m, min(batch_size, invoke_size(m) or batch_size),
                                   outcome.samples)
                 for d, m in zip(decisions, models, strict=True)]  # fmt: skip
    results = tuple(
        replace(
            _model_result(m, st, name, models[0], outcome.states[0], perf[i] if perf else None),
            batching=decisions[i],
        )
        for i, (m, st, name) in enumerate(zip(models, outcome.states, names, strict=True))
    )
    kept = stored.stored if stored is not None else None
    if recorder is not None:
        kept = recorder.save(data_source=dataset.source)
    return EvaluationResult(
        dataset=DatasetSummary(dataset.source, outcome.samples, outcome.task or "none"),
        reference=names[0],
        models=results,
        settings={
            "batch_size": batch_size,
            "limit": limit,
            "num_threads": threads,
            "workers": workers if shards else 1,
            "engine": opts.engine if shards else "inline",
            "workers_in": ("threads" if in_threads else "processes")
            if shards and opts.engine == "local"
            else None,
        },
        warnings=(
            *batching_warnings(names, decisions, opts.batch_size),
            *sanity_warnings(models, names, outcome.states),
        ),
        reference_outputs=kept,
    )


def _data_shapes(
    models: Sequence[Model], wiring: Sequence[tuple[list[int], list[int]]], dataset: Dataset,
    constants: Mapping[str, Any],
) -> list[list[tuple[int, ...]]] | None:  # fmt: skip
    """Per model, its inputs' sample shapes as the data's first sample has them, when a
    model leaves a dimension open (an image's size) and the data can be read again: what
    sizing a sample then needs. None otherwise."""
    if not any(None in s.sample_shape for m in models for s in m.inputs):
        return None
    first = dataset.sample_shapes(models[0].inputs, constants)
    if first is None:
        return None
    return [[first[i] for i in ins] for ins, _ in wiring]


def _sized_workers(
    models: Sequence[Model], stored: StoredOutputs | None,
    shapes: Sequence[Sequence[tuple[int, ...]]] | None, workers: int, samples: int | None,
    batch_size: int, batch_seconds: Callable[[], float | None],
) -> tuple[int, bool]:  # fmt: skip
    """How many of ``workers`` loaded LiteRT/ONNX models get, and whether as threads: threads
    when the models are large (counted by their tensors), else processes (counted by the
    time ``batch_seconds`` measures, only asked for then). Stored reference outputs are read,
    not run: the other models decide."""
    runs = [k for k, m in enumerate(models) if m is not stored]
    running = [models[k] for k in runs]
    run_shapes = [shapes[k] for k in runs] if shapes else None
    if not run_in_threads(running, run_shapes):
        seconds = batch_seconds() if samples is not None else None  # unknown length: no time
        return process_workers_by_time(workers, samples, batch_size, seconds), False
    count = thread_workers_by_work(workers, samples, models_sample_bytes(running, run_shapes))
    return count, count > 1


def _batch_seconds(
    models: Sequence[Model], stored: StoredOutputs | None,
    wiring: Sequence[tuple[list[int], list[int]]], batch: Batch,
) -> float | None:  # fmt: skip
    """Seconds the models (not stored outputs, which are read) take over one batch; None
    when a model refuses the batch (the probe then finds how it runs, and says why)."""
    feeds = [[batch.inputs[i] for i in ins] for ins, _ in wiring]
    start = time.perf_counter()
    try:
        for model, feed in zip(models, feeds, strict=True):
            if model is not stored:
                model.predict(feed)
    except QuantlensError:
        return None
    return time.perf_counter() - start


def _start_workers(count: int, models: Sequence[Any]) -> Any:
    """``count`` local worker processes, started with the runtimes of ``models`` imported."""
    from quantlens.backends import backend_for
    from quantlens.engine.pool import start_workers

    modules = {name for m in models if isinstance(m, (str, os.PathLike))
               for name in backend_for(m).runtime_imports if ":" not in name}  # fmt: skip
    return start_workers(count, sorted(modules))


def _performance(
    models: Sequence[Model], sample: Sequence[np.ndarray], num_threads: int | None
) -> list[Performance | None]:
    """Each model's benchmark figures; stored reference outputs have none, and candidates
    then no speed-up (there is no reference to be faster than)."""
    if not isinstance(models[0], StoredOutputs):
        return list(performance_of(models, sample, num_threads))
    timed = performance_of(models[1:], sample, num_threads)
    return [None, *(replace(p, speedup=None, speedup_ci95=None, speed_baseline=None)
                    for p in timed)]  # fmt: skip


def probe_models(
    models: Sequence[Model], wiring: Sequence[tuple[list[int], list[int]]], dataset: Dataset,
    constants: Mapping[str, Any], allow_nonfinite: bool, batch_size: int,
) -> list[BatchingDecision]:  # fmt: skip
    """Decide how each model runs batches, on the data's first samples (each model runs them
    one at a time and as one batch; see :mod:`quantlens.models.batching`): as many as an
    inline run compares, PROBE_SAMPLES or the batch size if smaller."""
    n = min(PROBE_SAMPLES, batch_size)
    first = dataset.head(models[0].inputs, n, allow_nonfinite=allow_nonfinite,
                         constants=constants)  # fmt: skip
    return probe_all(models, [[first.inputs[i] for i in ins] for ins, _ in wiring])


def _with_invoke_size(
    decision: BatchingDecision, model: Model, batch_size: int, samples: int
) -> BatchingDecision:
    """The decision with the samples each invoke really held."""
    if decision.mode == "resize":
        size = min(batch_size, samples)
    elif decision.mode == "per-sample":
        size = 1
    else:
        size = declared_batch(model.inputs)
    return replace(decision, samples_per_invoke=size)


def batching_warnings(
    names: Sequence[str], decisions: Sequence[BatchingDecision], batch_size: int | None
) -> Iterator[ReportWarning]:
    """A warning per model whose outputs depend on the batch, and per model that could not
    run the batch size the user asked for (``batch_size``; None when not asked)."""
    for name, d in zip(names, decisions, strict=True):
        per_invoke = d.samples_per_invoke or 1
        if d.batch_dependent:
            yield ReportWarning("batch_dependent", name, f"{name}: {d.reason}; it ran "
                                f"{per_invoke} sample(s) per invoke, as deployed")  # fmt: skip
        elif batch_size is not None and d.mode != "resize" and per_invoke < batch_size:
            yield ReportWarning(
                "batch_size_overridden", name,
                f"{name}: ran {per_invoke} sample(s) per invoke, not the batch size "
                f"{batch_size} asked for ({d.reason})",
            )  # fmt: skip


#: An input whose quantized values clip this often is probably scaled unlike the data the
#: model was calibrated on (0-255 pixels into a model calibrated on [0, 1]).
SATURATION_WARNING = 0.01


def sanity_warnings(
    models: Sequence[Model], names: Sequence[str], states: Sequence[RunState]
) -> Iterator[ReportWarning]:
    """What makes the run's numbers suspect: a reference that is itself quantized, inputs
    that clip when the model quantizes them."""
    ref = models[0]
    quantized = integer_parts(ref.info())
    if quantized:
        yield ReportWarning(
            "reference_quantized", names[0],
            f"the reference {names[0]} is itself quantized ({', '.join(quantized)}): fidelity "
            "is measured against a quantized model; give the float model as the reference",
        )  # fmt: skip
    for model, name, st in zip(models, names, states, strict=True):
        quant = input_quantization(model)
        for spec, (clipped, seen), q in zip(model.inputs, st.saturation, quant, strict=False):
            if q is None or not seen or clipped / seen <= SATURATION_WARNING:
                continue
            qp, dtype = q
            info = np.iinfo(np.dtype(dtype))
            low = (info.min - qp.zero_point[0]) * qp.scale[0]
            high = (info.max - qp.zero_point[0]) * qp.scale[0]
            yield ReportWarning(
                "input_saturation", name,
                f"{name}: {clipped / seen:.1%} of the values of input '{spec.name}' fall outside "
                f"the {dtype} range [{low:.4g}, {high:.4g}] it is quantized to, and clip; is "
                "the data scaled as the model expects (its calibration data's range)?",
            )  # fmt: skip


#: evaluate's benchmark: short, since it comes on top of the evaluation itself.
EVAL_BENCH = {"warmup_runs": 5, "runs": 30, "min_seconds": 0.5}


def performance_of(
    models: Sequence[Model], sample: Sequence[np.ndarray], num_threads: int | None,
    *, memory: bool = True,
) -> list[Performance]:  # fmt: skip
    """Each model's benchmark figures on ``sample``'s first sample; speed-ups against the
    first runtime model (``.tflite`` or ``.onnx``: TensorFlow models are timed apart and get
    none unless all are TensorFlow's), with the interval of the paired ratio of medians.
    ``memory``: also probe init time, first inference and peak RSS in a child process (which
    loads each model from its path, as deployed)."""
    from quantlens.bench import benchmark, timing_groups

    one = [x[:1] for x in sample]  # the benchmark runs one sample, as a deployed model does
    result = benchmark(models, threads=[num_threads], data=one, measure_memory=memory,
                       **EVAL_BENCH)  # type: ignore[arg-type]  # fmt: skip
    comparable = set(timing_groups(list(models))[0])
    out = []
    for i, e in enumerate(result.results):
        ratio = e.ratio_to_first or {"ratio": 1.0, "ci95_low": 1.0, "ci95_high": 1.0}
        speedup, ci = None, None
        if i in comparable and ratio["ratio"] > 0:
            speedup = 1.0 / ratio["ratio"]
            low, high = ratio["ci95_high"], ratio["ci95_low"]
            ci = (1.0 / low if low > 0 else float("inf"), 1.0 / high if high > 0 else float("inf"))
        out.append(
            Performance(
                latency_ms={k: e.latency_ms[k] for k in EVALUATION_LATENCY_KEYS},
                throughput_sps=e.throughput_sps,
                peak_rss_mb=e.peak_rss_mb,
                size_gzip_bytes=e.size_gzip_bytes,
                speedup=speedup,
                warnings=e.warnings,
                samples_ms=e.samples_ms,
                speedup_ci95=ci,
                speed_baseline=e.ratio_baseline if i in comparable else None,
            )
        )
    return out


def _model_result(
    m: Model, run: RunState, name: str, ref: Model, ref_run: RunState,
    performance: Performance | None,
) -> ModelResult:  # fmt: skip
    is_reference = m is ref
    both = run.task is not None and ref_run.task is not None
    paired_stats = paired(ref_run.task, run.task) if both and not is_reference else None  # type: ignore[arg-type]
    fidelity = (
        [_noting(st.result(), run.nonfinite) if st.samples else {} for st in run.fidelity]
        if run.fidelity
        else None
    )
    task_metrics = None
    if run.task is not None:
        try:
            task_metrics = _noting(run.task.result(), run.nonfinite)
        except ValueError:  # every sample had a non-finite output
            task_metrics = {"excluded_nonfinite": float(run.nonfinite)}
    return ModelResult(
        name=name,
        path=m.path,
        format=m.format,
        role="reference" if is_reference else "candidate",
        size_bytes=m.info().size_bytes,
        task_metrics=task_metrics,
        fidelity=fidelity[0] if fidelity else None,
        outputs=tuple(
            OutputFidelity(spec.name, f) for spec, f in zip(ref.outputs, fidelity, strict=True)
        )
        if fidelity and len(fidelity) > 1
        else (),
        performance=performance,
        paired=paired_stats,
        nonfinite_outputs=run.nonfinite,
        zero_outputs=run.zeroed,
        distribution=run.fidelity[0].distribution()
        if run.fidelity and run.fidelity[0].samples
        else None,
    )


def _noting(metrics: dict[str, float], excluded: int) -> dict[str, float]:
    """Metrics that say how many samples they left out for non-finite outputs."""
    return {**metrics, "excluded_nonfinite": float(excluded)} if excluded else metrics
