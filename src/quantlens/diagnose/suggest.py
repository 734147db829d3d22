"""Which layers to keep in float: sensitivity rankings and a greedy, measured search.

Candidates are the ops that add the most error in a diagnosis. Each is first tried alone in
float (one-at-a-time sensitivity); then layers are added to the keep-in-float set in order
of that sensitivity, the model rebuilt and re-measured after each step, until the drop is
within the budget; a layer that does not lower the drop is put back. Every step's metric,
size and latency is measured, not estimated.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantlens.backends import backend_for, resolve
from quantlens.bench import benchmark
from quantlens.budget import relative_rmse, within
from quantlens.diagnose.common import CONVERSION_OPS
from quantlens.errors import ConfigError
from quantlens.evaluation import evaluate
from quantlens.metric_registry import pareto_front
from quantlens.quantize import calibration_arrays
from quantlens.results import (
    DiagnosisResult,
    ErrorRank,
    ModelResult,
    OpRef,
    OpRow,
    SearchStep,
    Sensitivity,
    Suggestion,
)

BUDGET_METRICS = ("accuracy", "sqnr")
SENSITIVITY_CANDIDATES = 6  # ops tried one at a time: the top ones by error added
#: Ops never worth keeping in float: conversions and ops that only move or describe values.
_NOT_CANDIDATES = CONVERSION_OPS | {"RESHAPE", "SHAPE", "PACK", "STRIDED_SLICE"}

Builder = Callable[[list[str]], bytes]


def make_builder(
    source: Path, mode: str, calibration: Any, calibration_samples: int, input_specs: Any
) -> Builder:
    """A function that rebuilds the quantized model with some ops kept in float, by the
    source's runtime (:mod:`quantlens.backends`): the TFLite converter's debugger for a Keras
    source, ai-edge-quantizer's recipe for a float .tflite, onnxruntime for an .onnx."""
    names = [s.name for s in input_specs]
    calib = calibration_arrays(calibration, input_specs, calibration_samples)
    return resolve(backend_for(source).keep_in_float)(source, mode, calib, names)


def _metric(result: ModelResult, budget_metric: str) -> float:
    if budget_metric == "accuracy":
        if not result.task_metrics or "accuracy" not in result.task_metrics:
            raise ConfigError("--budget-metric accuracy needs classification labels in the data; "
                              "use --budget-metric sqnr")  # fmt: skip
        return result.task_metrics["accuracy"]
    assert result.fidelity is not None
    return result.fidelity["sqnr_db"]


def _drop(value: float, reference: float, budget_metric: str) -> float:
    """accuracy: points lost against the float model; sqnr: relative RMSE, 10^(−SQNR/20)."""
    return reference - value if budget_metric == "accuracy" else relative_rmse(value)


def suggest(
    diagnosis: DiagnosisResult,
    build: Builder,
    float_model: str | Path,
    data: Any,
    *,
    max_drop: float,
    budget_metric: str = "accuracy",
    out_dir: str | Path,
    name_of: Callable[[OpRow], str] = lambda op: op.output,
    status: Callable[[str], None] | None = None,
) -> Suggestion:
    """Find a keep-in-float set that brings the drop within ``max_drop``, measuring each step.

    Args:
        diagnosis: the diagnosis whose op ranking gives the candidates.
        build: rebuilds the quantized model with the given ops kept in float.
        float_model: the float ``.tflite`` the metric is measured against.
        max_drop: accuracy points (0.01 = one) or, for ``sqnr``, relative RMSE.
        name_of: the name ``build`` knows an op by (its output tensor name by default).
    """
    if budget_metric not in BUDGET_METRICS:
        raise ConfigError(f"unknown budget metric '{budget_metric}'; use accuracy or sqnr")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    candidates = [
        op for op in diagnosis.top_ops(len(diagnosis.ops))
        if op.op_type not in _NOT_CANDIDATES
    ][:SENSITIVITY_CANDIDATES]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="quantlens-suggest-", dir=out))

    def unit(op: OpRow) -> list[str]:
        """An op and the ops reading its output: a tensor stays float only if both do."""
        readers = [diagnosis.ops[c] for c in op.consumers]
        return [name_of(op)] + [name_of(r) for r in readers if r.op_type not in CONVERSION_OPS]

    task = "classification" if budget_metric == "accuracy" else None

    def measure(keep: list[str], tag: str) -> tuple[Path, ModelResult]:
        """The rebuilt model's path and result. An accuracy needs the model alone (the float
        model is measured once, below); an SQNR needs the float model beside it."""
        path = work / f"{tag}{Path(float_model).suffix}"
        path.write_bytes(build(keep))
        if budget_metric == "accuracy":
            return path, evaluate(path, [], data, task=task).models[0]
        return path, evaluate(float_model, [path], data).models[1]

    if status:
        status(f"measuring each of {len(candidates)} candidate layers kept in float alone…")
    ref_value = (_metric(evaluate(float_model, [], data, task=task).models[0], budget_metric)
                 if budget_metric == "accuracy" else math.inf)  # fmt: skip
    base_path, base = measure([], "step0")
    sensitivity = []
    for k, op in enumerate(candidates):
        _, res = measure(unit(op), f"alone{k}")
        value = _metric(res, budget_metric)
        sensitivity.append(Sensitivity(OpRef(op.index, op.op_type, name_of(op)),
                                       tuple(unit(op)[1:]), value,
                                       _drop(value, ref_value, budget_metric)))  # fmt: skip
    order = sorted(range(len(candidates)), key=lambda k: sensitivity[k].drop)
    value = _metric(base, budget_metric)
    steps = [SearchStep(0, (), str(base_path), value, _drop(value, ref_value, budget_metric),
                        base.size_bytes)]  # fmt: skip
    best = steps[0]
    for k in order:
        if within(best.drop, max_drop):
            break
        trial = best.kept_in_float + tuple(
            n for n in unit(candidates[k]) if n not in best.kept_in_float
        )
        if trial == best.kept_in_float:
            continue
        if status:
            status(f"step {len(steps)}: keeping {len(trial)} layer(s) in float…")
        path, res = measure(list(trial), f"step{len(steps)}")
        value = _metric(res, budget_metric)
        drop = _drop(value, ref_value, budget_metric)
        # a layer that does not lower the drop goes back to quantized
        step = SearchStep(len(steps), trial, str(path), value, drop, res.size_bytes,
                          accepted=drop < best.drop)  # fmt: skip
        steps.append(step)
        if step.accepted:
            best = step
    if status:
        status("benchmarking every step against the float model…")
    paths = [str(float_model)] + [s.path for s in steps]
    bench = benchmark(paths, warmup_runs=5, runs=30, min_seconds=0.3, measure_memory=False)
    steps = [dataclasses.replace(st, p50_ms=e.latency_ms["p50"])
             for st, e in zip(steps, bench.results[1:], strict=True)]  # fmt: skip
    final = next(st for st in steps if st.step == best.step)
    chosen = (
        out / f"{Path(float_model).stem}_keep{len(final.kept_in_float)}{Path(float_model).suffix}"
    )
    chosen.write_bytes(Path(final.path).read_bytes())
    by_name: dict[str, OpRow] = {}
    for op in [*candidates, *diagnosis.ops]:  # a conversion may share its op's name
        by_name.setdefault(name_of(op), op)
    latency_front = sorted(pareto_front([(st.p50_ms, st.metric) for st in steps]))
    size_front = sorted(pareto_front([(float(st.size_bytes), st.metric) for st in steps]))
    return Suggestion(
        budget_metric=budget_metric,
        max_drop=max_drop,
        float_metric=ref_value if budget_metric == "accuracy" else None,
        float_p50_ms=bench.results[0].latency_ms["p50"],
        float_size_bytes=Path(float_model).stat().st_size,
        by_error=tuple(
            ErrorRank(OpRef(op.index, op.op_type, name_of(op)), op.error_added_db or 0.0)
            for op in candidates
        ),
        by_sensitivity=tuple(sensitivity[k] for k in order),
        steps=tuple(steps),
        pareto_latency=tuple(steps[i].step for i in latency_front),
        pareto_size=tuple(steps[i].step for i in size_front),
        met_budget=within(final.drop, max_drop),
        kept_in_float=tuple(
            OpRef(by_name[n].index, by_name[n].op_type, n) for n in final.kept_in_float
        ),
        model=str(chosen),
    )


def suggest_from_source(
    diagnosis: DiagnosisResult,
    source: str | Path,
    data: Any,
    *,
    mode: str | None = None,
    calibration: Any,
    calibration_samples: int,
    max_drop: float,
    budget_metric: str = "accuracy",
    out_dir: str | Path,
    status: Callable[[str], None] | None = None,
) -> DiagnosisResult:
    """The diagnosis with its ``suggestion``: :func:`suggest`, the quantized model rebuilt from
    ``source`` (a Keras file, SavedModel, float ``.tflite`` or ``.onnx``) in ``mode`` (None:
    the mode closest to how the diagnosed model was made), each op named the way the
    rebuilding tool knows it, every step measured against the diagnosis' float model."""
    from quantlens.diagnose.core import infer_mode
    from quantlens.models.loading import load_model

    src = Path(source)
    mode = mode or infer_mode(diagnosis.quant_path)
    build = make_builder(src, mode, calibration, calibration_samples, load_model(src).inputs)
    float_names = {t.name: t.float_name for t in diagnosis.tensors}
    suggestion = suggest(
        diagnosis, build, diagnosis.float_path, data, max_drop=max_drop,
        budget_metric=budget_metric, out_dir=out_dir,
        name_of=_names_for(backend_for(src).op_name, float_names), status=status,
    )  # fmt: skip
    return dataclasses.replace(diagnosis, suggestion=suggestion)


def _names_for(op_name: str, float_names: dict[str, str]) -> Callable[[OpRow], str]:
    """How the rebuilding tool knows an op (:attr:`quantlens.backends.Backend.op_name`)."""
    if op_name == "float_tensor":
        return lambda op: float_names.get(op.output, op.output)
    if op_name == "node":
        return lambda op: op.node or op.output
    return lambda op: op.output
