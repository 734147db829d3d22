"""compare(): quantize into every mode, evaluate each against the float model, recommend one.

The recommendation is the smallest variant whose drop in the task metric stays within
``max_drop`` (ties broken by latency); it names the variants that are significantly worse
than the reference and those slower than float.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quantlens.backends import backend_for, resolve
from quantlens.budget import drop, within
from quantlens.data import BUILTINS
from quantlens.engine.options import EvalOptions
from quantlens.errors import ConfigError
from quantlens.evaluation import evaluate
from quantlens.metric_registry import drop_words
from quantlens.metrics.paired import significantly_worse
from quantlens.quantize import (
    DEFAULT_CALIBRATION_SAMPLES,
    available_modes,
    quantize,
    resolve_modes,
)
from quantlens.quantize.precision import read_manifest
from quantlens.results import (
    COMPARE_SCHEMA,
    EvaluationResult,
    ModelResult,
    RankedVariant,
    Recommendation,
    ReportWarning,
    VariantQuantization,
)

DEFAULT_MAX_DROP = 0.01


def default_calibration(data: Any) -> Any:
    """The calibration source when none is given: a built-in set's train split, otherwise
    the evaluation data itself (its first samples; the report says so)."""
    if isinstance(data, str) and data in BUILTINS:
        return f"{data}:train"
    return data


def _p50(m: ModelResult) -> float | None:
    return m.performance.latency_ms["p50"] if m.performance else None


PREFERENCES = ("size", "latency")
#: With ``prefer="size"``, a variant at most this much larger than the smallest acceptable
#: one is taken instead when it is significantly faster: nobody trades twice the latency for
#: a few percent of size.
SIZE_SLACK = 0.10


def _speedup(m: ModelResult) -> float:
    return m.performance.speedup if m.performance and m.performance.speedup else 0.0


def _significantly_faster(a: ModelResult, b: ModelResult) -> bool:
    """a's speed-up interval lies wholly above b's."""
    ca = a.performance.speedup_ci95 if a.performance else None
    cb = b.performance.speedup_ci95 if b.performance else None
    return ca is not None and cb is not None and ca[0] > cb[1]


def _io_dtypes(path: Path) -> list[str]:
    """The dtypes a model takes and gives, inputs then outputs."""
    from quantlens.models.loading import load_model

    model = load_model(path)
    return [s.dtype for s in (*model.inputs, *model.outputs)]


def _io_change(source: list[str], variant: list[str]) -> str | None:
    """What changed in the I/O contract, e.g. 'float32 -> int8' (None: nothing)."""
    changed = sorted({f"{a} -> {b}" for a, b in zip(source, variant, strict=False) if a != b})
    return ", ".join(changed) or None


def changes_io(m: ModelResult) -> bool:
    """The variant takes or gives integers where the float model takes or gives floats."""
    return m.quantization is not None and bool(m.quantization.io_change)


def _trade(m: ModelResult, ref: ModelResult, baseline: ModelResult, task: str) -> str:
    """What choosing ``m`` trades: size, speed and the task metric, each with its evidence."""
    parts = [f"{m.size_bytes / baseline.size_bytes:.0%} of the float model's size"]
    perf = m.performance
    if perf is not None and perf.speedup is not None:
        speed = f"{perf.speedup:.2f}× the float model's speed"
        if perf.speedup_ci95 is not None:
            speed += f" [95% CI {perf.speedup_ci95[0]:.2f}–{perf.speedup_ci95[1]:.2f}]"
        parts.append(speed)
    detail = f"a drop of {drop_words(drop(m, ref, task) or 0.0, task, m.class_scores)}"
    if m.paired:
        lo, hi = m.paired.ci95_low, m.paired.ci95_high
        scale = 100 if task == "classification" else 1
        unit = " pt" if task == "classification" else ""
        detail += f" (95% CI of the delta [{lo * scale:+.2f}, {hi * scale:+.2f}]{unit})"
    parts.append(detail)
    return ", ".join(parts)


def _ranking(
    candidates: list[ModelResult], ref: ModelResult, task: str, max_drop: float
) -> tuple[RankedVariant, ...]:
    """The candidates in the order a reader weighs them, each with its drop and whether it is
    within the budget: those within it smallest first, then the rest by drop."""

    drops = {m.name: drop(m, ref, task) for m in candidates}
    ok = {name: d is not None and within(d, max_drop) for name, d in drops.items()}

    def key(m: ModelResult) -> tuple[bool, float]:
        d = drops[m.name]
        return (False, m.size_bytes) if ok[m.name] else (True, d if d is not None else math.inf)

    return tuple(
        RankedVariant(m.name, drops[m.name], ok[m.name]) for m in sorted(candidates, key=key)
    )


def recommend(
    result: EvaluationResult, float_name: str, max_drop: float, *, prefer: str = "size",
    allow_io_change: bool = False,
) -> Recommendation:  # fmt: skip
    """Pick the variant a careful person would ship, and say what it trades.

    Acceptable variants drop at most ``max_drop``; a variant that changes the model's I/O
    contract (integer inputs or outputs) only with ``allow_io_change``. ``prefer="size"``
    takes the smallest, unless one at most SIZE_SLACK larger is significantly faster;
    ``prefer="latency"`` takes the fastest, the smaller on a tie. A variant significantly
    slower than float is taken only when every acceptable one is. The result also names the
    variants significantly worse than the reference and those significantly slower than float.
    """
    if prefer not in PREFERENCES:
        raise ConfigError(f"unknown preference '{prefer}'; use one of {', '.join(PREFERENCES)}")
    ref = result.models[0]
    baseline = result.model(float_name)
    task = result.dataset.task
    candidates = list(result.models[1:])
    within_drop = [
        m for m in candidates if (d := drop(m, ref, task)) is not None and within(d, max_drop)
    ]
    acceptable = [m for m in within_drop if allow_io_change or not changes_io(m)]
    io_held_back = [m.name for m in within_drop if m not in acceptable]
    worse = [m.name for m in candidates if m.paired and significantly_worse(m.paired)]
    slower = [
        m.name
        for m in candidates
        if m is not baseline and m.performance is not None and m.performance.significantly_slower
    ]
    # A variant significantly slower than float is a size saving paid for in speed; it is
    # picked only when no acceptable variant is at least as fast as float.
    slow_held_back = [m.name for m in acceptable if m.name in slower]
    if len(slow_held_back) < len(acceptable):
        acceptable = [m for m in acceptable if m.name not in slow_held_back]
    else:
        slow_held_back = []
    allowed = drop_words(max_drop, task, any(m.class_scores for m in candidates))
    if acceptable:
        if prefer == "latency":
            best = max(acceptable, key=lambda m: (_speedup(m), -m.size_bytes))
            why = "the fastest variant within the allowed drop"
        else:
            best = min(acceptable, key=lambda m: (m.size_bytes, _p50(m) or math.inf))
            why = "the smallest variant within the allowed drop"
            near = [m for m in acceptable if m.size_bytes <= best.size_bytes * (1 + SIZE_SLACK)]
            faster = [m for m in near if _significantly_faster(m, best)]
            if faster:
                smallest = best
                best = max(faster, key=_speedup)
                why = (f"within {SIZE_SLACK:.0%} of the smallest variant's size "
                       f"({smallest.name}) and significantly faster than it")  # fmt: skip
        reason = f"{why} of {allowed}: {_trade(best, ref, baseline, task)}"
        chosen = best.name
    else:
        chosen = ref.name
        reason = f"no variant stays within the allowed drop of {allowed}; keep the float model"
    if io_held_back:
        reason += (f"; not considered, as they change the model's I/O to integers: "
                   f"{', '.join(io_held_back)} (allow with --allow-io-change)")  # fmt: skip
    if slow_held_back:
        reason += ("; not considered, as they are significantly slower than the float model: "
                   f"{', '.join(slow_held_back)}")  # fmt: skip
    return Recommendation(
        model=chosen, reason=reason, max_drop=max_drop, prefer=prefer,
        allow_io_change=allow_io_change, float_baseline=float_name,
        significantly_worse=tuple(worse), slower_than_float=tuple(slower),
        io_change=tuple(m.name for m in candidates if changes_io(m)),
        ranking=_ranking(candidates, ref, task, max_drop),
    )  # fmt: skip


def _given(path: str) -> tuple[str, dict[str, Any]]:
    """The mode and settings of a model compare did not make: from its repair manifest, else
    as its runtime tells the mode of a file."""
    manifest = read_manifest(path)
    if manifest is not None:
        return f"{manifest['mode']} + kept", {
            "manifest": str(Path(path).with_suffix(".json")),
            "kept": [{"name": k["name"], "precision": k["precision"]} for k in manifest["kept"]],
        }
    mode_of = backend_for(path).mode_of
    mode = resolve(mode_of)(Path(path)) if mode_of else "given"
    return str(mode), {"given": True}


def compare(
    model: str | os.PathLike[str],
    data: Any,
    *,
    modes: str | list[str] = "all",
    calibration: Any = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    max_drop: float = DEFAULT_MAX_DROP,
    out_dir: str | os.PathLike[str] | None = None,
    prefer: str = "size",
    allow_io_change: bool = False,
    extra: Sequence[str | os.PathLike[str]] = (),
    options: EvalOptions | None = None,
    progress: Callable[[int], None] | None = None,
    status: Callable[[str], None] | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Quantize ``model`` into ``modes``, evaluate every variant on ``data``, and recommend.

    Args:
        model: a Keras file, SavedModel directory or float ``.tflite``.
        data: evaluation data (anything ``load_dataset`` takes).
        modes: modes to produce (see :func:`quantlens.quantize`); ``"all"`` by default.
        calibration: calibration data for static modes; by default a built-in set's train
            split, or the evaluation data's first ``calibration_samples`` samples.
        max_drop: the largest acceptable drop (0.01: one accuracy point, or 1% more MAE).
        out_dir: where the variants are written. ``None``: a new folder under the system's
            temporary directory (``quantlens-compare-*``), which is kept so that the result's
            paths stay valid; its path is in ``settings["out_dir"]``; delete it when done.
        prefer: ``"size"`` or ``"latency"``: what the recommendation optimises within the
            allowed drop (see :func:`recommend`).
        allow_io_change: recommend variants with integer inputs or outputs too (they change
            what the application must feed the model).
        extra: models made elsewhere (a repaired model from ``diagnose --suggest``, a
            variant of another tool) evaluated and recommended beside the variants; one with
            a repair manifest beside it is reported as its mode ``+ kept`` and what it keeps.
        options: how the evaluation runs (:class:`~quantlens.engine.options.EvalOptions`;
            here ``bench`` is on by default: the speed-up is against the float model).
        status: called with a line of text before each stage.
        **overrides: any field of ``options`` by name (``bench=False``, ``workers=2``).

    Returns:
        An :class:`EvaluationResult` with schema ``quantlens.compare/1``: each candidate's
        ``quantization`` and ``paired`` statistics, and a ``recommendation``.
    """
    opts = (options or EvalOptions(bench=True)).with_overrides(**overrides)
    if not 0 <= max_drop < 1:
        raise ConfigError(f"max drop must be a fraction in [0, 1) (0.01 = 1 point), got {max_drop}")
    src = Path(model)
    chosen = resolve_modes(src, modes)
    mode_options = available_modes(src)
    calib = calibration
    calib_note = None
    if calib is None and any(mode_options[m][1] for m in chosen):
        calib = default_calibration(data)
        if calib is data:
            calib_note = "calibrated on the evaluation data (pass --calibration to keep them apart)"
    if not backend_for(src).is_own_baseline and "float32" not in chosen:
        chosen = ["float32", *chosen]  # the float .tflite is the latency and size baseline
    if prefer not in PREFERENCES:
        raise ConfigError(f"unknown preference '{prefer}'; use one of {', '.join(PREFERENCES)}")
    out = Path(out_dir) if out_dir is not None else Path(
        tempfile.mkdtemp(prefix="quantlens-compare-"))  # fmt: skip
    if status:
        status(f"quantizing {src.name} into {', '.join(chosen)}…")
    made = quantize(src, chosen, out, calibration=calib, calibration_samples=calibration_samples,
                    status=status, constants=opts.constants)  # fmt: skip
    if status:
        status("evaluating every variant…")
    given = [str(p) for p in extra]
    result = evaluate(src, [v.path for v in made.variants] + given, data, options=opts,
                      progress=progress, status=status)  # fmt: skip
    by_path = {v.path: (v.mode, dict(v.settings)) for v in made.variants}
    by_path.update({p: _given(p) for p in given})
    source_io = _io_dtypes(src)
    models = [result.models[0]] + [
        dataclasses.replace(m, quantization=VariantQuantization(
            *by_path[m.path], _io_change(source_io, _io_dtypes(Path(m.path))),
        ))
        for m in result.models[1:]
    ]  # fmt: skip
    float_name = (
        models[0].name
        if backend_for(src).is_own_baseline  # the source itself is the float baseline
        else next(m.name for m in models[1:] if m.quantization and m.quantization.mode == "float32")
    )
    result = dataclasses.replace(result, models=tuple(models), schema=COMPARE_SCHEMA)
    rec = recommend(result, float_name, max_drop, prefer=prefer, allow_io_change=allow_io_change)
    failed = tuple(ReportWarning(f.code, f.mode, f"{f.mode}: not made: {f.reason}")
                   for f in made.failed)  # fmt: skip
    result = dataclasses.replace(result, warnings=failed + result.warnings)
    settings = dict(result.settings)
    settings.update(
        calibration=made.calibration_source,
        calibration_samples=made.calibration_samples,
        out_dir=str(out),
    )
    if calib_note:
        rec = dataclasses.replace(rec, note=calib_note)
    return dataclasses.replace(result, recommendation=rec, settings=settings)
