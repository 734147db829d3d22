"""Views: a result turned once into titled tables of plain-text cells; the console, HTML and
Markdown renderers only spell them (escape, style, lay out).

A cell's text is plain (names unescaped); each renderer escapes it for its medium. A column
says what kind of text it holds (a ``name`` folds, ``text`` wraps at words, a ``num`` never
wraps) and whether a terminal shows it without ``--wide``; a cell's ``tone`` says how it
stands out (``good``, ``bad``), each renderer in its own way.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantlens.metric_registry import human_size, latency, number, shown_in, spell
from quantlens.report.formats import delta_header, delta_text
from quantlens.results import EvaluationResult, ModelResult


@dataclass(frozen=True)
class Col:
    """A column: its heading, the kind of its text, whether a terminal shows it without
    ``--wide``, and a console colour."""

    header: str
    kind: str = "num"  # "name" | "text" | "num"
    compact: bool = True
    style: str | None = None


@dataclass(frozen=True)
class Cell:
    """A cell's plain text, and how it stands out (None, "good", "bad")."""

    text: str
    tone: str | None = None


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
        row = [Cell(m.name + (" (ref)" if m.role == "reference" else "")), Cell(m.format),
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
