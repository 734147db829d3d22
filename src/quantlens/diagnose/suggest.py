"""Which ops to keep at which precision: the repair search, run and reported.

:func:`suggest` turns a diagnosis into candidates (every op, and the model's inputs and
outputs where the quantizer makes them integer), runs :mod:`quantlens.diagnose.search` on
them with every plan measured by :func:`quantlens.evaluate` on the data, benchmarks the steps
it took, writes the suggested model with a manifest of exactly what it keeps at which
precision, and, when no model it found meets the budget, says why.
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
from quantlens.diagnose.common import QUANTIZER_OPS
from quantlens.diagnose.explain import explain, needs_explaining
from quantlens.diagnose.search import (
    DEFAULT_MAX_EVALUATIONS,
    WIDE_OUTPUT,
    Evaluator,
    Search,
    SearchLog,
    Trial,
    Unit,
)
from quantlens.errors import ConfigError
from quantlens.evaluation import evaluate
from quantlens.files import write_json
from quantlens.metric_registry import pareto_front
from quantlens.quantize import calibration_arrays
from quantlens.quantize.precision import MANIFEST_SCHEMA, Rebuilder
from quantlens.results import (
    DiagnosisResult,
    ErrorRank,
    KeptOp,
    ModelResult,
    OpRef,
    OpRow,
    SearchStep,
    Sensitivity,
    Suggestion,
    encode_number,
)

BUDGET_METRICS = ("accuracy", "sqnr")
#: z for a 95% interval
_Z95 = 1.959963984540054


def make_builder(
    source: Path, mode: str, calibration: Any, calibration_samples: int, input_specs: Any
) -> Rebuilder:
    """Rebuilds the quantized model with a plan of per-op precisions, by the source's runtime
    (:mod:`quantlens.backends`): the TFLite converter's debugger for a Keras source,
    ai-edge-quantizer's recipe for a float .tflite, onnxruntime for an .onnx."""
    names = [s.name for s in input_specs]
    calib = calibration_arrays(calibration, input_specs, calibration_samples)
    rebuilder: Rebuilder = resolve(backend_for(source).keep_in_float)(source, mode, calib, names)
    return rebuilder


def _metric(result: ModelResult, budget_metric: str) -> float:
    if budget_metric == "accuracy":
        if not result.task_metrics or "accuracy" not in result.task_metrics:
            raise ConfigError("--budget-metric accuracy needs classification labels in the data; "
                              "use --budget-metric sqnr")  # fmt: skip
        return result.task_metrics["accuracy"]
    assert result.fidelity is not None
    # every output must meet an SQNR budget: a detector's scores matter as much as its boxes
    return min([o.fidelity["sqnr_db"] for o in result.outputs] or [result.fidelity["sqnr_db"]])


def _drop(value: float, reference: float, budget_metric: str) -> float:
    """accuracy: points lost against the float model; sqnr: relative RMSE, 10^(−SQNR/20)."""
    return reference - value if budget_metric == "accuracy" else relative_rmse(value)


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval for a proportion."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _units(diagnosis: DiagnosisResult, rebuild: Rebuilder,
           name_of: Callable[[OpRow], str]) -> list[Unit]:  # fmt: skip
    """Every op that is not a conversion, once per name, and the model's integer boundaries."""
    worst: dict[int, float] = {}
    for w in diagnosis.weights:
        worst[w.op_index] = min(worst.get(w.op_index, math.inf), w.sqnr_db)
    units: dict[str, Unit] = {}
    for op in diagnosis.ops:
        if op.op_type in QUANTIZER_OPS or name_of(op) in units:
            continue
        readers = tuple(name_of(diagnosis.ops[c]) for c in op.consumers
                        if diagnosis.ops[c].op_type not in QUANTIZER_OPS)  # fmt: skip
        units[name_of(op)] = Unit(name_of(op), op.index, op.op_type, readers,
                                  op.error_added_db or 0.0, worst.get(op.index))  # fmt: skip
    last = len(diagnosis.ops)
    for b in rebuild.boundaries:
        units[b.key] = Unit(b.key, -1 if b.kind == "INPUT" else last, b.kind)
    return list(units.values())


def _priority(units: list[Unit]) -> list[Unit]:
    """Most promising first: the boundaries, then by the better of two ranks, the error the
    op adds and the SQNR of its worst weight."""
    by_error = sorted(units, key=lambda u: -u.error_added_db)
    by_weight = sorted(units, key=lambda u: math.inf if u.weight_sqnr_db is None
                       else u.weight_sqnr_db)  # fmt: skip
    rank = {u.key: min(by_error.index(u), by_weight.index(u)) for u in units}
    return sorted(units, key=lambda u: (not u.is_boundary, rank[u.key]))


def suggest(
    diagnosis: DiagnosisResult,
    build: Rebuilder,
    float_model: str | Path,
    data: Any,
    *,
    max_drop: float,
    budget_metric: str = "accuracy",
    out_dir: str | Path,
    name_of: Callable[[OpRow], str] = lambda op: op.output,
    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
    workers: int | None = None,
    status: Callable[[str], None] | None = None,
    source: str | Path | None = None,
) -> Suggestion:
    """Find the smallest plan of per-op precisions that brings the drop within ``max_drop``,
    measuring every step (see :mod:`quantlens.diagnose.search`).

    Args:
        diagnosis: the diagnosis whose ops are the candidates.
        build: rebuilds the quantized model with a plan (:func:`make_builder`).
        float_model: the float model the metric is measured against.
        max_drop: accuracy points (0.01 = one) or, for ``sqnr``, relative RMSE.
        name_of: the name ``build`` knows an op by (its output tensor name by default).
        max_evaluations: how many plans the search may build and measure.
        workers: plans measured side by side (default: one per core).
        source: the model the quantized ones are built from, for the manifest.
    """
    if budget_metric not in BUDGET_METRICS:
        raise ConfigError(f"unknown budget metric '{budget_metric}'; use accuracy or sqnr")
    if max_evaluations < 1:
        raise ConfigError(f"--max-evaluations must be at least 1, got {max_evaluations}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quantlens-suggest-", dir=out))
    suffix = Path(float_model).suffix
    task = "classification" if budget_metric == "accuracy" else None
    if budget_metric == "accuracy":
        ref_value = _metric(evaluate(float_model, [], data, task=task).models[0], budget_metric)

        def measure(path: Path) -> tuple[float, tuple[float, float] | None]:
            result = evaluate(path, [], data, task=task, num_threads=1)
            value = _metric(result.models[0], budget_metric)
            n = result.dataset.samples
            return value, wilson_interval(round(value * n), n)
    else:
        from quantlens.models.stored import load_reference_outputs

        ref_value = math.inf
        stored = work / "reference-outputs.npz"
        evaluate(float_model, [], data, save_reference_outputs=stored)

        def measure(path: Path) -> tuple[float, tuple[float, float] | None]:
            result = evaluate(load_reference_outputs(stored), [path], data, num_threads=1)
            return _metric(result.models[1], budget_metric), None

    units = _units(diagnosis, build, name_of)
    evaluator = Evaluator(build, measure, lambda v: _drop(v, ref_value, budget_metric), work,
                          suffix, max_evaluations, workers)  # fmt: skip
    search = Search(units, evaluator, max_drop, build.precisions)
    log = search.run(_priority(units), status)
    chosen = _chosen(log, max_drop)
    steps, float_p50 = _benchmarked(log, chosen, float_model, data, status)
    latency_idx = [i for i, st in enumerate(steps) if not math.isnan(st.p50_ms)]
    latency_front = pareto_front([(steps[i].p50_ms, steps[i].metric) for i in latency_idx])
    size_front = pareto_front([(float(st.size_bytes), st.metric) for st in steps])
    by_name = {u.key: u for u in units}
    met = within(chosen.drop, max_drop)
    model = out / f"{Path(float_model).stem}_repaired{suffix}"
    model.write_bytes(chosen.path.read_bytes())
    kept = tuple(KeptOp(_ref(by_name, p.name, diagnosis), p.precision) for p in chosen.plan)
    float_size = Path(float_model).stat().st_size
    # the last step that built the model: pruning may have dropped placements that did not
    # change it
    model_step = next((st.step for st in reversed(steps) if st.path == str(chosen.path)), None)
    by_error = tuple(ErrorRank(_ref(by_name, u.key, diagnosis), u.error_added_db,
                               u.weight_sqnr_db)
                     for u in sorted(units, key=lambda u: -u.error_added_db))  # fmt: skip
    alone = sorted(
        (Sensitivity(_ref(by_name, key, diagnosis), precision,
                     by_name[key].readers if precision in WIDE_OUTPUT else (),
                     t.metric, t.drop, t.size_bytes)
         for (key, precision), t in log.alone.items()),
        key=lambda r: r.drop,
    )  # fmt: skip
    suggestion = Suggestion(
        budget_metric=budget_metric,
        max_drop=max_drop,
        float_metric=ref_value if budget_metric == "accuracy" else None,
        float_p50_ms=float_p50,
        float_size_bytes=float_size,
        by_error=by_error,
        by_sensitivity=tuple(alone),
        steps=tuple(steps),
        pareto_latency=tuple(steps[latency_idx[i]].step for i in latency_front),
        pareto_size=tuple(steps[i].step for i in size_front),
        met_budget=met,
        kept=kept,
        model=str(model),
        sources=tuple(log.sources),
        evaluations=evaluator.evaluations,
        max_evaluations=max_evaluations,
        precisions=tuple(search.precisions),
        model_step=model_step,
        refused=len(evaluator.refused),
        refused_reasons=tuple(dict.fromkeys(evaluator.refused.values()))[:5],
    )
    chosen_step = next((st for st in steps if st.step == suggestion.model_step), None)
    if chosen_step is None:  # a one-at-a-time trial: shown as a step of its own
        chosen_step = SearchStep(len(steps), chosen.plan, str(chosen.path), chosen.metric,
                                 chosen.drop, chosen.size_bytes, how="sensitivity",
                                 interval=chosen.interval)  # fmt: skip
    if needs_explaining(suggestion, chosen_step):
        suggestion = dataclasses.replace(
            suggestion,
            explanation=explain(suggestion, chosen_step, log.stopped,
                                _clipped_inputs(diagnosis, build)),
        )  # fmt: skip
    manifest = model.with_suffix(".json")
    write_json({
        "schema": MANIFEST_SCHEMA,
        "model": model.name,
        "source": str(source or float_model),
        "float_model": str(float_model),
        "mode": build.mode,
        "budget": {"metric": budget_metric, "max_drop": max_drop, "met": met},
        "metric": encode_number(chosen.metric), "drop": encode_number(chosen.drop),
        "size_bytes": chosen.size_bytes,
        "kept": [{**k.to_dict(), "name": p.name} for k, p in zip(kept, chosen.plan,
                                                                  strict=True)],
        "everything_else": f"as mode '{build.mode}' quantizes it",
        "quantizer_settings": evaluator.settings.get(chosen.plan, {}),
    }, manifest)  # fmt: skip
    return dataclasses.replace(suggestion, manifest=str(manifest))


def _clipped_inputs(diagnosis: DiagnosisResult, build: Rebuilder) -> dict[str, float]:
    """The share of each integer model input's values the diagnosed model clips."""
    inputs = {b.tensor for b in build.boundaries if b.kind == "INPUT"}
    return {t.float_name: t.clipped_fraction for t in diagnosis.tensors
            if t.float_name in inputs and t.clipped_fraction}  # fmt: skip


def _ref(units: dict[str, Unit], name: str, diagnosis: DiagnosisResult) -> OpRef:
    """The op a placement names (a reader kept with its writer may not be a unit itself)."""
    unit = units.get(name)
    if unit is not None:
        return OpRef(unit.index, unit.op_type, name)
    return OpRef(-1, "?", name)


def _chosen(log: SearchLog, max_drop: float) -> Trial:
    """The smallest measured model within the budget, else the one with the lowest drop
    that is not the whole model in float."""
    explored = [t for _, t in log.steps] + [log.base] + list(log.alone.values())
    meeting = [t for t in explored if within(t.drop, max_drop)]
    if meeting:
        smallest = min(meeting, key=lambda t: (t.size_bytes, t.drop))
        best = log.best
        if best is not None and best.digest == smallest.digest:  # the search's own plan
            return best
        return smallest
    return min(explored, key=lambda t: (t.drop, t.size_bytes))


def _benchmarked(
    log: SearchLog, chosen: Trial, float_model: str | Path, data: Any,
    status: Callable[[str], None] | None,
) -> tuple[list[SearchStep], float]:  # fmt: skip
    """The search's steps, the mode as it quantizes first, and the float model's p50 (ms).
    The latency of the float model, the mode, every accepted step and the chosen model is
    measured on the data's samples (a model may leave its input's size open); the others are
    left unmeasured (a search can take hundreds of steps)."""
    base = log.base
    start = SearchStep(0, base.plan, str(base.path), base.metric, base.drop, base.size_bytes,
                       how="start", interval=base.interval)  # fmt: skip
    steps = [start] + [st for st, _ in log.steps]
    timed = [i for i, st in enumerate(steps) if st.accepted or st.path == str(chosen.path)]
    if status:
        status(f"benchmarking {len(timed)} models against the float model…")
    paths = [str(float_model)] + [steps[i].path for i in timed]
    bench = benchmark(paths, data=data, warmup_runs=5, runs=30, min_seconds=0.3,
                      measure_memory=False)  # fmt: skip
    for i, e in zip(timed, bench.results[1:], strict=True):
        steps[i] = dataclasses.replace(steps[i], p50_ms=e.latency_ms["p50"])
    return steps, bench.results[0].latency_ms["p50"]


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
    max_evaluations: int = DEFAULT_MAX_EVALUATIONS,
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
        max_evaluations=max_evaluations, source=src,
    )  # fmt: skip
    return dataclasses.replace(diagnosis, suggestion=suggestion)


def _names_for(op_name: str, float_names: dict[str, str]) -> Callable[[OpRow], str]:
    """How the rebuilding tool knows an op (:attr:`quantlens.backends.Backend.op_name`)."""
    if op_name == "float_tensor":
        return lambda op: float_names.get(op.output, op.output)
    if op_name == "node":
        return lambda op: op.node or op.output
    return lambda op: op.output
