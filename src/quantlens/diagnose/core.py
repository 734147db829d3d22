"""diagnose(): where the quantization error comes from, tensor by tensor and op by op.

Both ``.tflite`` files run on the same samples with every intermediate tensor preserved and
without the default delegates (XNNPACK hides the tensors inside its partitions), so the
inspection runs use LiteRT's built-in kernels; the two models run side by side. Tensors are
matched by name, then by graph position and shape; QUANTIZE/DEQUANTIZE outputs stand for the
tensor they convert.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._process import reuse_freed_memory
from quantlens.backends import BACKENDS, backend_for, resolve
from quantlens.data import load_dataset
from quantlens.diagnose.common import (
    DATA_MOVEMENT_OPS,
    INSPECTION_NOTE,
)
from quantlens.errors import ConfigError, ModelLoadError, ModelMismatchError
from quantlens.metrics import FidelityState
from quantlens.metrics.tensor_error import SQNR_CAP_DB, TensorErrorState
from quantlens.models.batching import PROBE_SAMPLES, probe_all
from quantlens.models.matching import feed_order, match_tensors
from quantlens.models.quantization import INTEGER_ACTIVATIONS, integer_parts
from quantlens.results import DiagnosisResult, OpRow, TensorRow

DEFAULT_SAMPLES = 256
DEFAULT_TOP = 10
#: Without a batch size given, a batch is as large as keeps what a diagnosis holds at once
#: (both models' every tensor, for two batches in flight) within INSPECTION_BYTES, up to
#: MAX_INSPECTION_BATCH samples.
INSPECTION_BYTES = 512 * 2**20
MAX_INSPECTION_BATCH = 32


def open_side(path: str | os.PathLike[str]) -> Any:
    """A model opened for inspection, every intermediate tensor exposed, by its runtime."""
    try:
        backend = backend_for(path)
    except ModelLoadError:
        backend = None
    if backend is None or backend.inspection is None:
        kinds = " or two ".join(e for b in BACKENDS.values() if b.inspection for e in b.extensions)
        raise ConfigError(f"diagnose compares two {kinds} files; {Path(path).name} is neither")
    return resolve(backend.inspection).open(path)


def diagnose(
    float_model: str | os.PathLike[str],
    quant_model: str | os.PathLike[str],
    data: Any,
    *,
    samples: int = DEFAULT_SAMPLES,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    constants: Mapping[str, Any] | None = None,
) -> DiagnosisResult:
    """Compare every intermediate tensor of a quantized ``.tflite`` with the float one.

    Args:
        float_model: the float ``.tflite``.
        quant_model: a quantized ``.tflite`` made from the same source (any mode).
        data: inputs (anything ``load_dataset`` takes); labels are not needed.
        samples: how many samples to run.
        batch_size: samples per invoke (default: as many as fit INSPECTION_BYTES, at most
            MAX_INSPECTION_BATCH).
        constants: inputs fixed to one value for every sample, by name, as ``evaluate``
            takes them (an audio model's sample rate).

    Returns:
        A :class:`DiagnosisResult`: per-tensor and per-op metrics, weight SQNRs, what could not
        be matched, and the end-to-end fidelity.
    """
    reuse_freed_memory()
    flt, qnt = open_side(float_model), open_side(quant_model)
    if type(flt) is not type(qnt):
        raise ConfigError("diagnose compares two models of the same format (.tflite or .onnx)")
    _check_roles(flt.model, qnt.model)
    match_tensors(flt.model.inputs, qnt.model.inputs, "input", qnt.model.name)
    out_order = match_tensors(flt.model.outputs, qnt.model.outputs, "output", qnt.model.name)
    f_acts, q_acts = flt.activations(), qnt.activations()
    pairs = qnt.match(flt)
    q_idx = [q.index for q in q_acts if q.index in pairs]
    f_idx = sorted({pairs[i] for i in q_idx})
    states = {i: TensorErrorState() for i in q_idx}
    end_to_end = [FidelityState() for _ in flt.model.outputs]
    order = feed_order(flt.model.inputs, qnt.model.inputs, qnt.model.name)
    runtime_mismatch: set[int] = set()
    seen = 0

    def measure(batch: Any, f_run: Any, q_run: Any) -> None:
        nonlocal seen
        (f_out, f_vals), (q_out, q_vals) = f_run, q_run
        f_by = {i: flt.real(i, v) for i, v in zip(f_idx, f_vals, strict=True)}
        n = len(batch)
        jobs = []
        for i, raw in zip(q_idx, q_vals, strict=True):
            ref = f_by[pairs[i]]
            if raw.shape != ref.shape or raw.ndim == 0 or raw.shape[0] != n:
                runtime_mismatch.add(i)
            else:
                jobs.append((i, ref, raw))
        for i, state in _measured(jobs, states, qnt):
            states[i] = state
        for j, k in enumerate(out_order):
            end_to_end[j] = end_to_end[j].update(f_out[j], q_out[k])
        seen += n
        if progress is not None:
            progress(n)

    batches = load_dataset(data).bind(
        flt.model.inputs, batch_size=batch_size or _inspection_batch(flt, qnt), limit=samples,
        constants=constants,
    )  # fmt: skip
    _both_runs(batches, flt, qnt, order, f_idx, q_idx, measure)
    if seen == 0:
        raise ModelMismatchError("no samples ran; give data with at least one sample")
    for i in runtime_mismatch:
        pairs.pop(i, None)
        states.pop(i, None)
    tensors = _tensor_rows(qnt, flt, pairs, states)
    graph_id, node_keys = qnt.viewer_graph
    return DiagnosisResult(
        float_path=str(float_model),
        quant_path=str(quant_model),
        samples=seen,
        note=getattr(qnt, "note", INSPECTION_NOTE),
        end_to_end={o.name: s.result() for o, s in zip(flt.model.outputs, end_to_end, strict=True)},
        tensors=tuple(tensors),
        ops=tuple(_op_rows(qnt, {t.index: t for t in tensors})),
        weights=tuple(qnt.weight_rows(flt, pairs)),
        unmatched={
            "quantized": [t.name or f"#{t.index}" for t in q_acts if t.index not in pairs],
            "float": [
                t.name or f"#{t.index}" for t in f_acts if t.index not in set(pairs.values())
            ],
        },
        graph_id=graph_id,
        node_keys=node_keys,
    )


def _inspection_batch(flt: Any, qnt: Any) -> int:
    """The batch size that keeps both models' tensors of two batches within INSPECTION_BYTES
    (MAX_INSPECTION_BATCH when a runtime does not say how large they are)."""
    told = [getattr(side.model, "working_bytes_per_sample", None) for side in (flt, qnt)]
    sizes = [size() if size is not None else None for size in told]
    if any(size is None for size in sizes):
        return MAX_INSPECTION_BATCH
    per_sample = 2 * sum(size for size in sizes if size is not None)
    return max(1, min(MAX_INSPECTION_BATCH, INSPECTION_BYTES // max(1, per_sample)))


def _both_runs(
    batches: Iterator[Any], flt: Any, qnt: Any, order: list[int], f_idx: list[int],
    q_idx: list[int], measure: Callable[[Any, Any, Any], None],
) -> None:  # fmt: skip
    """Run each batch through both models and ``measure`` it with their outputs and tensors.

    The tensors are handed over in place, without a copy (an inspected MobileNetV2 holds 2.3
    million values per sample), so ``measure`` must not keep them. Each model runs in a thread
    of its own (the runtimes release the GIL while they run) on two interpreters in turn: while
    the caller measures one batch's tensors, the next batch runs on the other pair, and both
    cores stay busy. Before the first batch, both models are probed on its first samples (so a
    batch that matters runs one sample at a time, as deployed).
    """
    slots = ((flt, qnt), (flt.twin(), qnt.twin()))
    pending: deque[tuple[Any, Future[Any], Future[Any]]] = deque()
    with ThreadPoolExecutor(1) as f_pool, ThreadPoolExecutor(1) as q_pool:
        for k, batch in enumerate(batches):
            f_inputs, q_inputs = batch.inputs, [batch.inputs[i] for i in order]
            if k == 0:
                first = [[x[:PROBE_SAMPLES] for x in xs] for xs in (f_inputs, q_inputs)]
                probe_all([flt.model, qnt.model], first)
            f_side, q_side = slots[k % 2]  # its last batch is measured and let go below
            f_run = f_pool.submit(f_side.model.predict_tensors, f_inputs, f_idx, views=True)
            q_run = q_pool.submit(q_side.model.predict_tensors, q_inputs, q_idx, views=True)
            pending.append((batch, f_run, q_run))
            del f_run, q_run
            if len(pending) == len(slots):
                _measure_oldest(pending, measure)
        while pending:
            _measure_oldest(pending, measure)


def _measure_oldest(
    pending: deque[tuple[Any, Future[Any], Future[Any]]], measure: Callable[[Any, Any, Any], None]
) -> None:
    batch, f_run, q_run = pending.popleft()
    measure(batch, f_run.result(), q_run.result())
    # the futures were the last holders of the tensors: their interpreters may run again


def _measured(
    jobs: list[tuple[int, np.ndarray, np.ndarray]], states: dict[int, TensorErrorState], qnt: Any
) -> Iterator[tuple[int, TensorErrorState]]:
    """Each tensor's state updated with one batch of (index, float values, raw candidate
    values); a per-tensor quantized candidate is dequantized block by block as it is read."""
    for i, ref, raw in jobs:
        qp = qnt.quant.get(i)
        if qp is not None and raw.dtype.name in INTEGER_ACTIVATIONS and len(qp.scale) == 1:
            yield i, states[i].update(ref, raw, (qp.scale[0], qp.zero_point[0]))
        else:
            yield i, states[i].update(ref, qnt.real(i, raw))


def _check_roles(float_model: Any, quant_model: Any) -> None:
    """The first model must be the float one: refuse a quantized first model (the arguments
    swapped, or two quantized models), which would blame the float model's tensors."""
    first = integer_parts(float_model.info())
    if not first:
        return
    second = integer_parts(quant_model.info())
    if not second:
        raise ConfigError(
            f"{float_model.name} is quantized ({', '.join(first)}) and {quant_model.name} is "
            "not: give the float model first (diagnose FLOAT QUANTIZED)"
        )
    raise ConfigError(
        f"both models are quantized ({float_model.name}: {', '.join(first)}); diagnose needs "
        "the float model the quantized one was made from as the first model"
    )


def _tensor_rows(
    qnt: Any, flt: Any, pairs: dict[int, int], states: dict[int, TensorErrorState]
) -> list[TensorRow]:  # fmt: skip
    producer = {t: op for op in qnt.graph.ops for t in op.outputs}
    rows = []
    for i, st in states.items():
        if st.samples == 0:
            continue
        t = qnt.graph.tensors[i]
        qp = qnt.quant.get(i)
        scale = (
            qp.scale[0]
            if qp and len(qp.scale) == 1 and t.dtype in ("int8", "uint8", "int16")
            else None
        )
        metrics = st.result(scale)
        channel = {k: metrics.pop(k, None) for k in (
            "channel_sqnr_median_db", "channel_sqnr_worst_db", "float_min", "float_max",
            "channel_range_ratio", "rmse_over_scale")}  # fmt: skip
        rows.append(TensorRow(
            i, t.name, flt.graph.tensors[pairs[i]].name, t.dtype,
            producer[i].op_type if i in producer else "INPUT", metrics,
            channel["channel_sqnr_median_db"], channel["channel_sqnr_worst_db"],  # type: ignore[arg-type]
            channel["float_min"], channel["float_max"], channel["channel_range_ratio"],  # type: ignore[arg-type]
            scale if qp is not None else None,
            qp.zero_point[0] if scale is not None and qp is not None else None,
            channel["rmse_over_scale"], st.saturation,
        ))  # fmt: skip
    return rows


#: Above this SQNR a tensor counts as lossless when computing the error an op adds (8-bit
#: rounding alone gives about 50 dB), so an op fed a perfect input is not blamed for the
#: huge ratio between a perfect and a merely excellent tensor.
LOSSLESS_DB = 60.0


def _capped(v: float) -> float:
    return float(np.clip(v, -SQNR_CAP_DB, LOSSLESS_DB))


def _compared_sqnr(t: TensorRow, op_type: str) -> float:
    """The SQNR an op's error is measured on: moving values around changes what the last axis
    holds, not the error, so such ops compare tensor-wide SQNR, every other op the
    per-channel median."""
    return t.sqnr_db if op_type in DATA_MOVEMENT_OPS else t.channel_sqnr_median_db


def _matched_sources(graph: Any, tensors: dict[int, TensorRow]) -> Callable[[int], list[int]]:
    """For a tensor, the matched tensors it is computed from: itself when matched, else the
    nearest matched ones on every path up through the ops that produce it (an ONNX float16
    conversion's Casts, a quantizer's own tensors: the float model has nothing to match
    them with). Constants and unmatched graph inputs lead nowhere."""
    producer = {o: op for op in graph.ops for o in op.outputs}
    found: dict[int, list[int]] = {}
    opened: set[int] = set()  # unmatched tensors whose producer's inputs are being found

    def sources(start: int) -> list[int]:
        stack = [start]
        while stack:  # depth first, without recursion: graphs run to thousands of ops
            i = stack[-1]
            if i in found:
                stack.pop()
            elif i in tensors:
                found[i] = [i]
                stack.pop()
            else:
                op = producer.get(i)
                above = [j for j in (op.inputs if op is not None else ())
                         if j >= 0 and not graph.tensors[j].constant]  # fmt: skip
                todo = [j for j in above if j not in found and j not in opened]
                if todo and i not in opened:
                    opened.add(i)
                    stack.extend(todo)
                    continue
                found[i] = sorted({k for j in above for k in found.get(j, [])})
                opened.discard(i)
                stack.pop()
        return found[start]

    return sources


def _op_rows(qnt: Any, tensors: dict[int, TensorRow]) -> list[OpRow]:
    """Per op: how much worse its output is than its worst activation input (error added),
    on the per-channel median SQNR, so a crushed channel is blamed on the op producing it.
    An input the float model has no counterpart of counts as the matched tensors it is
    computed from (see :func:`_matched_sources`): an op fed only by such tensors is otherwise
    blamed for every error above it."""
    readers: dict[int, list[int]] = {}
    for op in qnt.graph.ops:
        for i in op.inputs:
            readers.setdefault(i, []).append(op.index)
    aliases: dict[int, int] = getattr(qnt, "aliases", {})
    sources = _matched_sources(qnt.graph, tensors)
    rows = []
    for op in qnt.graph.ops:
        out = op.outputs[0] if op.outputs else -1
        out = aliases.get(out, out)  # ONNX QDQ: an op's value as the next op sees it
        row = OpRow(op.index, op.op_type, qnt.graph.tensors[out].name if out >= 0 else "",
                    tuple(readers.get(out, [])), op.name or None)  # fmt: skip
        if out in tensors and op.op_type not in getattr(qnt, "skip_ops", ()):
            ins = [
                _capped(_compared_sqnr(tensors[k], op.op_type))
                for i in op.inputs
                if i >= 0 and not qnt.graph.tensors[i].constant
                for k in sources(i)
            ]
            worst_in = min(ins) if ins else LOSSLESS_DB
            row = dataclasses.replace(
                row, error_added_db=worst_in - _capped(_compared_sqnr(tensors[out], op.op_type)),
                output_sqnr_db=tensors[out].sqnr_db,
                output_channel_sqnr_median_db=tensors[out].channel_sqnr_median_db,
                output_channel_sqnr_worst_db=tensors[out].channel_sqnr_worst_db,
            )  # fmt: skip
        rows.append(row)
    return rows


def _debugger_statistics(
    source: Path, mode: str, calibration: Any, calibration_samples: int,
    constants: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per-layer statistics of TFLite's QuantizationDebugger, keyed by tensor name.

    The debugger feeds each quantized op the float model's inputs, so its errors are local
    to the op; quantlens' own per-tensor errors are accumulated through the whole graph.
    """
    import csv
    import io

    from quantlens._quiet import captured_output
    from quantlens.quantize import calibration_arrays
    from quantlens.quantize.tf_converter import debugger

    specs = load_model_inputs(source)
    calib = calibration_arrays(calibration, specs, calibration_samples, constants)
    dbg = debugger(source, mode, calib, [s.name for s in specs])
    buffer = io.StringIO()
    with captured_output():
        dbg.run()
        dbg.layer_statistics_dump(buffer)
    stats: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        stats[row["tensor_name"]] = {
            k: float(row[k])
            for k in ("mean_squared_error", "max_abs_error", "mean_error", "stddev")
            if row.get(k) not in (None, "")
        }
    return stats


def load_model_inputs(source: Path) -> Any:
    """The input specs of a model file (loads it once)."""
    from quantlens.models.loading import load_model

    return load_model(source).inputs


def diagnose_source(
    source: str | os.PathLike[str],
    data: Any,
    *,
    mode: str = "int8",
    calibration: Any,
    calibration_samples: int = 200,
    out_dir: str | os.PathLike[str],
    samples: int = DEFAULT_SAMPLES,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    status: Callable[[str], None] | None = None,
    constants: Mapping[str, Any] | None = None,
) -> DiagnosisResult:
    """Convert a Keras file or SavedModel to float32 and ``mode`` ``.tflite`` files in
    ``out_dir``, diagnose the pair, and merge the QuantizationDebugger's per-layer statistics
    (static modes) into each tensor's row as ``debugger``. ``constants``: inputs fixed by
    name, for the calibration and the run alike."""
    from quantlens.quantize import quantize
    from quantlens.quantize.tf_converter import TF_STATIC_MODES

    src = Path(source)
    if backend_for(src).inspection is not None:
        raise ConfigError(f"{src.name}: give a Keras file or SavedModel, or two .tflite files")
    made = quantize(src, ["float32", mode], out_dir, calibration=calibration,
                    calibration_samples=calibration_samples, status=status,
                    constants=constants)  # fmt: skip
    if status is not None:
        status("running both models with every tensor kept…")
    result = diagnose(made.variant("float32").path, made.variant(mode).path, data,
                      samples=samples, batch_size=batch_size, progress=progress,
                      constants=constants)  # fmt: skip
    if mode not in TF_STATIC_MODES:
        return result
    if status is not None:
        status("collecting the TFLite quantization debugger's per-layer statistics…")
    stats = _debugger_statistics(src, mode, calibration, calibration_samples, constants)
    tensors = tuple(
        dataclasses.replace(t, debugger=stats[t.name]) if t.name in stats else t
        for t in result.tensors
    )
    return dataclasses.replace(result, tensors=tensors)


def infer_mode(quant_model: str | os.PathLike[str]) -> str:
    """The quantization mode closest to how a quantized file was made (in its runtime's own
    quantizer's terms)."""
    backend = backend_for(quant_model)
    if backend.mode_of is None:
        raise ConfigError(f"cannot tell how {Path(quant_model).name} was quantized; give --mode")
    return str(resolve(backend.mode_of)(quant_model))
