"""Markdown summaries fit for a pull-request comment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quantlens.metric_registry import human_size, latency
from quantlens.report.formats import (
    drop_text,
    metric_text,
    origin_sentence,
    ratio_text,
    short_tensor_name,
    suggestion_metric,
)
from quantlens.report.text import md_code, md_text
from quantlens.report.views import TableView, models_view
from quantlens.results import BenchResult, DiagnosisResult, EvaluationResult


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
    lines = [f"- ❌ {md_code(o['model'])} broke {md_code(o['gate'])} (value {o['value']:.6g})"
             for o in failed]  # fmt: skip
    return "\n\n**Gates failed**\n\n" + "\n".join(lines)


def _view_table(view: TableView) -> str:
    """A view as a Markdown table, every column: names as code spans (the other cells are
    quantlens' own numbers and words)."""
    rows = [[md_code(cell.text) if col.kind == "name" else cell.text
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
    table = _view_table(models_view(result))
    return head + body + "\n\n" + table + warnings + _gates(gates) + "\n"


def bench_markdown(result: BenchResult, gates: Sequence[dict[str, Any]] = ()) -> str:
    """The benchmark table."""
    rows = []
    for e in result.results:
        r = e.ratio_to_first
        rows.append([
            md_code(e.name), str(e.threads if e.threads is not None else "default"),
            str(e.batch_size), latency(e.latency_ms["p50"]), latency(e.latency_ms["p99"]),
            f"{e.throughput_sps:,.0f}", human_size(e.size_bytes),
            ratio_text(r),
        ])  # fmt: skip
    headers = ["model", "threads", "batch", "p50", "p99", "samples/s", "size", "p50 ratio"]
    return "### quantlens benchmark\n\n" + _table(headers, rows) + _gates(gates) + "\n"


def diagnosis_markdown(result: DiagnosisResult, top: int = 10) -> str:
    """Where the error starts, the ops that add the most, and the keep-in-float search."""
    rows = [[str(o["index"]), md_code(o["op_type"]), md_code(short_tensor_name(o["output"])),
             f"{o['error_added_db']:+.1f}",
             metric_text("sqnr_db", o.get("output_channel_sqnr_median_db"))]
            for o in result.top_ops(top)]  # fmt: skip
    headers = ["op", "type", "output", "error added dB", "ch. median SQNR dB"]
    text = (f"### quantlens diagnosis: {md_code(result.quant_path)} against "
            f"{md_code(result.float_path)}\n\n")  # fmt: skip
    origin = origin_sentence(result, md_code)
    if origin is not None:
        text += origin + "\n\n"
    text += _table(headers, rows)
    s = result.suggestion
    if s:
        acc = s.accuracy
        kept = ", ".join(md_code(short_tensor_name(k.tensor)) for k in s.kept_in_float)
        verdict = "meets" if s.met_budget else "does not meet"
        text += (f"\n\n**Keep in float:** {kept or 'nothing'} — the model {verdict} the budget "
                 f"of a drop ≤ {drop_text(s.max_drop, acc)}.\n\n")  # fmt: skip
        steps = [["float", "everything", suggestion_metric(s.float_metric, acc), "—",
                  human_size(s.float_size_bytes), latency(s.float_p50_ms)]]  # fmt: skip
        for st, new in zip(s.steps, s.step_additions(), strict=True):
            added = ", ".join(md_code(short_tensor_name(n)) for n in new)
            note = "" if st.accepted else " (no gain: put back)"
            steps.append([str(st.step), (f"+ {added}" if new else "nothing") + note,
                          suggestion_metric(st.metric, acc), drop_text(st.drop, acc),
                          human_size(st.size_bytes), latency(st.p50_ms)])  # fmt: skip
        unit = "accuracy" if acc else "SQNR dB"
        text += _table(["step", "kept in float", unit, "drop", "size", "p50"], steps)
    return text + "\n"
