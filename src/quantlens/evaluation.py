"""evaluate(): run a reference and candidates on the same data and accumulate the metrics."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from quantlens.data import Dataset, load_dataset
from quantlens.errors import ConfigError, DataError, ModelMismatchError
from quantlens.metrics import ClassificationState, FidelityState, RegressionState
from quantlens.metrics.kernels import has_class_axis
from quantlens.models import containment
from quantlens.models.base import (
    Model,
    QuantParams,
    TensorSpec,
    models_trusted,
    plain_name,
    unique_names,
)
from quantlens.models.batching import PROBE_SAMPLES, declared_batch
from quantlens.models.layout import adapt
from quantlens.models.loading import load_model
from quantlens.models.quantization import clipped_count, integer_parts
from quantlens.paired import paired
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

TASKS = ("classification", "regression")
SHARDS_PER_WORKER = 4  # more shards than workers: balanced load and a moving progress bar
MIN_SAMPLES_PER_WORKER = 512
DEFAULT_BATCH_SIZE = 32

TaskState = ClassificationState | RegressionState


def _compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )


def match_tensors(
    ref: Sequence[TensorSpec], cand: Sequence[TensorSpec], kind: str, cand_name: str
) -> list[int]:
    """For each reference tensor, the index of the matching candidate tensor.

    Tensors are matched by name when both models use the same set of names, otherwise by
    order; matched tensors must have compatible per-sample shapes.

    Raises:
        ModelMismatchError: the counts differ, or a matched pair has different shapes.
    """
    if len(ref) != len(cand):
        raise ModelMismatchError(
            f"{cand_name} has {len(cand)} {kind}(s) but the reference has {len(ref)}; "
            "compare models made from the same source"
        )
    ref_names = [plain_name(t.name) for t in ref]
    cand_names = [plain_name(t.name) for t in cand]
    if len(set(ref_names)) == len(ref_names) and set(ref_names) == set(cand_names):
        order = [cand_names.index(n) for n in ref_names]
    else:
        order = list(range(len(ref)))
    for r, i in zip(ref, order, strict=True):
        c = cand[i]
        if not _compatible(r.sample_shape, c.sample_shape):
            raise ModelMismatchError(
                f"{cand_name} {kind} '{c.name}' has per-sample shape {c.sample_shape} where the "
                f"reference's '{r.name}' has {r.sample_shape}; compare models of the same graph"
            )
    return order


def feed_order(ref: Sequence[TensorSpec], cand: Sequence[TensorSpec], cand_name: str) -> list[int]:
    """For each candidate input, the index of the reference input that feeds it."""
    order = match_tensors(ref, cand, "input", cand_name)
    inverse = [0] * len(order)
    for ref_i, cand_i in enumerate(order):
        inverse[cand_i] = ref_i
    return inverse


def infer_task(labels: np.ndarray | None, output: np.ndarray, forced: str | None) -> str:
    """'classification', 'regression' or 'none' from the labels and the first output."""
    if forced is not None and forced not in TASKS:
        raise ConfigError(f"unknown task '{forced}'; use one of {', '.join(TASKS)}")
    if labels is None:
        if forced is not None:
            raise ConfigError(f"task '{forced}' needs labels, and the data has none")
        return "none"
    if forced is not None:
        return forced
    y = np.asarray(labels)
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(y == np.round(y)))
    )
    if has_class_axis(output):
        per_sample = y.shape[1:]
        if integral and per_sample in ((), (1,), (output.shape[1],)):
            return "classification"
    elif np.issubdtype(y.dtype, np.integer) and output.reshape(len(output), -1).shape[1] == 1:
        return "classification"  # a single sigmoid unit with integer labels
    return "regression"


def _new_task_state(task: str, output: np.ndarray) -> TaskState:
    if task == "classification":
        return ClassificationState.empty(int(np.prod(output.shape[1:])))
    return RegressionState()


@dataclass
class RunState:
    """One model's accumulators over the samples a shard saw (picklable, mergeable)."""

    task: TaskState | None = None
    fidelity: list[FidelityState] | None = None
    nonfinite: int = 0  # samples with NaN or inf in any output, left out of the metrics
    #: Per model input: (values that clip at the quantized dtype's range, values seen).
    saturation: tuple[tuple[int, int], ...] = ()

    def merge(self, other: RunState) -> RunState:
        """This shard's samples, then the other's."""
        task = other.task if self.task is None else (
            self.task if other.task is None else self.task.merge(other.task)  # type: ignore[arg-type]
        )  # fmt: skip
        fidelity = None
        if self.fidelity is not None and other.fidelity is not None:
            fidelity = [a.merge(b) for a, b in zip(self.fidelity, other.fidelity, strict=True)]
        saturation = (
            tuple(
                (a[0] + b[0], a[1] + b[1])
                for a, b in zip(self.saturation, other.saturation, strict=True)
            )
            if self.saturation and other.saturation
            else self.saturation or other.saturation
        )
        return RunState(task, fidelity or self.fidelity or other.fidelity,
                        self.nonfinite + other.nonfinite, saturation)  # fmt: skip


@dataclass
class ShardOutcome:
    """What one shard of the data produced: every model's state, in the models' order."""

    samples: int
    task: str | None
    states: list[RunState]
    first_sample: list[np.ndarray]
    decisions: list[BatchingDecision] = field(default_factory=list)  # when probed here

    def merge(self, other: ShardOutcome) -> ShardOutcome:
        return ShardOutcome(
            self.samples + other.samples,
            self.task or other.task,
            [a.merge(b) for a, b in zip(self.states, other.states, strict=True)],
            self.first_sample or other.first_sample,
            self.decisions or other.decisions,
        )


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to evaluate a shard by itself (picklable)."""

    paths: tuple[str, ...]  # the reference first
    task: str | None
    batch_size: int
    num_threads: int | None
    allow_nonfinite: bool
    trusted: bool = False
    layout: str | None = None  # the data's image layout; models laid out otherwise adapt
    batching: tuple[str, ...] = ()  # per model, as the probe decided
    constants: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: Digests of the models this process ran once in a child: workers need not again.
    verified: tuple[str, ...] = field(default=(), hash=False, compare=False)

    @property
    def models_key(self) -> tuple[Any, ...]:
        """What decides the loaded models: a worker loads them once per key."""
        return (self.paths, self.num_threads, self.trusted, self.layout, self.batching)


def wire(models: Sequence[Model]) -> list[tuple[list[int], list[int]]]:
    """Per model: (reference input feeding each of its inputs, its output matching each
    reference output)."""
    ref = models[0]
    wiring = [(list(range(len(ref.inputs))), list(range(len(ref.outputs))))]
    for c in models[1:]:
        wiring.append((feed_order(ref.inputs, c.inputs, c.name),
                       match_tensors(ref.outputs, c.outputs, "output", c.name)))  # fmt: skip
    return wiring


def run_shard(
    models: Sequence[Model], dataset: Dataset, plan: Plan, *, limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardOutcome:  # fmt: skip
    """Run every model on one shard of the data and accumulate their metric states.

    When the plan carries no batching decisions, each model's batching is probed on the
    shard's first batch (data read once, such as an iterable, is never read twice).
    """
    ref = models[0]
    wiring = wire(models)
    states = [RunState(fidelity=None if i == 0 else [FidelityState() for _ in ref.outputs])
              for i in range(len(models))]  # fmt: skip
    resolved_task: str | None = None
    samples = 0
    first_sample: list[np.ndarray] = []
    quantized_inputs = [input_quantization(m) for m in models]
    decisions: list[BatchingDecision] = []
    for batch in dataset.bind(
        ref.inputs, batch_size=plan.batch_size, limit=limit,
        allow_nonfinite=plan.allow_nonfinite, constants=plan.constants,
    ):  # fmt: skip
        if not plan.batching and not decisions:
            decisions = [m.probe_batching([batch.inputs[i][:PROBE_SAMPLES] for i in ins])
                         for m, (ins, _) in zip(models, wiring, strict=True)]  # fmt: skip
        ref_out: list[np.ndarray] = []
        ref_ok = np.ones(len(batch), dtype=bool)
        for model, (ins, outs_order), st, quant in zip(
            models, wiring, states, quantized_inputs, strict=True
        ):
            fed = [batch.inputs[i] for i in ins]
            if any(q is not None for q in quant):
                st.saturation = _count_saturation(st.saturation, fed, quant)
            raw = model.predict(fed)
            outs = [raw[j] for j in outs_order]
            ok = finite_rows(outs)
            st.nonfinite += int((~ok).sum())
            if model is ref:
                ref_out, ref_ok = outs, ok
                if resolved_task is None:
                    resolved_task = infer_task(batch.labels, outs[0], plan.task)
            if st.fidelity is not None:
                both = ok & ref_ok
                st.fidelity = [
                    _update_fidelity(f, r[both], o[both], model.name, spec.name)
                    if both.any() else f
                    for f, r, o, spec in zip(st.fidelity, ref_out, outs, ref.outputs, strict=True)
                ]  # fmt: skip
            if resolved_task != "none" and batch.labels is not None:
                if st.task is None:
                    st.task = _new_task_state(resolved_task, outs[0])  # type: ignore[arg-type]
                st.task = st.task.update(batch.labels, outs[0], ok)
        if not first_sample:
            first_sample = [x[:1] for x in batch.inputs]
        samples += len(batch)
        if progress is not None:
            progress(len(batch))
    return ShardOutcome(samples, resolved_task, states, first_sample, decisions)


def _as_model(m: Model | str | os.PathLike[str], num_threads: int | None) -> Model:
    return m if isinstance(m, Model) else load_model(m, num_threads=num_threads)


def evaluate(
    reference: Model | str | os.PathLike[str],
    candidates: Sequence[Model | str | os.PathLike[str]],
    data: Any,
    *,
    labels: Any = None,
    task: str | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    num_threads: int | None = None,
    allow_nonfinite: bool = False,
    bench: bool = False,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    layout: str | None = None,
    constants: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Run a reference model and its candidates on the same data; report accuracy and fidelity.

    Args:
        reference: the float model (a path or a loaded :class:`Model`).
        candidates: the quantized models to compare with it.
        data: anything :func:`quantlens.load_dataset` accepts.
        labels: labels for array data that does not carry them.
        task: force ``"classification"`` or ``"regression"``; inferred from labels by default.
        batch_size: samples per invoke (default 32), for models whose outputs do not
            depend on it; a model with a declared batch runs in chunks of it and a
            batch-dependent one one sample at a time (a warning says so when asked for).
        limit: use at most this many samples.
        num_threads: runtime threads per model (``None``: the runtime's default).
        allow_nonfinite: run on inputs holding NaN or inf instead of refusing them.
        bench: also measure each model's latency (batch of 1, the data's first sample),
            throughput, peak memory and compressed size, as :func:`quantlens.benchmark`.
        workers: split the data into shards run by this many worker processes (each with
            its own interpreters; threads per interpreter default to cores / workers) and
            merge their metric states; 1 runs inline.
        engine: ``"local"`` (a process pool) or ``"ray"`` (a Ray cluster; local when
            ``ray_address`` is None), used when ``workers > 1``.
        ray_address: the address of an existing Ray cluster.
        layout: the data's image layout, ``"nhwc"`` or ``"nchw"``: a model whose 4-D image
            inputs are laid out the other way (an ONNX model from PyTorch against a TFLite
            model from Keras) gets them transposed. ``None``: every model takes the data as is.
        constants: inputs fixed by name, the same value for every sample (a sample rate);
            the data need not hold them.
        progress: called with the number of samples after each batch.
        status: called with a line of text before the benchmark.

    Returns:
        An :class:`EvaluationResult`, the reference first. Task metrics are computed on each
        model's first output; fidelity on every output, matched to the reference's.

    Raises:
        QuantlensError: a model or the data cannot be loaded, or they do not fit each other.
    """
    asked_batch = batch_size
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    dataset = load_dataset(data, labels)
    workers = _useful_workers(workers, dataset.num_samples, limit)
    shards = dataset.shards(workers * SHARDS_PER_WORKER, limit) if workers > 1 else None
    if workers > 1 and shards is None:
        raise ConfigError("--workers needs data of known size (a file or arrays); "
                          "an iterable or tf.data.Dataset runs with one worker")  # fmt: skip
    threads = num_threads
    if shards is not None and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)  # do not oversubscribe the cores
    models = [adapt(_as_model(m, threads), layout) for m in (reference, *candidates)]
    wiring = wire(models)  # refuse mismatched models before any work
    fixed = dict(constants or {})
    # Sharded data is re-read by each worker: probe it here, once, and hand the decisions on.
    # Inline, the probe runs on the first batch of the run itself.
    decisions = probe_models(models, wiring, dataset, fixed, allow_nonfinite) if shards else []
    plan = Plan(tuple(m.path for m in models), task, batch_size, threads, allow_nonfinite,
                models_trusted(), layout, tuple(d.mode for d in decisions), fixed,
                containment.verified())  # fmt: skip
    if shards is None:
        outcome = run_shard(models, dataset, plan, limit=limit, progress=progress)
        decisions = outcome.decisions
    else:
        from quantlens.engine import run_shards

        parts = run_shards(plan, shards, engine=engine, workers=workers,
                           ray_address=ray_address, progress=progress)  # fmt: skip
        outcome = functools.reduce(ShardOutcome.merge, parts)
    if outcome.samples == 0:
        raise DataError(f"the data set {dataset.source} is empty; give at least one sample")
    names = unique_names([m.name for m in models])
    if bench and status is not None:
        status(f"benchmarking {len(models)} models: latency, then memory in a child process "
               "each…")  # fmt: skip
    perf = _performance(models, outcome.first_sample, threads) if bench else None
    decisions = [_with_invoke_size(d, m, batch_size, outcome.samples)
                 for d, m in zip(decisions, models, strict=True)]  # fmt: skip
    results = tuple(
        replace(
            _model_result(m, st, name, models[0], outcome.states[0], perf[i] if perf else None),
            batching=decisions[i],
        )
        for i, (m, st, name) in enumerate(zip(models, outcome.states, names, strict=True))
    )
    return EvaluationResult(
        dataset=DatasetSummary(dataset.source, outcome.samples, outcome.task or "none"),
        reference=names[0],
        models=results,
        settings={
            "batch_size": batch_size,
            "limit": limit,
            "num_threads": threads,
            "workers": workers if shards else 1,
            "engine": engine if shards else "inline",
        },
        warnings=(
            *batching_warnings(names, decisions, asked_batch),
            *sanity_warnings(models, names, outcome.states),
        ),
    )


def probe_models(
    models: Sequence[Model], wiring: Sequence[tuple[list[int], list[int]]], dataset: Dataset,
    constants: Mapping[str, Any], allow_nonfinite: bool,
) -> list[BatchingDecision]:  # fmt: skip
    """Decide how each model runs batches, on the data's first samples (each model runs them
    one at a time and as one batch; see :mod:`quantlens.models.batching`)."""
    first = next(dataset.bind(models[0].inputs, batch_size=PROBE_SAMPLES, limit=PROBE_SAMPLES,
                              allow_nonfinite=allow_nonfinite, constants=constants))  # fmt: skip
    return [m.probe_batching([first.inputs[i] for i in ins])
            for m, (ins, _) in zip(models, wiring, strict=True)]  # fmt: skip


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


def input_quantization(model: Model) -> list[tuple[QuantParams, str] | None]:
    """Per input of ``model``, how the model quantizes it (None: it stays float)."""
    get = getattr(model, "input_quantization", None)
    return list(get()) if get is not None else [None] * len(model.inputs)


def _count_saturation(
    counts: tuple[tuple[int, int], ...], fed: Sequence[np.ndarray],
    quant: Sequence[tuple[QuantParams, str] | None],
) -> tuple[tuple[int, int], ...]:  # fmt: skip
    before = counts or tuple((0, 0) for _ in fed)
    return tuple(
        (c + clipped_count(x, q[0], q[1]), n + x.size) if q is not None else (c, n)
        for (c, n), x, q in zip(before, fed, quant, strict=True)
    )


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


def _useful_workers(workers: int, samples: int | None, limit: int | None) -> int:
    """No more workers than the data keeps busy: a worker needs MIN_SAMPLES_PER_WORKER
    samples to repay its start-up (a process, its imports and its models)."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if samples is None:
        return workers
    n = min(samples, limit) if limit is not None else samples
    return max(1, min(workers, n // MIN_SAMPLES_PER_WORKER))


def finite_rows(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample: every output value is finite."""
    n = outputs[0].shape[0]
    ok = np.ones(n, dtype=bool)
    for o in outputs:
        if np.issubdtype(o.dtype, np.floating):
            ok &= np.isfinite(o.reshape(n, -1)).all(axis=1)
    return ok


def _update_fidelity(
    state: FidelityState, ref: np.ndarray, cand: np.ndarray, model: str, output: str
) -> FidelityState:
    if ref.shape != cand.shape:
        raise ModelMismatchError(
            f"{model} output for '{output}' has shape {cand.shape} where the reference's has "
            f"{ref.shape}; compare models of the same graph"
        )
    return state.update(ref, cand)


#: evaluate's benchmark: short, since it comes on top of the evaluation itself.
EVAL_BENCH = {"warmup_runs": 5, "runs": 30, "min_seconds": 0.5}


def _performance(
    models: list[Model], sample: list[np.ndarray], num_threads: int | None
) -> list[Performance]:
    """Each model's benchmark figures; speed-ups against the first runtime model (``.tflite``
    or ``.onnx``: TensorFlow models are timed apart and get none unless all are TensorFlow's),
    with the interval of the paired ratio of medians."""
    from quantlens.bench import benchmark, timing_groups

    one = [x[:1] for x in sample]  # the benchmark runs one sample, as a deployed model does
    result = benchmark(models, threads=[num_threads], data=one, **EVAL_BENCH)  # type: ignore[arg-type]
    comparable = set(timing_groups(models)[0])
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
    )


def _noting(metrics: dict[str, float], excluded: int) -> dict[str, float]:
    """Metrics that say how many samples they left out for non-finite outputs."""
    return {**metrics, "excluded_nonfinite": float(excluded)} if excluded else metrics
