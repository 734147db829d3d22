"""How a batch of samples reaches a model, and the probe that decides it.

quantlens hands every model its samples stacked on axis 0. A model may want them otherwise:
on another axis (a recurrent state ``[layers, batch, units]``), not at all (a sample-rate
scalar, given once for every sample), or fewer at a time than the data holds. A batch runs
one of three ways:

- ``resize``: in one invoke, the batch dimension (and any other dimension the signature
  leaves open) resized to the data's;
- ``chunks``: in chunks of the batch the model declares, the last one padded;
- ``per-sample``: one sample per invoke, as a deployed model that streams would run.

Which one is right is measured, not assumed (:func:`probe_batching`): a model whose outputs
for a sample change with the samples beside it (a fixed batch that accepts a resize and then
reuses sample 0; ONNX dynamic quantization, whose activation range spans the batch) must not
be run batched, however fast that would be.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import numpy as np

from quantlens.errors import ConfigError, DataError, ModelRunError, QuantlensError
from quantlens.results import BatchingDecision, TensorSpec

BATCHINGS = ("resize", "chunks", "per-sample")
#: Samples the probe runs one at a time and as one batch.
PROBE_SAMPLES = 8
#: Batched and one-at-a-time outputs agree when within this share of the output's largest
#: magnitude: kernels for a batch of 1 and of 8 sum in different orders (float round-off,
#: about 1e-7); a batch-dependent model differs by a quantization step or more (1e-2).
PROBE_TOLERANCE = 1e-4

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


def default_mode(inputs: Sequence[TensorSpec]) -> str:
    """The mode before any probe: chunks for a declared batch, resize when it may vary."""
    batched = [s for s in inputs if s.batch_axis is not None]
    return "chunks" if batched and all(s.declared_batch for s in batched) else "resize"


def declared_batch(inputs: Sequence[TensorSpec]) -> int:
    """The batch the model declares (1 when it leaves the batch open)."""
    for s in inputs:
        if s.declared_batch:
            return s.declared_batch
    return 1


class BatchRunner:
    """Runs batches given sample-first on a model that takes them its own way.

    ``run`` takes the model's inputs laid out as the model wants them (batch axis in place,
    unbatched inputs without one) and returns its outputs and any extra tensors as the
    runtime gives them; the runner moves the outputs' batch axes to 0.
    """

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.mode = default_mode(self.inputs)
        self.chunk = declared_batch(self.inputs)
        #: Resized, at most this many samples per invoke (None: the whole batch); see
        #: auto_invoke_size.
        self.invoke_size: int | None = None
        #: Sizes being timed on the first resized batches (see InvokeTuning), or None.
        self.tuning: InvokeTuning | None = None
        #: The runner of a copy of this model whose timed size this one takes, once timed.
        self.leader: BatchRunner | None = None
        #: Every input's batch axis is its first: a part of a batch is plain slices.
        self._batch_first = all(s.batch_axis == 0 for s in self.inputs)
        #: The outputs' batch axes, learned from the first batched run (see _sample_first).
        self._out_axes: list[int] | None = None
        self._single_shapes: list[tuple[int, ...]] | None = None

    def set_mode(self, mode: str) -> None:
        if mode not in BATCHINGS:
            raise ValueError(f"unknown batching '{mode}'")
        self.mode = mode

    @property
    def per_invoke(self) -> int | None:
        """Samples an invoke holds: one, the declared batch, or (resize) the whole batch."""
        if self.mode == "resize":
            return None
        return 1 if self.mode == "per-sample" else self.chunk

    def invokes(self, n: int) -> int:
        """How many invokes a batch of ``n`` samples takes."""
        size = self.per_invoke or self.invoke_size
        return 1 if size is None else -(-n // size)

    def predict(self, inputs: Sequence[np.ndarray], run: Run, n_outputs: int) -> list[np.ndarray]:
        """Run a batch (every array sample-first, ``n`` samples) and return ``run``'s tensors
        sample-first: the first ``n_outputs`` are model outputs, the rest extra tensors
        (intermediates, whose batch axis is 0)."""
        n = int(inputs[0].shape[0])
        if n == 0:
            raise DataError("empty batch: the data set has no samples")
        size = self.per_invoke
        resized = size is None
        if size is None:  # resized: to the batch, or invoke_size samples at a time
            if n > 1 and self._out_axes is None:
                self._single_shapes = [o.shape for o in run(self.layout(inputs, 0, 1))[:n_outputs]]
            if self.tuning is not None:
                return self._timed(inputs, run, n_outputs, self.tuning)
            leader = self.leader
            if leader is not None and leader.tuning is None:  # timed (its size set first)
                self.invoke_size, self.leader = leader.invoke_size, None
            size = self.invoke_size or n
            if size >= n:
                return self._sample_first(run(self.layout(inputs, 0, n)), n, n_outputs)
        return self._parts(inputs, run, n_outputs, size, resized)

    def _timed(
        self, inputs: Sequence[np.ndarray], run: Run, n_outputs: int, tuning: InvokeTuning
    ) -> list[np.ndarray]:
        """A resized batch at the size timed least so far (see InvokeTuning). A size the
        model fails at is dropped, and the batch runs at the size chosen, as it would have
        untimed."""
        size = tuning.next_size()
        try:
            got = self._parts(inputs, run, n_outputs, size, True, tuning)
        except (RuntimeError, ValueError, QuantlensError):
            if size == tuning.preferred:
                raise
            tuning.drop(size)
            got = self._parts(inputs, run, n_outputs, tuning.preferred, True)
        if tuning.done:
            self.invoke_size, self.tuning = tuning.best(), None
        return got

    def _parts(
        self, inputs: Sequence[np.ndarray], run: Run, n_outputs: int, size: int, resized: bool,
        tuning: InvokeTuning | None = None,
    ) -> list[np.ndarray]:  # fmt: skip
        """A batch in invokes of ``size`` samples (resized: the last to what is left; else
        padded to ``size``); with ``tuning``, each invoke but the first timed."""
        n = int(inputs[0].shape[0])
        parts: list[list[np.ndarray]] = []
        plain = resized and self._batch_first
        timed, seconds = 0, 0.0
        for start in range(0, n, size):
            stop = min(start + size, n)
            began = perf_counter() if tuning is not None else 0.0
            if plain:  # the batch as it is, a part at a time: no layout to make
                got = run([x[start:stop] for x in inputs])
                parts.append(self._sample_first(got, stop - start, n_outputs))
            elif resized:  # the last part is resized to what is left
                parts.append(self._sample_first(run(self.layout(inputs, start, stop)),
                                                stop - start, n_outputs))  # fmt: skip
            else:
                own = self.layout(inputs, start, stop, pad_to=size)
                got = self._sample_first(run(own), size, n_outputs)
                parts.append([o[: stop - start] for o in got])
            # The batch's first part may allocate the model at this size: not timed.
            if tuning is not None and start and stop - start == size:
                timed, seconds = timed + size, seconds + perf_counter() - began
        if tuning is not None and timed:
            tuning.record(size, seconds / timed)
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate(col) for col in zip(*parts, strict=True)]

    def one_invoke(self, inputs: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
        """The whole batch laid out for a single invoke (what a benchmark times).

        Raises:
            ConfigError: the model runs fewer samples per invoke than the batch holds.
        """
        n = int(inputs[0].shape[0])
        size = self.per_invoke
        if size is not None and n != size:
            raise ConfigError(
                f"{name} runs {size} sample(s) per invoke ({self.mode}); use batch size {size}"
            )
        return self.layout(inputs, 0, n)

    def layout(
        self, inputs: Sequence[np.ndarray], start: int, stop: int, pad_to: int | None = None
    ) -> list[np.ndarray]:
        """Samples [start, stop) laid out as the model takes them, padded with zeros."""
        out = []
        for spec, x in zip(self.inputs, inputs, strict=True):
            axis = spec.batch_axis
            if axis is None:  # one value for every sample (checked equal when bound)
                out.append(np.ascontiguousarray(x[0]))
                continue
            part = x if start == 0 and stop >= len(x) else x[start:stop]
            if pad_to is not None and len(part) < pad_to:
                pad = np.zeros((pad_to - len(part), *part.shape[1:]), part.dtype)
                part = np.concatenate([part, pad])
            out.append(np.ascontiguousarray(np.moveaxis(part, 0, axis)) if axis else part)
        return out

    def _sample_first(self, got: list[np.ndarray], n: int, n_outputs: int) -> list[np.ndarray]:
        first = self._out_axes is not None and not any(self._out_axes)  # every batch axis
        if first and all(o.ndim and o.shape[0] == n for o in got[:n_outputs]):
            return got
        outs = []
        for i, (o, spec) in enumerate(zip(got[:n_outputs], self.outputs, strict=True)):
            axis = self._out_axes[i] if self._out_axes is not None else _guess_axis(spec, o, n)
            if axis is None:
                o = o[None]  # a scalar output of a one-sample run
            elif axis:
                o = np.moveaxis(o, axis, 0)
            if o.ndim == 0 or o.shape[0] != n:
                raise ModelRunError(
                    f"output '{spec.name}' has shape {tuple(got[i].shape)} for a batch of {n}: "
                    "the model ignores the batch size it was given"
                )
            outs.append(o)
        if n > 1 and self._out_axes is None and self._single_shapes is not None:
            self._out_axes = [_grown_axis(s, o.shape, n) for s, o in
                              zip(self._single_shapes, got[:n_outputs], strict=True)]  # fmt: skip
        return outs + list(got[n_outputs:])


class RunnerBatching:
    """``batching``, ``set_batching`` and ``probe_batching`` for a backend whose batches go
    through a :class:`BatchRunner` (``self._runner``) to its ``predict``."""

    _runner: BatchRunner
    _stateful: bool = False  # keeps state between invokes: never resized

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    @property
    def batching(self) -> str:
        """How batches run: 'resize', 'chunks' or 'per-sample'."""
        return self._runner.mode

    def set_batching(self, mode: str) -> None:
        """Run batches this way from now on (one of ``BATCHINGS``)."""
        self._runner.set_mode(mode)

    def set_invoke_size(self, size: int | None, candidates: Sequence[int] = ()) -> None:
        """Run a resized batch at most ``size`` samples per invoke (None: all at once); with
        ``candidates``, time them on the first resized batches and keep the fastest
        (``size`` unless another beats it by TUNE_MARGIN; see :class:`InvokeTuning`)."""
        self._runner.invoke_size = size
        self._runner.tuning = None
        if size is not None and set(candidates) - {size}:
            self._runner.tuning = InvokeTuning(candidates, size)

    @property
    def invoke_size(self) -> int | None:
        """Samples per invoke of a resized batch, as chosen or, once timed, measured."""
        return self._runner.invoke_size

    @property
    def batch_runner(self) -> BatchRunner:
        """How this model's batches reach it."""
        return self._runner

    def follow_invoke_size(self, leader: Any) -> None:
        """Run at the samples per invoke that ``leader`` (another copy of this model, which
        times them) keeps, from its first batch after it has kept one."""
        self._runner.leader = leader.batch_runner

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        """Decide, on the data's first samples, how batches must run (and run them so)."""
        return probe_batching(self._runner, self.predict, sample, stateful=self._stateful)

    def probe_on_batch(
        self, batch: Sequence[np.ndarray]
    ) -> tuple[BatchingDecision, list[np.ndarray]]:
        """Decide as :meth:`probe_batching` does, the batched run being these samples
        themselves (the data's first batch, or its first samples: see
        :func:`probe_span`), and return their outputs as decided."""
        decision, batched = _probe(self._runner, self.predict, batch, self._stateful, True)
        return decision, self.predict(batch) if batched is None else batched


#: Models run side by side in threads of one process (the probe's models, an evaluation's
#: workers) only when they hold at least this much per sample, on average: a batch is then
#: spent in the runtimes, which release the GIL (MobileNetV2-128 holds 9 MiB a sample, 3 ms of
#: invoke per sample against ~0.1 ms of Python). On small models a batch is mostly Python,
#: and threads would wait for each other.
THREADED_BYTES = 2**20


def run_in_threads(
    models: Sequence[Any], shapes: Sequence[Sequence[Sequence[int]]] | None = None
) -> bool:
    """Whether these models' batches are spent in their runtimes rather than in Python, so
    that threads of one process keep as many cores busy as processes would: they hold at
    least THREADED_BYTES per sample on average (an int8 model's tensors are a quarter of its
    float reference's for the same work, so the average, not the smallest, says it; a size
    that stays unknown says no). ``shapes``: per model, its inputs' sample shapes, for the
    dimensions it leaves open."""
    total = models_sample_bytes(models, shapes)
    return total is not None and len(models) > 0 and total >= THREADED_BYTES * len(models)


def models_sample_bytes(
    models: Sequence[Any], shapes: Sequence[Sequence[Sequence[int]]] | None = None
) -> int | None:
    """What one sample takes in all these models together (:func:`sample_bytes`); None when
    one of them cannot tell."""
    total = 0
    for k, m in enumerate(models):
        size = sample_bytes(m, shapes[k] if shapes else None)
        if size is None:
            return None
        total += size
    return total


def probe_all(
    models: Sequence[Any], feeds: Sequence[Sequence[np.ndarray]], *, batch: bool = False
) -> list[Any]:
    """Each model's ``probe_batching`` on its feeds, or with ``batch`` (the feeds being each
    model's first batch) the decisions and that batch's outputs, from ``probe_on_batch``
    where the model has one. Models large enough that their runs dominate are probed at the
    same time, in threads (the runtimes release the GIL while they run): the probe runs
    before any real batch, so its time is the start-up's."""

    def probe(model: Any, feed: Sequence[np.ndarray]) -> Any:
        if not batch:
            return model.probe_batching(feed)
        on_batch = getattr(model, "probe_on_batch", None)
        if on_batch is not None:
            return on_batch(feed)
        n = min(PROBE_SAMPLES, int(feed[0].shape[0]))
        decision = model.probe_batching([x[:n] for x in feed])
        return decision, model.predict(feed)

    if len(models) == 1 or not run_in_threads(models, [[x.shape[1:] for x in f] for f in feeds]):
        return [probe(m, f) for m, f in zip(models, feeds, strict=True)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(models), "quantlens-probe") as pool:
        return list(pool.map(probe, models, feeds))


def probe_span(models: Sequence[Any], samples: int) -> int:
    """How many of a batch's first ``samples`` the probe's batched run needs to decide every
    model's batching as the run will batch it: PROBE_SAMPLES, and at least one invoke of
    each model's samples per invoke (the whole batch for a model that runs batches whole)."""
    span = PROBE_SAMPLES
    for model in models:
        size = invoke_size(model)
        if size is None:
            return samples
        span = max(span, size, 2)
    return min(span, samples)


def one_sample_feeds(
    arrays: Sequence[np.ndarray], specs: Sequence[TensorSpec]
) -> list[list[np.ndarray]]:
    """Sample-first arrays as single-sample feeds, each input laid out (batch axis in place, a
    scalar as is) and typed as the model takes it: what a quantizer's calibration reads."""
    runner = BatchRunner(specs, ())
    n = int(arrays[0].shape[0]) if len(arrays) else 0
    return [
        [x.astype("float32" if s.quantization is not None else s.dtype)
         for x, s in zip(runner.layout(arrays, i, i + 1), specs, strict=True)]
        for i in range(n)
    ]  # fmt: skip


def _guess_axis(spec: TensorSpec, out: np.ndarray, n: int) -> int | None:
    """An output's batch axis before a batched run has shown it: the signature's when it has
    the batch's size, else the first axis that has it (None: a scalar)."""
    if out.ndim == 0:
        return None
    axis = spec.batch_axis
    if axis is not None and axis < out.ndim and out.shape[axis] == n:
        return axis
    return next((i for i, d in enumerate(out.shape) if d == n), 0)


def _grown_axis(single: tuple[int, ...], batched: tuple[int, ...], n: int) -> int:
    """The axis that grew from 1 to ``n`` between a one-sample run and a batched one."""
    if len(single) == len(batched):
        pairs = enumerate(zip(single, batched, strict=True))
        grown = [i for i, (a, b) in pairs if (a, b) == (1, n)]
        if len(grown) == 1:
            return grown[0]
    return 0


def _max_relative_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x64.shape != y64.shape:
            return float("inf")
        if x64.size == 0:
            continue
        both = np.isfinite(x64) & np.isfinite(y64)
        if not np.array_equal(np.isfinite(x64), np.isfinite(y64)):
            return float("inf")
        scale = max(float(np.abs(x64[both]).max(initial=0.0)), 1e-12)
        worst = max(worst, float(np.abs(x64[both] - y64[both]).max(initial=0.0)) / scale)
    return worst


def probe_batching(
    runner: BatchRunner, predict: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    sample: Sequence[np.ndarray], *, stateful: bool = False,
) -> BatchingDecision:  # fmt: skip
    """Decide how the model runs batches, by running the first samples one at a time and as
    one batch (the one-at-a-time run is the truth), and set the runner's mode.

    Args:
        runner: the model's runner (its mode is set here).
        predict: the model's predict, run through ``runner``.
        sample: the first samples of the data, sample-first (at most PROBE_SAMPLES are used).
        stateful: the model keeps state between invokes (never resized).
    """
    return _probe(runner, predict, sample, stateful, False)[0]


def _probe(
    runner: BatchRunner, predict: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    sample: Sequence[np.ndarray], stateful: bool, whole: bool,
) -> tuple[BatchingDecision, list[np.ndarray] | None]:  # fmt: skip
    """:func:`probe_batching`; with ``whole``, ``sample`` is the run's own first samples (a
    batch, or its first invoke of each model) and the batched run is those samples (the
    first compared with the truth, as a batch of those alone would be), whose outputs come
    back when batches resize (None otherwise)."""
    declared = declared_batch(runner.inputs)
    fixed = default_mode(runner.inputs) == "chunks"
    if stateful:
        runner.set_mode("per-sample" if declared == 1 else "chunks")
        return BatchingDecision(runner.mode, "stateful (resource variables): a fresh state "
                                "for every sample, never resized"), None  # fmt: skip
    k = min(PROBE_SAMPLES, int(sample[0].shape[0]))
    first = [x[:k] for x in sample]
    own = "chunks" if fixed else "per-sample"
    runner.set_mode(own)
    truth = predict(first)
    what = f"declared batch of {declared}" if fixed else "open batch"
    if k < 2:
        runner.set_mode(default_mode(runner.inputs))
        return BatchingDecision(runner.mode, f"{what}; one sample, nothing to compare"), None
    runner.set_mode("resize")
    batch = sample if whole else first
    # The batched run puts at least two samples in an invoke (a model too large for two by
    # the byte rule too: one at a time would compare one sample at a time with itself), at the
    # size chosen rather than sizes being timed, which start once it is decided.
    chosen, timing = runner.invoke_size, runner.tuning
    runner.invoke_size, runner.tuning = None if chosen is None else max(chosen, 2), None
    try:
        batched = predict(batch)
    except QuantlensError as exc:
        runner.set_mode(own)
        said = " ".join(str(exc).split())
        said = said if len(said) <= 120 else said[:119] + "…"
        size = int(batch[0].shape[0])
        return BatchingDecision(own, f"{what}; a batch of {size} does not run ({said})"), None
    finally:
        runner.invoke_size, runner.tuning = chosen, timing
    diff = _max_relative_difference(truth, [o[:k] for o in batched])
    if diff <= PROBE_TOLERANCE:
        return BatchingDecision("resize", f"{what}; {k} samples in a batch give the outputs "
                                "of one sample at a time", diff), batched  # fmt: skip
    runner.set_mode(own)
    return BatchingDecision(
        own, f"{what}; {k} samples in a batch change their outputs (by {diff:.2g} of their "
        "magnitude): a sample's result depends on its neighbours", diff,
    ), None  # fmt: skip


#: When the user gives no batch size, each model runs as many samples per invoke as keep
#: what one invoke works through in the caches: its tensors (inputs, outputs and, where the
#: runtime tells, intermediate tensors) at most INVOKE_BYTES per runtime thread. Beyond it a
#: sample costs more, not less: per sample on one thread (bare ai_edge_litert loops),
#: MobileNetV2-128 (9 MiB of tensors a sample) runs best at 2-4 and 1.15× slower at 32,
#: mediapipe's face detector (10 MiB) best at 1 and 1.35× slower at 32, openwakeword's
#: embedding model (4.4 MiB) best at 2 and 1.07× slower at 32; their int8 twins, a quarter
#: of the bytes, best at 8 or more. At 2 threads the best size doubles.
INVOKE_BYTES = 20 * 2**20
#: ...and beyond INVOKE_FEW samples at most INVOKE_CACHE_BYTES per thread: by then an
#: invoke's fixed cost is spread thin, and more samples only push the activations out of the
#: L2 cache (2 MiB a core here). The MNIST-size CNN (42 KB a sample) runs best at 64 (2.7
#: MB) and 1.05× slower at 256; its int8 twin (11 KB) best at 128-512; a wake-word model of
#: a few KB a sample runs 1.2× slower at 128 than at 512.
INVOKE_FEW = 8
INVOKE_CACHE_BYTES = 3 * 2**20
#: The batch — the samples read, checked, run and accounted together — holds at most this
#: many samples...
AUTO_BATCH_MAX = 1024
#: ...whose tensors in all the models together take at most this much per runtime thread
#: (as INVOKE_BYTES counts them, as if they ran at once: a measure of a batch's work, about
#: 0.3 µs a KB here). Small models get large batches, over which the fixed cost of Python
#: and NumPy per batch fades (a few µs of invoke per sample pays tens of µs of it per
#: batch), each model running its own samples per invoke within the batch; large models get
#: a few, so that a batch, and the progress shown, takes a fraction of a second.
BATCH_BYTES = 128 * 2**20
#: The batch when a sample's size is unknown (an open dimension).
AUTO_BATCH_UNKNOWN = 32


def tensor_bytes(dims: Sequence[int], dtype: str) -> int:
    """Bytes of a tensor of these dimensions (a dtype NumPy does not know counts 8 bytes)."""
    return math.prod(int(d) for d in dims) * _itemsize(dtype)


@functools.cache
def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 8


def _spec_bytes(
    specs: Sequence[TensorSpec], shapes: Sequence[Sequence[int]] | None = None
) -> int | None:
    """Bytes of one sample of these tensors, an open dimension taken from ``shapes`` (each
    tensor's sample shape, as the data has it) when given; None when one stays open."""
    total = 0
    for k, s in enumerate(specs):
        dims = filled_sample_shape(s, shapes[k] if shapes is not None else None)
        if dims is None:
            return None
        total += tensor_bytes(dims, s.dtype)
    return total


def filled_sample_shape(spec: TensorSpec, given: Sequence[int] | None) -> tuple[int, ...] | None:
    """A tensor's sample shape, its open dimensions taken from ``given`` (the data's sample
    shape for it); None when one stays open."""
    dims = spec.sample_shape
    if None in dims and given is not None and len(given) == len(dims):
        dims = tuple(int(g) if d is None else d for d, g in zip(dims, given, strict=True))
    return None if None in dims else tuple(int(d) for d in dims if d is not None)


def sample_bytes(model: Any, shapes: Sequence[Sequence[int]] | None = None) -> int | None:
    """Memory one sample takes in ``model``: its inputs and outputs, plus what its runtime
    says its intermediate tensors take (``working_bytes_per_sample``, when it says). Open
    dimensions of the inputs are taken from ``shapes`` (each input's sample shape in the
    data) when given; None when the size stays unknown."""
    inputs = _spec_bytes(model.inputs, shapes)
    if inputs is None:
        return None
    told = getattr(model, "working_bytes_per_sample", None)
    working = told(shapes) if told is not None else None
    outputs = _spec_bytes(model.outputs)
    if outputs is None and working is None:  # the working tensors include the outputs
        return None
    return inputs + (outputs or 0) + (int(working) if working else 0)


#: The byte rule above does not fit every large model: per sample on one thread, mediapipe's
#: selfie segmentation (30 MiB of tensors a sample as sample_bytes counts them, 3.5 MiB of
#: them alive at once) runs best at 4 samples per invoke, 1.07× slower at 1 and 1.13× at 2
#: (the rule gives 1), its int8 twin best at 4 (1.05× at 2, the rule's), while mediapipe's
#: face detector (10 MiB, 1.3 MiB alive at once) runs best at 1 and 1.35× slower at 32; no
#: count of bytes orders the two. So a model of at least TUNE_BYTES a sample (a third of a
#: millisecond a sample or more: a few samples time a size) has the sizes around the rule's
#: (tune_candidates) timed on the first batches the quantlens process runs (worker threads
#: take the size it keeps: BatchRunner.leader): each size in TUNE_ROUNDS batches, taken in
#: turn, of at least TUNE_SAMPLES of the run's own samples timed, its best batch counting
#: (the first batches after loading run slow whatever their size: the selfie segmentation's
#: took 1.4-1.6× as long a sample for about half a second); the fastest per sample is kept
#: when it beats the rule's by TUNE_MARGIN (a closer race is this machine's noise). Smaller
#: models keep the rule, whose cache reasoning holds for them.
TUNE_BYTES = THREADED_BYTES
TUNE_SAMPLES = 8
TUNE_ROUNDS = 2
TUNE_MARGIN = 0.03
#: After each round, sizes this much slower a sample than the fastest so far are not timed
#: again (the selfie segmentation's 1 and 2 against its 4: 1.10-1.15×).
TUNE_DROP = 1.08
#: No size is timed whose invoke's tensors, as sample_bytes counts them, exceed this (the
#: selfie segmentation at 4: 120 MiB; its runtime holds 14 MiB of them at once), nor whose
#: batch would hold more than BATCH_BYTES of the model's inputs and outputs.
TUNE_MAX_BYTES = 256 * 2**20


def tune_candidates(
    model: Any, size: int | None, shapes: Sequence[Sequence[int]] | None = None
) -> tuple[int, ...]:
    """The samples per invoke to time for ``model`` around the byte rule's ``size``: half of
    it, itself, twice and four times, when the model holds at least TUNE_BYTES a sample (none
    otherwise, or when it runs batches whole), within TUNE_MAX_BYTES of tensors an invoke and
    BATCH_BYTES of inputs and outputs a batch (see :func:`tuning_batch`). ``shapes``: as for
    :func:`sample_bytes`."""
    if size is None or not takes_invoke_size(model):
        return ()
    each = sample_bytes(model, shapes) or 0
    if each < TUNE_BYTES:
        return ()
    held = (_spec_bytes(model.inputs, shapes) or 0) + (_spec_bytes(model.outputs) or 0)
    sizes = {
        k for k in (max(1, size // 2), size, 2 * size, 4 * size)
        if k == size or (tuning_batch([k]) * held <= BATCH_BYTES and k * each <= TUNE_MAX_BYTES)
    }  # fmt: skip
    return tuple(sorted(sizes)) if len(sizes) > 1 else ()


def tuning_batch(sizes: Sequence[int]) -> int:
    """The batch that times ``sizes``: two invokes of the largest (the first is not timed),
    and at least TUNE_SAMPLES samples timed at any of them."""
    return max(2 * max(sizes, default=0), 2 * TUNE_SAMPLES)


class InvokeTuning:
    """Samples per invoke measured on a run's first batches: the sizes take turns, a batch
    each, every invoke of a batch but its first timed (the first may allocate the model at
    that size), until each size still in the race has TUNE_ROUNDS batches timed (a size far
    behind after a round leaves it); then :meth:`best` names the size to keep, by each
    size's fastest batch. The outputs are the run's: a model's outputs
    do not depend on how many samples share an invoke once the probe has found that they do
    not."""

    def __init__(self, candidates: Sequence[int], preferred: int) -> None:
        self.preferred = preferred
        #: Per size, seconds a sample in each batch timed at it.
        self._rates: dict[int, list[float]] = {size: [] for size in {*candidates, preferred}}

    def next_size(self) -> int:
        """The size the next batch runs at: the one timed in the fewest batches."""
        return min(self._rates, key=lambda size: (len(self._rates[size]), size))

    def record(self, size: int, per_sample: float) -> None:
        """One batch's seconds a sample at ``size``; at the end of a round, the sizes far
        behind the fastest are timed no more (TUNE_DROP)."""
        self._rates[size].append(per_sample)
        if len({len(rates) for rates in self._rates.values()}) == 1:
            fastest = min(min(rates) for rates in self._rates.values())
            self._rates = {s: rates for s, rates in self._rates.items()
                           if min(rates) <= fastest * TUNE_DROP}  # fmt: skip

    def drop(self, size: int) -> None:
        """No longer time ``size`` (the model fails at it; never the preferred size, which
        the batch then runs at)."""
        if size != self.preferred:
            self._rates.pop(size, None)

    @property
    def done(self) -> bool:
        return all(len(rates) >= TUNE_ROUNDS for rates in self._rates.values())

    def best(self) -> int:
        """The fastest size per sample, if it beats the preferred one by TUNE_MARGIN."""
        per_sample = {size: min(rates) for size, rates in self._rates.items() if rates}
        fastest = min(per_sample, key=lambda size: (per_sample[size], size))
        if self.preferred not in per_sample:  # dropped: far behind
            return fastest
        ahead = per_sample[fastest] < per_sample[self.preferred] * (1 - TUNE_MARGIN)
        return fastest if ahead else self.preferred


def auto_invoke_size(
    model: Any, threads: int | None = None, shapes: Sequence[Sequence[int]] | None = None
) -> int | None:
    """Samples per invoke for ``model`` when the user gives no batch size: the largest power
    of two up to AUTO_BATCH_MAX whose tensors fit INVOKE_BYTES per runtime thread
    (``threads``; None, the runtime's default, runs one) and, beyond INVOKE_FEW samples,
    INVOKE_CACHE_BYTES; at least one. None (the whole batch) when a sample's size is unknown.
    ``shapes``: its inputs' sample shapes in the data, for the dimensions it leaves open."""
    size = sample_bytes(model, shapes)
    if size is None:
        return None
    per_thread = max(1, threads or 1)

    def fits(k: int) -> bool:
        cache = k <= INVOKE_FEW or k * size <= INVOKE_CACHE_BYTES * per_thread
        return cache and k * size <= INVOKE_BYTES * per_thread

    k = AUTO_BATCH_MAX
    while k > 1 and not fits(k):
        k //= 2
    return k


def auto_batch_size(
    models: Sequence[object], threads: int | None = None,
    shapes: Sequence[Sequence[Sequence[int]]] | None = None, at_least: int = 1,
) -> int:  # fmt: skip
    """The batch size to run when the user gives none: the largest power of two up to
    AUTO_BATCH_MAX whose samples take at most BATCH_BYTES per runtime thread (``threads``;
    None, the runtime's default, runs one) in all the models together, and whose samples fit
    INVOKE_BYTES per thread in a model that runs a batch whole, at least one (the others run
    their own samples per invoke within it: :func:`auto_invoke_size`);
    AUTO_BATCH_UNKNOWN when a sample's size is unknown. ``shapes``: per model, its inputs'
    sample shapes in the data, for the dimensions a model leaves open. At least
    ``at_least`` (the batch that times samples per invoke: tuning_batch). Rounded up to
    whole batches of what the models declare: a model that runs in chunks of its declared
    batch pads every batch smaller."""
    total = models_sample_bytes(models, shapes)
    if total is None:
        size = AUTO_BATCH_UNKNOWN
    else:
        per_thread = max(1, threads or 1)
        # A model that runs each batch whole (no samples per invoke of its own: Keras) keeps
        # its samples within INVOKE_BYTES per thread.
        whole = max(
            (sample_bytes(m, shapes[k] if shapes else None) or 0
             for k, m in enumerate(models) if not takes_invoke_size(m)),
            default=0,
        )  # fmt: skip
        size = AUTO_BATCH_MAX
        while size > 1 and (
            size * total > BATCH_BYTES * per_thread or size * whole > INVOKE_BYTES * per_thread
        ):
            size //= 2
    size = max(size, at_least)
    declared = {declared_batch(getattr(m, "inputs", ())) for m in models}
    step = math.lcm(*declared)
    if step > AUTO_BATCH_MAX:  # batches that share no small multiple: the largest one's
        step = max(declared)
    return -(-size // step) * step


def takes_invoke_size(model: Any) -> bool:
    """Whether ``model`` runs a batch its own samples per invoke at a time (Keras runs each
    batch whole; stored outputs are read, not run)."""
    return getattr(model, "set_invoke_size", None) is not None


def set_invoke_size(model: Any, size: int | None, candidates: Sequence[int] = ()) -> None:
    """Run ``model``'s resized batches at most ``size`` samples per invoke, where it can
    (with ``candidates``, timed on its first batches: see InvokeTuning)."""
    if takes_invoke_size(model):
        model.set_invoke_size(size, candidates)


def follow_invoke_size(model: Any, leader: Any) -> None:
    """``model`` takes the samples per invoke ``leader``, a copy of it, times (where both
    run their own samples per invoke)."""
    follow = getattr(model, "follow_invoke_size", None)
    if follow is not None and getattr(leader, "batch_runner", None) is not None:
        follow(leader)


def invoke_size(model: Any) -> int | None:
    """The samples per invoke ``model`` runs a resized batch at now (after its timing, the
    size it kept); None when it runs batches whole."""
    return getattr(model, "invoke_size", None) if takes_invoke_size(model) else None
