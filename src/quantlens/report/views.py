"""Views: a result turned once into titled tables of plain-text cells; the console, HTML and
Markdown renderers only spell them (escape, style, lay out).

A cell's text is plain (names unescaped); each renderer escapes it for its medium. A column
says what kind of text it holds (a ``name`` folds, ``text`` wraps at words, a ``num`` never
wraps) and whether a terminal shows it without ``--wide``; a cell's ``tone`` says how it
stands out (``good``, ``bad``), each renderer in its own way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from quantlens.metric_registry import human_size, latency, number, shown_in, spell
from quantlens.report.formats import (
    delta_header,
    delta_text,
    drop_text,
    ratio_text,
    short_tensor_name,
    suggestion_metric,
)
from quantlens.results import (
    PRECISIONS,
    BenchResult,
    DiagnosisResult,
    EvaluationResult,
    KernelCheck,
    ModelResult,
    SearchStep,
    StoredReference,
    Suggestion,
    boundary_of,
)


@dataclass(frozen=True)
class Col:
    """A column: its heading, the kind of its text, whether a terminal shows it without
    ``--wide``, whether the HTML page and Markdown show it (a page is as wide as it is), and
    a console colour."""

    header: str
    kind: str = "num"  # "name" | "text" | "num"
    compact: bool = True
    style: str | None = None
    page: bool = True


@dataclass(frozen=True)
class Cell:
    """A cell's plain text, how it stands out (None, "good", "bad"), and words that follow a
    name without being part of it (" (ref)", " ⚠")."""

    text: str
    tone: str | None = None
    note: str = ""


@dataclass(frozen=True)
class TableView:
    """A titled table, ready to spell."""

    title: str
    columns: tuple[Col, ...]
    rows: tuple[tuple[Cell, ...], ...]


def models_view(result: EvaluationResult) -> TableView:
    """The table of an evaluate run (one row per model, the reference first) or of a compare
    run (the variants in the order and with the verdicts compare() decided)."""
    if result.recommendation is not None:
        return compare_view(result)
    return evaluation_view(result)


def evaluation_view(result: EvaluationResult) -> TableView:
    """One row per model, the reference first: format and size, task metrics, fidelity to the
    reference, the paired change, latency, speed and memory."""
    task = result.dataset.task
    task_cols = shown_in("task_metrics", {k for m in result.models for k in m.task_metrics or {}})
    fid_cols = shown_in("fidelity", {k for m in result.models for k in m.fidelity or {}})
    compact_fidelity = ("sqnr_db", "top1_agreement")
    columns = [Col("model", "name", style="bold"), Col("format", "text", compact=False),
               Col("size", compact=False)]  # fmt: skip
    columns += [Col(c.short_label, style="cyan", compact=i == 0) for i, c in enumerate(task_cols)]
    columns += [Col(c.short_label, style="magenta", compact=c.key in compact_fidelity)
                for c in fid_cols]  # fmt: skip
    paired = any(m.paired for m in result.models) and task in ("classification", "regression")
    if paired:
        columns += [Col(delta_header(task), "text", compact=False), Col("p", compact=False)]
    benched = any(m.performance for m in result.models)
    if benched:
        columns += [Col("p50", style="green"), Col("speed", style="green"),
                    Col("peak RSS", style="green", compact=False)]  # fmt: skip
    rows = []
    for m in result.models:
        row = [Cell(m.name, note=" (ref)" if m.role == "reference" else ""), Cell(m.format),
               Cell(human_size(m.size_bytes))]  # fmt: skip
        row += [Cell(spell(c.name, (m.task_metrics or {}).get(c.key or ""))) for c in task_cols]
        row += [Cell(spell(c.name, (m.fidelity or {}).get(c.key or ""))) for c in fid_cols]
        if paired:
            row += [Cell(t) for t in delta_text(m.paired, task)]
        if benched:
            row += [Cell(t) for t in _performance_cells(m)]
        rows.append(tuple(row))
    title = (f"{result.dataset.samples} samples from {result.dataset.source} · task: {task} · "
             f"fidelity vs {result.reference}")  # fmt: skip
    return TableView(title, tuple(columns), tuple(rows))


def _performance_cells(m: ModelResult) -> list[str]:
    perf = m.performance
    if perf is None:
        return ["—"] * 3
    return [
        latency(perf.latency_ms["p50"]) + (" ⚠" if perf.warnings else ""),
        number(perf.speedup, "{:.2f}×"),
        "—" if perf.peak_rss_mb is None else f"{perf.peak_rss_mb:.1f} MiB",
    ]


def compare_view(result: EvaluationResult) -> TableView:
    """The reference, then the variants in compare()'s ranking: size, the change of the task
    metric with its interval, fidelity, latency and speed, and compare()'s verdict."""
    rec = result.recommendation
    assert rec is not None
    task = result.dataset.task
    ref = result.models[0]
    baseline = next((m for m in result.models if m.name == rec.float_baseline), ref)
    metric = {"classification": "accuracy", "regression": "mae"}.get(task)
    # the ranking's order; models it does not name (a report edited by hand) follow
    by_name = {m.name: m for m in result.models[1:]}
    ordered = [by_name.pop(r.model) for r in rec.ranking if r.model in by_name]
    ordered += list(by_name.values())
    columns = [Col("variant", "name"), Col("size"), Col("× float", compact=False)]
    if metric:
        columns += [Col(metric, compact=False), Col(delta_header(task), "text"),
                    Col("p", compact=False)]  # fmt: skip
    columns += [
        Col("SQNR dB", compact=not metric), Col("top-1 agree", compact=False),
        Col("p50", compact=False), Col("speed"), Col("verdict", "text"),
    ]  # fmt: skip
    rows = []
    for m in [ref, *ordered]:
        row = [Cell(m.name), Cell(human_size(m.size_bytes)),
               Cell(f"{m.size_bytes / baseline.size_bytes:.2f}")]  # fmt: skip
        if metric:
            row += [Cell(spell(metric, (m.task_metrics or {}).get(metric)))]
            row += [Cell(t) for t in delta_text(m.paired, task)]
        fid = m.fidelity or {}
        row += [
            Cell(spell("sqnr_db", fid.get("sqnr_db"))),
            Cell(spell("top1_agreement", fid.get("top1_agreement"))),
            Cell(latency(m.performance.latency_ms["p50"] if m.performance else None)),
            Cell(number(m.performance.speedup if m.performance else None, "{:.2f}×")),
            _verdict(m, ref, result),
        ]
        rows.append(tuple(row))
    title = (f"{result.dataset.samples} samples from {result.dataset.source} · task: {task} · "
             f"drop vs {ref.name}, speed and size vs {baseline.name}")  # fmt: skip
    return TableView(title, tuple(columns), tuple(rows))


def _verdict(m: ModelResult, ref: ModelResult, result: EvaluationResult) -> Cell:
    """What compare() decided about a model, in words."""
    rec = result.recommendation
    assert rec is not None
    tone = None
    if m is ref:
        text = "reference"
    elif m.name == rec.model:
        text, tone = "✓ recommended", "good"
    elif (v := rec.verdict(m.name)) is None:
        text = ""  # a report from before verdicts were recorded
    elif v.within_budget:
        text = "ok"
    else:
        text, tone = (
            "✗ drop" + (", significant" if m.name in rec.significantly_worse else ""),
            "bad",
        )
    if m.name in rec.slower_than_float:
        text += " · slower"
    if m.name in rec.io_change:
        text += " · integer I/O"
    return Cell(text, tone)


def bench_view(result: BenchResult) -> TableView:
    """One row per model and configuration: latency percentiles, throughput, memory, size
    and the p50 ratio to the first model (a terminal shows p50, p99 and the ratio; threads
    and batch when they vary; throughput when a batch holds more than one sample, since
    otherwise it is one over the mean latency)."""
    varied = {k: len({getattr(e, k) for e in result.results}) > 1
              for k in ("threads", "batch_size")}  # fmt: skip
    batched = any(e.batch_size > 1 for e in result.results)
    columns = (
        Col("model", "name"), Col("threads", compact=varied["threads"]),
        Col("batch", compact=varied["batch_size"]), Col("runs", compact=False, page=False),
        Col("p50"), Col("p90", compact=False), Col("p99"), Col("mean", compact=False, page=False),
        Col("cv", compact=False), Col("init", compact=False), Col("first", compact=False),
        Col("samples/s", compact=batched), Col("peak RSS", compact=False),
        Col("size", compact=False), Col("gzip", compact=False), Col("ratio [95% CI]", "text"),
    )  # fmt: skip
    rows = []
    for e in result.results:
        lat = e.latency_ms
        texts = [
            "default" if e.threads is None else str(e.threads), str(e.batch_size), str(e.runs),
            *(latency(lat[k]) for k in ("p50", "p90", "p99", "mean")), f"{lat['cv']:.0%}",
            *(latency(lat.get(k)) for k in ("init", "first")), f"{e.throughput_sps:,.0f}",
            "—" if e.peak_rss_mb is None else f"{e.peak_rss_mb:.1f} MiB",
            human_size(e.size_bytes), human_size(e.size_gzip_bytes), ratio_text(e.ratio_to_first),
        ]  # fmt: skip
        name = Cell(e.name, note=" ⚠" if e.warnings else "")
        rows.append((name, *(Cell(t) for t in texts)))
    title = ("latency of invoke (steady state); ratio = p50 / the first model's, with the 95% "
             "interval of a block bootstrap over rounds")  # fmt: skip
    return TableView(title, columns, tuple(rows))


def on_page(view: TableView) -> TableView:
    """The view with only the columns a page shows."""
    keep = [i for i, c in enumerate(view.columns) if c.page]
    return TableView(view.title, tuple(view.columns[i] for i in keep),
                     tuple(tuple(r[i] for i in keep) for r in view.rows))  # fmt: skip


def diagnosis_view(result: DiagnosisResult, top: int) -> TableView:
    """The ``top`` ops by the error they add, with their output's SQNR (whole and per
    channel), range, scale and, when the TFLite debugger ran, its per-layer errors."""
    by_output = {t.name: t for t in result.tensors}
    debugged = any(t.debugger is not None for t in result.tensors)
    columns = [
        # an op type is data too (a custom op's name comes from the file): a name
        Col("#", page=False), Col("op", compact=False), Col("type", "name"),
        Col("output tensor", "name"), Col("added dB"), Col("SQNR dB"), Col("ch. median dB"),
        Col("ch. worst dB", compact=False), Col("float range", compact=False),
        Col("ch. range ×", compact=False), Col("scale", compact=False),
        Col("rmse/scale", compact=False),
    ]  # fmt: skip
    if debugged:
        columns += [Col("debugger mse", compact=False), Col("debugger max |err|", compact=False)]
    rows = []
    for rank, op in enumerate(result.top_ops(top), start=1):
        t = by_output.get(op.output)
        texts = [
            str(rank), str(op.index), op.op_type, short_tensor_name(op.output),
            number(op.error_added_db, "{:+.1f}"), spell("sqnr_db", op.output_sqnr_db),
            spell("sqnr_db", op.output_channel_sqnr_median_db),
            spell("sqnr_db", op.output_channel_sqnr_worst_db),
            f"[{t.float_min:.3g}, {t.float_max:.3g}]" if t else "—",
            number(t.channel_range_ratio if t else None, "{:.3g}"),
            number(t.scale if t else None, "{:.3g}"),
            number(t.rmse_over_scale if t else None, "{:.2f}"),
        ]  # fmt: skip
        if debugged:
            dbg = (t.debugger if t else None) or {}
            texts += [number(dbg.get("mean_squared_error"), "{:.3g}"),
                      number(dbg.get("max_abs_error"), "{:.3g}")]  # fmt: skip
        rows.append(tuple(Cell(x) for x in texts))
    title = (f"top {top} ops by error added (dB of per-channel median SQNR lost between the op's "
             "worst input and its output)")  # fmt: skip
    return TableView(title, tuple(columns), tuple(rows))


#: Rows of the sensitivity table a report shows (the JSON has them all).
SENSITIVITY_ROWS = 10


def precision_label(precision: str) -> str:
    return PRECISIONS.get(precision, (precision, ""))[0]


def precision_legend(s: Suggestion) -> str:
    """``kept as: float = …`` for the precisions the search could use."""
    return "kept as: " + " · ".join(
        f"{precision_label(p)} = {PRECISIONS.get(p, (p, p))[1]}" for p in s.precisions
    )


def _names(placements: Sequence[Any], sign: str) -> str:
    """``+ a, b (float)``: a step's change, at most two names spelled out."""
    if not placements:
        return ""
    by: dict[str, list[str]] = {}
    for p in placements:
        by.setdefault(precision_label(p.precision), []).append(_shown_name(p.name))
    parts = []
    for label, names in by.items():
        shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        parts.append(f"{sign} {shown}" + (f" ({label})" if sign == "+" else ""))
    return "; ".join(parts)


def _shown_name(key: str, code: Any = str) -> str:
    """A plan's key as a table shows it: ``input x`` for a model input, else the op's
    output tensor, shortened."""
    boundary = boundary_of(key)
    if boundary is not None:
        return f"{boundary[0].lower()} {code(boundary[1])}"
    return code(short_tensor_name(key))


def kept_text(s: Suggestion, code: Any = str, names_up_to: int = 6) -> str:
    """What the suggested model keeps, by precision: ``CONV_2D a, input b (float); …``, each
    name through ``code`` (escaping for the medium); more than ``names_up_to`` at one
    precision are counted by op type (the manifest lists each)."""
    by: dict[str, list[Any]] = {}
    for k in s.kept:
        by.setdefault(precision_label(k.precision), []).append(k)
    parts = []
    for label, kept in by.items():
        if len(kept) <= names_up_to:
            text = ", ".join(_shown_name(k.op.tensor, code) if boundary_of(k.op.tensor)
                             else f"{k.op.op_type} {_shown_name(k.op.tensor, code)}"
                             for k in kept)  # fmt: skip
        else:
            counts = Counter(k.op.op_type for k in kept)
            text = f"{len(kept)} ops: " + ", ".join(f"{n} {t}" for t, n in counts.most_common())
        parts.append(f"{text} ({label})")
    return "; ".join(parts) or "nothing"


def step_change(plus: Sequence[Any], minus: Sequence[Any]) -> str:
    """What a step added to and removed from the last accepted plan, in words."""
    change = "; ".join(t for t in (_names(plus, "+"), _names(minus, "−")) if t)
    return change or "the mode as it quantizes"


def shown_steps(s: Suggestion) -> list[tuple[SearchStep, str]]:
    """The steps a report shows: each accepted step that changed the model (dropping a
    candidate the mode leaves float anyway changes the plan, not the model), and the
    suggested one; each with what it changed since the previous one shown."""
    out: list[tuple[SearchStep, str]] = []
    last_path: str | None = None
    shown: set[Any] = set()
    for st in s.steps:
        if st.step == s.model_step or (st.accepted and st.path != last_path):
            now = {p.name for p in st.kept}
            plus = [p for p in st.kept if p not in shown]  # new, or at another precision
            minus = sorted((p for p in shown if p.name not in now), key=lambda p: p.name)
            out.append((st, step_change(plus, minus)))
            shown, last_path = set(st.kept), st.path
    return out


def suggestion_views(s: Suggestion) -> tuple[TableView, TableView, TableView]:
    """Each source of error measured alone; the most helpful candidates, each measured alone
    at a precision; and the search's accepted steps with the Pareto fronts marked."""
    acc = s.accuracy
    unit = "accuracy" if acc else "SQNR dB"
    sources = TableView(
        "each source of error alone",
        (Col("source", "name"), Col("what is quantized", "text"), Col(unit), Col("drop"),
         Col("size")),
        tuple((Cell(c.source), Cell(c.description), Cell(suggestion_metric(c.metric, acc)),
               Cell(drop_text(c.drop, acc)), Cell(human_size(c.size_bytes)))
              for c in s.sources),
    )  # fmt: skip
    added = {e.op.tensor: e.error_added_db for e in s.by_error}
    shown = s.by_sensitivity[:SENSITIVITY_ROWS]
    more = len(s.by_sensitivity) - len(shown)
    candidates = TableView(
        "candidates, each alone at a precision, most helpful first"
        + (f" ({len(shown)} of {len(s.by_sensitivity)} shown; the JSON has all)" if more else ""),
        (Col("op"), Col("type", "name"), Col("output tensor", "name"), Col("as", "text"),
         Col("added dB", compact=False), Col(unit), Col("drop")),
        tuple(
            (Cell(str(v.op.op_index) if v.op.op_index >= 0 else "—"), Cell(v.op.op_type),
             Cell(short_tensor_name(v.op.tensor)), Cell(precision_label(v.precision)),
             Cell(number(added.get(v.op.tensor), "{:+.1f}")),
             Cell(suggestion_metric(v.metric, acc)), Cell(drop_text(v.drop, acc)))
            for v in shown
        ),
    )  # fmt: skip
    front = set(s.pareto_latency) | set(s.pareto_size)
    rows = [(Cell("float"), Cell(""), Cell("everything in float"),
             Cell(suggestion_metric(s.float_metric, acc)),
             Cell("—"), Cell(human_size(s.float_size_bytes)), Cell(latency(s.float_p50_ms)),
             Cell(""))]  # fmt: skip
    for st, change in shown_steps(s):
        rows.append((Cell(str(st.step)), Cell(st.how), Cell(change),
                     Cell(suggestion_metric(st.metric, acc)), Cell(drop_text(st.drop, acc)),
                     Cell(human_size(st.size_bytes)), Cell(latency(st.p50_ms)),
                     Cell("★" if st.step in front else "")))  # fmt: skip
    others = len(s.steps) - len(rows) + 1
    steps = TableView(
        f"search, budget: drop ≤ {drop_text(s.max_drop, acc)}; accepted steps"
        + (f" ({others} other plans measured and not kept)" if others else ""),
        (Col("step"), Col("how", "text"), Col("change", "text", compact=False), Col(unit),
         Col("drop"), Col("size"), Col("p50"), Col("Pareto")),
        tuple(rows),
    )  # fmt: skip
    return sources, candidates, steps


def gates_view(outcomes: Sequence[Mapping[str, Any]]) -> TableView:
    """Every gate checked against every model it applies to (outcomes as in a report's JSON),
    each value spelled as its metric is."""
    rows = tuple(
        (Cell("FAILED", "bad") if o["failed"] else Cell("ok"), Cell(o["model"]), Cell(o["gate"]),
         Cell(spell(o.get("metric", ""), o["value"])))
        for o in outcomes
    )  # fmt: skip
    columns = (Col("outcome", "text"), Col("model", "name"), Col("gate", "name"), Col("value"))
    return TableView("gates", columns, rows)


def kernel_views(check: KernelCheck) -> list[TableView]:
    """Every kernel path against the reference kernels (the kernel error, NaN/inf and all-zero
    outputs, latency), then, given the float model, every path against it."""
    ev = check.kernels
    first = ev.models[0].name
    task_cols = shown_in("task_metrics", {k for m in ev.models for k in m.task_metrics or {}})
    columns = [Col("kernels", "name", style="bold"), Col("what runs", "text", compact=False)]
    columns += [Col(c.short_label, style="cyan", compact=i == 0) for i, c in enumerate(task_cols)]
    classes = any("top1_agreement" in (m.fidelity or {}) for m in ev.models)
    columns += [Col("SQNR dB", style="magenta"), Col("max |err|", compact=False)]
    columns += [Col("top-1 agree", compact=False)] if classes else []
    columns += [Col("NaN/inf"), Col("all-zero"), Col("p50", style="green"),
                Col("speed", style="green")]  # fmt: skip
    rows = []
    for m in ev.models:
        fid = m.fidelity or {}
        reference = m.role == "reference"
        row = [Cell(m.name, note=" (ref)" if reference else ""),
               Cell(check.paths.get(m.name, ""))]  # fmt: skip
        row += [Cell(spell(c.name, (m.task_metrics or {}).get(c.key or ""))) for c in task_cols]
        row += [
            Cell("—" if reference else spell("sqnr_db", fid.get("sqnr_db"))),
            Cell("—" if reference else spell("max_abs_error", fid.get("max_abs_error"))),
            *(
                [Cell("—" if reference else spell("top1_agreement", fid.get("top1_agreement")))]
                if classes
                else []
            ),
            Cell(str(m.nonfinite_outputs), "bad" if m.nonfinite_outputs else None),
            Cell(str(m.zero_outputs), "bad" if m.zero_outputs else None),
            *(Cell(t) for t in _performance_cells(m)[:2]),
        ]
        rows.append(tuple(row))
    name = PurePath(check.model).name
    views = [TableView(f"{name} on {len(ev.models)} kernel paths · {ev.dataset.samples} samples "
                       f"from {ev.dataset.source} · error vs the {first} kernels",
                       tuple(columns), tuple(rows))]  # fmt: skip
    if check.against_float is not None:
        af = check.against_float
        task = af.dataset.task
        paired = any(m.paired for m in af.models) and task in ("classification", "regression")
        classes = any("top1_agreement" in (m.fidelity or {}) for m in af.models)
        cols = [Col("kernels", "name", style="bold"), Col("SQNR dB vs float", style="magenta")]
        cols += [Col("top-1 agree")] if classes else []
        if paired:
            cols += [Col(delta_header(task), "text")]
        frows = []
        for m in af.models[1:]:
            fid = m.fidelity or {}
            row = [Cell(m.name, note=" (quantization alone)" if m is af.models[1] else ""),
                   Cell(spell("sqnr_db", fid.get("sqnr_db")))]  # fmt: skip
            row += [Cell(spell("top1_agreement", fid.get("top1_agreement")))] if classes else []
            if paired:
                row += [Cell(delta_text(m.paired, task)[0])]
            frows.append(tuple(row))
        views.append(TableView(f"against the float model on the {first} kernels: the "
                               "quantization error, then quantization and kernel error together",
                               tuple(cols), tuple(frows)))  # fmt: skip
    return views


def stored_reference_note(stored: StoredReference) -> str:
    """One sentence on stored reference outputs: where they went, or where they came from."""
    model = stored.model_path + (
        f" (SHA-256 {stored.model_sha256[:16]}…)" if stored.model_sha256 else ""
    )
    if stored.role == "saved":
        return (f"The reference's outputs on {stored.samples} samples are stored in "
                f"{stored.path} with the digests of the data and of {model}; evaluate "
                f"candidates against them with --reference-outputs {stored.path}.")  # fmt: skip
    return (f"The reference ran from its stored outputs, {stored.path}: {model} on "
            f"{stored.samples} samples of {stored.data_source}, stored by {stored.saved_by} "
            f"at {stored.saved_at}; the data matched them sample for sample.")  # fmt: skip


#: How a kernel error compares with the quantization error, by the share of its power:
#: below the first it is negligible, below the second smaller, below the third as large.
KERNEL_SHARES = (0.1, 0.5, 2.0)


def kernel_findings(check: KernelCheck) -> list[str]:
    """What the check says, one sentence per finding: dead or non-finite paths, and each
    path's kernel error beside the quantization error."""
    ev = check.kernels
    first = ev.models[0].name
    out = []
    for m in ev.models:
        if m.nonfinite_outputs:
            out.append(f"{m.name}: NaN or inf on {m.nonfinite_outputs} of "
                       f"{ev.dataset.samples} samples.")  # fmt: skip
        if m.zero_outputs:
            out.append(f"{m.name}: all-zero outputs on {m.zero_outputs} samples where the "
                       f"{first} kernels give non-zero ones.")  # fmt: skip
    q = check.quantization_error
    q_db = (q.fidelity or {}).get("sqnr_db") if q is not None else None
    if q_db is not None:
        out.append(f"Quantization error (float vs quantized, both on the {first} kernels): "
                   f"SQNR {spell('sqnr_db', q_db)} dB.")  # fmt: skip
    for m in ev.models[1:]:
        k_db = (m.fidelity or {}).get("sqnr_db")
        if k_db is None:
            continue
        if k_db == float("inf"):
            out.append(f"{m.name}: the same outputs as the {first} kernels, bit for bit.")
            continue
        said = (
            f"{m.name}: kernel error SQNR {spell('sqnr_db', k_db)} dB against the {first} kernels"
        )
        if q_db is None:
            out.append(said + ".")
            continue
        share = 10 ** ((q_db - k_db) / 10)  # kernel error power / quantization error power
        said += f", {share:.0%} of the quantization error's power"
        if share < KERNEL_SHARES[0]:
            said += ": negligible beside it; fix the quantization, not the kernels."
        elif share < KERNEL_SHARES[1]:
            said += ": smaller than it, but visible."
        elif share < KERNEL_SHARES[2]:
            said += ": as large as it; the kernels matter as much as the quantization."
        else:
            said += ": the kernels, not the quantization, lose the fidelity."
        out.append(said)
    return out


def distribution_view(models: Sequence[ModelResult]) -> TableView:
    """One row per candidate with distribution statistics: KL mean ± SE and its tail, Δp of
    the labelled class, top-1 agreement ± SE."""
    labelled = any("delta_p_mean" in (m.distribution or {}) for m in models)
    columns = [Col("model", "name"), Col("KL mean ± SE", "text"), Col("KL p99"),
               Col("KL max", compact=False), Col("KL median", compact=False)]  # fmt: skip
    if labelled:
        columns += [Col("Δp mean ± SE", "text"), Col("Δp RMS", compact=False),
                    Col("Δp p1", compact=False)]  # fmt: skip
    columns += [Col("top-1 ± SE", "text")]
    rows = []
    for m in models:
        d = m.distribution or {}
        row = [Cell(m.name), Cell(_plus_minus(d, "kl_mean")),
               Cell(spell("kl_p99", d.get("kl_p99"))), Cell(spell("kl_max", d.get("kl_max"))),
               Cell(spell("kl_median", d.get("kl_median")))]  # fmt: skip
        if labelled:
            row += [Cell(_plus_minus(d, "delta_p_mean") if "delta_p_mean" in d else "—"),
                    Cell(spell("delta_p_rms", d.get("delta_p_rms"))),
                    Cell(spell("delta_p_p1", d.get("delta_p_p1")))]  # fmt: skip
        row += [Cell(_plus_minus(d, "top1_agreement"))]
        rows.append(tuple(row))
    return TableView("distribution of the class outputs, per sample (first output)",
                     tuple(columns), tuple(rows))  # fmt: skip


def _plus_minus(d: Mapping[str, float], key: str) -> str:
    """'value ± standard error': the value spelled as its metric is, the standard error to
    two significant digits (more would claim a precision it does not have)."""
    se = d.get(key + "_se")
    said = f"{se:.2g}" if isinstance(se, float) and math.isfinite(se) else spell(key + "_se", se)
    return f"{spell(key, d.get(key))} ± {said}"
