"""One shard of an evaluation: every model run on the same batches, their metric states
accumulated. A :class:`Plan` carries all a worker needs, so a shard runs the same inline, in
a worker thread or process or on Ray; :class:`ShardOutcome` objects merge in shard order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantlens._process import reuse_freed_memory
from quantlens.data import Dataset
from quantlens.errors import ConfigError, ModelMismatchError
from quantlens.metrics import ClassificationState, FidelityState, RegressionState
from quantlens.metrics.kernels import (
    flat,
    has_class_axis,
    row_argmax,
    rows_all_finite,
    rows_all_zero,
)
from quantlens.models.base import Model
from quantlens.models.batching import probe_all, probe_span, set_invoke_size
from quantlens.models.matching import wire
from quantlens.models.quantization import clipped_count
from quantlens.results import BatchingDecision, QuantParams

TaskState = ClassificationState | RegressionState


def infer_task(labels: np.ndarray | None, output: np.ndarray, forced: str | None) -> str:
    """'classification', 'regression' or 'none' from the labels and the first output."""
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
    #: Samples whose outputs are all zero where the reference's are not (a dead kernel).
    zeroed: int = 0
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
                        self.nonfinite + other.nonfinite, self.zeroed + other.zeroed,
                        saturation)  # fmt: skip


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
    #: The first path is a file of the reference's stored outputs, not a model.
    stored_reference: bool = False
    #: Per model, at most this many samples per invoke of a resized batch (None: the batch).
    invoke_sizes: tuple[int | None, ...] = ()

    @property
    def models_key(self) -> tuple[Any, ...]:
        """What decides the loaded models: a worker loads them once per key."""
        return (self.paths, self.num_threads, self.trusted, self.layout, self.batching,
                self.stored_reference, self.invoke_sizes)  # fmt: skip


#: Metrics are updated on blocks of consecutive batches, so that their fixed cost per call
#: (dozens of small NumPy operations per model) is paid once a block: on a model of a few
#: µs per sample it is otherwise a large share of the run. A block holds at most this many
#: samples (MNIST-size CNN and its int8 twin, 10,000 samples: the metrics took 4.7 ms in
#: blocks of 4,096 and 3.7 ms in one block), or this many bytes of outputs, every model's
#: (beyond one batch): the metrics' float64 temporaries stay in the heap and the caches. A
#: 1,000-class output, 20,000 samples: 0.80 s and 418 MB peak in blocks of 32 MiB, 0.64 s
#: and 162 MB in blocks of 4 MiB (one batch each).
BLOCK_SAMPLES = 16384
BLOCK_BYTES = 4 * 2**20


@dataclass
class _Block:
    """Consecutive batches' outputs (per model, per batch, in the reference's output order)
    and labels, waiting for their metrics."""

    outs: list[list[list[np.ndarray]]]
    labels: list[np.ndarray] | None
    samples: int = 0
    nbytes: int = 0

    def fits(self, outs: list[list[np.ndarray]], labels: Any) -> bool:
        """The batch can join: labels present alike, each output of the same sample shape."""
        if not self.samples:
            return True
        if (labels is None) != (self.labels is None):
            return False
        return all(o.shape[1:] == b.shape[1:]
                   for model, held in zip(outs, self.outs, strict=True)
                   for o, b in zip(model, held[0], strict=True))  # fmt: skip

    def add(self, outs: list[list[np.ndarray]], labels: Any) -> None:
        for held, model in zip(self.outs, outs, strict=True):
            held.append(model)
        if labels is not None:
            self.labels = [*(self.labels or []), np.asarray(labels)]
        self.samples += int(outs[0][0].shape[0])
        self.nbytes += sum(o.nbytes for model in outs for o in model)

    def full(self) -> bool:
        return self.samples >= BLOCK_SAMPLES or self.nbytes >= BLOCK_BYTES

    def joined(self) -> tuple[list[list[np.ndarray]], np.ndarray | None]:
        outs = [[parts[0] if len(batches) == 1 else np.concatenate(parts)
                 for parts in zip(*batches, strict=True)] for batches in self.outs]  # fmt: skip
        labels = None
        if self.labels is not None:
            labels = self.labels[0] if len(self.labels) == 1 else np.concatenate(self.labels)
        return outs, labels


def run_shard(
    models: Sequence[Model], dataset: Dataset, plan: Plan, *, limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    decided: Callable[[list[BatchingDecision]], None] | None = None,
) -> ShardOutcome:  # fmt: skip
    """Run every model on one shard of the data and accumulate their metric states.

    When the plan carries no batching decisions, each model's batching is probed on the
    shard's first batch (data read once, such as an iterable, is never read twice), and
    ``decided`` is told the decisions as soon as they are made (workers waiting for them).
    """
    reuse_freed_memory()
    ref = models[0]
    wiring = wire(models)
    states = [RunState(fidelity=None if i == 0 else [FidelityState() for _ in ref.outputs])
              for i in range(len(models))]  # fmt: skip
    task: list[str | None] = [None]  # as resolved on the first block
    samples = 0
    first_sample: list[np.ndarray] = []
    quantized_inputs = [input_quantization(m) for m in models]
    # A model told the batch's range can skip work (see LiteRTModel.predict_in_range).
    runs = [getattr(m, "predict_in_range", None) for m in models]
    decisions: list[BatchingDecision] = []
    block = _Block([[] for _ in models], None)

    def flush() -> None:
        nonlocal block
        if block.samples:
            outs, labels = block.joined()
            task[0] = _account(models, states, outs, labels, plan, task[0])
        block = _Block([[] for _ in models], None)

    for batch in dataset.bind(
        ref.inputs, batch_size=plan.batch_size, limit=limit,
        allow_nonfinite=plan.allow_nonfinite, constants=plan.constants,
    ):  # fmt: skip
        feeds = [[batch.inputs[i] for i in ins] for ins, _ in wiring]
        probed: list[list[np.ndarray] | None] = [None] * len(models)
        if not plan.batching and not decisions:  # the first batch decides the batching
            decisions, probed = _probe_first(models, feeds, decided)
        outs = []
        for model, fed, (ins, outs_order), st, quant, raw, in_range in zip(
            models, feeds, wiring, states, quantized_inputs, probed, runs, strict=True
        ):
            ranges = [batch.ranges[i] for i in ins] if batch.ranges else None
            if any(q is not None for q in quant):
                st.saturation = _count_saturation(st.saturation, fed, quant,
                                                  ranges or [None] * len(ins))  # fmt: skip
            if raw is None:
                raw = in_range(fed, ranges) if in_range and ranges else model.predict(fed)
            outs.append([raw[j] for j in outs_order])
        if not block.fits(outs, batch.labels):
            flush()
        block.add(outs, batch.labels)
        if block.full():
            flush()
        if not first_sample:
            # a copy: a view would keep the whole read buffer alive for the run
            first_sample = [x[:1].copy() for x in batch.inputs]
        samples += len(batch)
        if progress is not None:
            progress(len(batch))
    flush()
    return ShardOutcome(samples, task[0], states, first_sample, decisions)


def _probe_first(
    models: Sequence[Model], feeds: list[list[np.ndarray]],
    decided: Callable[[list[BatchingDecision]], None] | None,
) -> tuple[list[BatchingDecision], list[list[np.ndarray] | None]]:  # fmt: skip
    """Each model's batching, decided on the data's first batch, and that batch's outputs
    as decided.

    With workers waiting for the decisions (``decided``), the probe runs only the batch's
    first invoke of each model (:func:`probe_span`) and tells them before the rest of the
    batch runs: MobileNetV2-128's second thread otherwise waited 145 ms for a batch of 64.
    Inline, the probe runs the whole batch, each large model in a thread of its own."""
    n = int(feeds[0][0].shape[0])
    span = n if decided is None else probe_span(models, n)
    probes = probe_all(models, [[x[:span] for x in fed] for fed in feeds], batch=True)
    decisions = [d for d, _ in probes]
    if decided is not None:
        decided(decisions)
    if span == n:
        return decisions, [o for _, o in probes]
    return decisions, [
        [np.concatenate([a, b]) for a, b in zip(head, model.predict([x[span:] for x in fed]),
                                                strict=True)]
        for model, fed, (_, head) in zip(models, feeds, probes, strict=True)
    ]  # fmt: skip


def _account(
    models: Sequence[Model], states: list[RunState], outs: list[list[np.ndarray]],
    labels: np.ndarray | None, plan: Plan, resolved_task: str | None,
) -> str | None:  # fmt: skip
    """Add one block of every model's outputs (the reference's first) to their metric
    states; returns the task (resolved on the first block)."""
    ref = models[0]
    # Each model's first output, as class scores where it is one, and each row's top class:
    # made once and read by both the fidelity and the task metrics.
    outs = [[_scores(o[0]), *o[1:]] for o in outs]
    tops = [row_argmax(o[0]) if has_class_axis(o[0]) else None for o in outs]
    ref_out, ref_ok, ref_zero = outs[0], finite_rows(outs[0]), all_zero_rows(outs[0])
    if resolved_task is None:
        resolved_task = infer_task(labels, ref_out[0], plan.task)
    for model, st, out, top in zip(models, states, outs, tops, strict=True):
        ok = ref_ok if model is ref else finite_rows(out)
        st.nonfinite += int((~ok).sum())
        if model is not ref:
            st.zeroed += int((all_zero_rows(out) & ~ref_zero).sum())
        if st.fidelity is not None:
            both = ok & ref_ok
            every = bool(both.all())
            kept = labels if labels is None or every else labels[both]
            pair = None  # the first output's top classes, reference's and this model's
            if top is not None and tops[0] is not None:
                pair = (tops[0], top) if every else (tops[0][both], top[both])
            st.fidelity = [
                _update_fidelity(f, r if every else r[both], o if every else o[both],
                                 model.name, spec.name, kept if k == 0 else None,
                                 pair if k == 0 else None)
                if both.any() else f
                for k, (f, r, o, spec) in enumerate(
                    zip(st.fidelity, ref_out, out, ref.outputs, strict=True))
            ]  # fmt: skip
        if resolved_task != "none" and labels is not None:
            if st.task is None:
                st.task = _new_task_state(resolved_task, out[0])
            if isinstance(st.task, ClassificationState):
                st.task = st.task.update(labels, out[0], ok, top=top)
            else:
                st.task = st.task.update(labels, out[0], ok)
    return resolved_task


def _scores(output: np.ndarray) -> np.ndarray:
    """An (N, C) class output as the metrics read it (:func:`flat`); any other as it is."""
    return flat(output) if has_class_axis(output) else output


def input_quantization(model: Model) -> list[tuple[QuantParams, str] | None]:
    """Per input of ``model``, how the model quantizes it (None: it stays float)."""
    get = getattr(model, "input_quantization", None)
    return list(get()) if get is not None else [None] * len(model.inputs)


def _count_saturation(
    counts: tuple[tuple[int, int], ...], fed: Sequence[np.ndarray],
    quant: Sequence[tuple[QuantParams, str] | None],
    ranges: Sequence[tuple[float, float] | None],
) -> tuple[tuple[int, int], ...]:  # fmt: skip
    before = counts or tuple((0, 0) for _ in fed)
    return tuple(
        (c + clipped_count(x, q[0], q[1], r), n + x.size) if q is not None else (c, n)
        for (c, n), x, q, r in zip(before, fed, quant, ranges, strict=True)
    )


def finite_rows(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample: every output value is finite."""
    n = outputs[0].shape[0]
    ok = np.ones(n, dtype=bool)
    for o in outputs:
        if np.issubdtype(o.dtype, np.floating):
            ok &= rows_all_finite(o.reshape(n, -1))
    return ok


def all_zero_rows(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample: every value of every output is zero."""
    n = outputs[0].shape[0]
    zero = np.ones(n, dtype=bool)
    for o in outputs:
        zero &= rows_all_zero(o.reshape(n, -1))
    return zero


def _update_fidelity(
    state: FidelityState, ref: np.ndarray, cand: np.ndarray, model: str, output: str,
    labels: np.ndarray | None = None, tops: tuple[np.ndarray, np.ndarray] | None = None,
) -> FidelityState:  # fmt: skip
    if ref.shape != cand.shape:
        raise ModelMismatchError(
            f"{model} output for '{output}' has shape {cand.shape} where the reference's has "
            f"{ref.shape}; compare models of the same graph"
        )
    return state.update(ref, cand, labels, tops=tops)


def load_plan_models(plan: Plan) -> list[Any]:
    """The plan's models, loaded afresh as a worker runs them: its own instances (a
    runtime's interpreter serves one thread at a time), batching as the caller decided."""
    from quantlens.models.base import trusted_models
    from quantlens.models.containment import mark_verified
    from quantlens.models.layout import adapt
    from quantlens.models.loading import load_model
    from quantlens.models.stored import load_reference_outputs

    mark_verified(plan.verified)

    def load(i: int, path: str) -> Any:
        if i == 0 and plan.stored_reference:
            return load_reference_outputs(path)
        return adapt(load_model(path, num_threads=plan.num_threads), plan.layout)

    with trusted_models(plan.trusted):
        models = [load(i, p) for i, p in enumerate(plan.paths)]
    set_batchings(models, plan)
    for model, size in zip(models, plan.invoke_sizes, strict=False):
        set_invoke_size(model, size)
    return models


def set_batchings(models: Sequence[Any], plan: Plan) -> None:
    """Run each model's batches as the plan says the caller's probe decided (nothing when
    the plan carries no decisions yet)."""
    for model, mode in zip(models, plan.batching, strict=False):
        model.set_batching(mode)


_MODELS: dict[Any, list[Any]] = {}  # per worker process: the plan's models -> loaded


def shard_task(plan: Any, dataset: Any) -> Any:
    """Evaluate one shard in a worker process (models loaded once per process and plan)."""
    key = plan.models_key
    if key not in _MODELS:
        _MODELS[key] = load_plan_models(plan)
    return run_shard(_MODELS[key], dataset, plan)
