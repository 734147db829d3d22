"""Markdown summaries fit for a pull-request comment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantlens.metric_registry import spell
from quantlens.report.formats import (
    drop_text,
    end_to_end_sentences,
    origin_sentence,
    worst_weights_sentence,
)
from quantlens.report.text import md_code, md_text
from quantlens.report.views import (
    TableView,
    bench_view,
    diagnosis_view,
    kept_text,
    kernel_findings,
    kernel_views,
    models_view,
    on_page,
    stored_reference_note,
    suggestion_views,
)
from quantlens.results import BenchResult, DiagnosisResult, EvaluationResult, KernelCheck


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[bool] | None = None
) -> str:
    """A Markdown table; the columns ``left`` marks (by default the first) align left."""
    left = left if left is not None else [i == 0 for i in range(len(headers))]
    align = ["---" if lft else "---:" for lft in left]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _gates(outcomes: Sequence[dict[str, Any]]) -> str:
    if not outcomes:
        return ""
    failed = [o for o in outcomes if o["failed"]]
    if not failed:
        return f"\n\n✅ all {len(outcomes)} gate checks passed"
    lines = [f"- ❌ {md_code(o['model'])} broke {md_code(o['gate'])} "
             f"(value {spell(o.get('metric', ''), o['value'])})" for o in failed]  # fmt: skip
    return "\n\n**Gates failed**\n\n" + "\n".join(lines)


def _view_table(view: TableView) -> str:
    """A view as a Markdown table, the columns a page shows: names as code spans (the other
    cells are quantlens' own numbers and words)."""
    view = on_page(view)
    rows = [[(md_code(cell.text) if col.kind == "name" else cell.text) + cell.note
             for col, cell in zip(view.columns, row, strict=True)]
            for row in view.rows]  # fmt: skip
    left = [c.kind != "num" for c in view.columns]
    return _table([c.header for c in view.columns], rows, left)


def evaluation_markdown(result: EvaluationResult, gates: Sequence[dict[str, Any]] = ()) -> str:
    """The summary table and the recommendation of an evaluate or compare run."""
    rec = result.recommendation
    task = result.dataset.task
    kind = "comparison" if rec else "evaluation"
    head = (f"### quantlens {kind}: {result.dataset.samples} samples from "
            f"{md_code(result.dataset.source)} ({task})")  # fmt: skip
    body = ""
    if rec:
        body = f"\n\n**Recommendation: ship {md_code(rec.model)}** — {md_text(rec.reason)}"
        if rec.significantly_worse:
            body += "\n\nSignificantly worse than the reference: " + ", ".join(
                md_code(n) for n in rec.significantly_worse
            )
        if rec.slower_than_float:
            body += "\n\nSlower than float (the speed's 95% interval below 0.95×): " + ", ".join(
                md_code(n) for n in rec.slower_than_float
            )
    warnings = "".join(f"\n- ⚠ {md_text(w.message)} ({md_code(w.code)})" for w in result.warnings)
    if warnings:
        warnings = "\n\n**Warnings**\n" + warnings
    if result.reference_outputs is not None:
        body += "\n\n" + md_text(stored_reference_note(result.reference_outputs))
    table = _view_table(models_view(result))
    return head + body + "\n\n" + table + warnings + _gates(gates) + "\n"


def bench_markdown(result: BenchResult, gates: Sequence[dict[str, Any]] = ()) -> str:
    """The benchmark table."""
    return "### quantlens benchmark\n\n" + _view_table(bench_view(result)) + _gates(gates) + "\n"


def diagnosis_markdown(result: DiagnosisResult, top: int = 10) -> str:
    """Where the error starts, the ops that add the most, and the keep-in-float search."""
    text = (f"### quantlens diagnosis: {md_code(result.quant_path)} against "
            f"{md_code(result.float_path)}\n\n")  # fmt: skip
    text += "".join(line + "\n\n" for line in end_to_end_sentences(result, md_code))
    origin = origin_sentence(result, md_code)
    if origin is not None:
        text += origin + "\n\n"
    text += _view_table(diagnosis_view(result, top))
    weights = worst_weights_sentence(result, md_code)
    text += f"\n\n{weights}" if weights else ""
    s = result.suggestion
    if s:
        verdict = "meets" if s.met_budget else "does not meet"
        text += (f"\n\n**Keep:** {kept_text(s, md_code)} — the model {verdict} the budget "
                 f"of a drop ≤ {drop_text(s.max_drop, s.accuracy)}.\n\n")  # fmt: skip
        if s.explanation:
            text += f"**Why:** {md_text(s.explanation)}\n\n"
        text += _view_table(suggestion_views(s)[2])
    return text + "\n"


def kernels_markdown(check: KernelCheck, gates: Sequence[dict[str, Any]] = ()) -> str:
    """The kernel paths' tables and findings."""
    tables = "\n\n".join(_view_table(v) for v in kernel_views(check))
    findings = "".join(f"\n- {md_text(line)}" for line in kernel_findings(check))
    return ("### quantlens kernel check\n\n" + tables + ("\n" + findings if findings else "")
            + _gates(gates) + "\n")  # fmt: skip
