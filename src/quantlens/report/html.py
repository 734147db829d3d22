"""Self-contained HTML reports: inline CSS and SVG, no scripts, fonts or network access."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from quantlens.metric_registry import PERCENTILES
from quantlens.report import plots
from quantlens.report.formats import (
    compare_legend,
    drop_text,
    end_to_end_sentences,
    origin_sentence,
    short_tensor_name,
    worst_weights_sentence,
)
from quantlens.report.views import (
    TableView,
    bench_view,
    diagnosis_view,
    distribution_view,
    gates_view,
    kept_text,
    kernel_findings,
    kernel_views,
    models_view,
    on_page,
    precision_legend,
    stored_reference_note,
    suggestion_views,
)
from quantlens.results import (
    BenchResult,
    DiagnosisResult,
    EvaluationResult,
    KernelCheck,
    Suggestion,
)

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;
color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
.scroll{overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .4rem;text-align:right}
th{background:#f4f4f4}td.name,th.name,td.txt,th.txt{text-align:left}td:not(.name):not(.txt){white-space:nowrap}
td.txt{min-width:6rem;max-width:32rem}
td.name{overflow-wrap:anywhere;min-width:8rem}
.banner{background:#eef7ee;border-left:4px solid #55A868;padding:.6rem 1rem}
.fail{background:#fbecec;border-left:4px solid #C44E52;padding:.6rem 1rem}
.note{color:#666;font-size:.85rem}.bad{color:#C44E52}code{background:#f4f4f4;padding:0 .2rem}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots>svg{flex:0 1 440px;min-width:0}
svg{max-width:100%;height:auto}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, fmt: str = "{:.4g}") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return _e(v)
    return fmt.format(v) if isinstance(v, int | float) else _e(v)


#: How a view's cell tones look on the page.
_TONES = {"good": ("<b>", "</b>"), "bad": ('<span class="bad">', "</span>")}


def view_html(view: TableView) -> str:
    """A view as an HTML table, the columns a page shows; names and words left-aligned,
    numbers right."""
    view = on_page(view)
    names = [i for i, c in enumerate(view.columns) if c.kind == "name"]
    words = [i for i, c in enumerate(view.columns) if c.kind == "text"]
    rows = []
    for row in view.rows:
        cells = []
        for cell in row:
            start, end = _TONES.get(cell.tone or "", ("", ""))
            cells.append(f"{start}{_e(cell.text)}{end}{_e(cell.note)}")
        rows.append(cells)
    return _table([c.header for c in view.columns], rows, names, words)


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Sequence[int] = (0,),
    word_columns: Sequence[int] = (),
) -> str:  # fmt: skip
    """A table whose ``text_columns`` are left-aligned and may wrap (names, prose), whose
    ``word_columns`` are left-aligned on one line, the rest (numbers) right-aligned."""

    def kind(i: int) -> str:
        return "name" if i in text_columns else ("txt" if i in word_columns else "")

    head = "".join(f'<th class="{kind(i)}">{_e(h)}</th>' for i, h in enumerate(headers))
    cells = ["".join(f'<td class="{kind(i)}">{c}</td>' for i, c in enumerate(r)) for r in rows]
    body = "".join(f"<tr>{c}</tr>" for c in cells)
    # a table wider than the page scrolls inside its own box rather than past the page's edge
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete HTML document from (heading, body HTML) sections."""
    parts = "".join(f"<section><h2>{_e(h)}</h2>{b}</section>" for h, b in sections if b)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="generator" content="quantlens">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1>{parts}</body></html>"
    )


def environment_section(env: dict[str, Any]) -> str:
    pkgs = ", ".join(f"{_e(k)} {_e(v)}" for k, v in env.get("packages", {}).items())
    cmd = env.get("command") or "(run from Python)"
    return (
        f"<p><b>reproduce:</b> <code>{_e(cmd)}</code></p>"
        f'<p class="note">{pkgs}<br>Python {_e(env.get("python"))} · {_e(env.get("platform"))}'
        f"<br>CPU: {_e(env.get('cpu'))} ({_e(env.get('cpu_count'))} logical cores) · "
        f"threads per model: {_e(env.get('threads') or 'runtime default')}</p>"
    )


def gates_section(outcomes: Sequence[dict[str, Any]]) -> str:
    if not outcomes:
        return ""
    failed = [o for o in outcomes if o["failed"]]
    banner = (
        f'<p class="fail">{len(failed)} gate check(s) failed</p>'
        if failed
        else '<p class="banner">every gate passed</p>'
    )
    return banner + view_html(gates_view(outcomes))


def _task_metric(result: EvaluationResult) -> tuple[str, str] | None:
    """(key, label) of the metric the trade-off plots put on the y axis (higher is better)."""
    if result.dataset.task == "classification":
        return "accuracy", "accuracy"
    if result.dataset.task == "regression":
        return "r2", "R²"
    return None


def evaluation_html(
    result: EvaluationResult, env: dict[str, Any], gates: Sequence[dict[str, Any]] = ()
) -> str:
    """The report of an evaluate or compare run."""
    models = result.models
    rec = result.recommendation
    summary = (
        f"<p>{result.dataset.samples} samples from <code>{_e(result.dataset.source)}</code>, "
        f"task: {_e(result.dataset.task)}, fidelity against <b>{_e(result.reference)}</b>.</p>"
    )
    if result.reference_outputs is not None:
        summary += f'<p class="note">{_e(stored_reference_note(result.reference_outputs))}</p>'
    notes = ""
    if rec:
        summary = f'<p class="banner"><b>Ship {_e(rec.model)}</b>: {_e(rec.reason)}</p>' + summary
        if rec.significantly_worse:
            notes += ("<p>Significantly worse than the reference (p &lt; 0.05): "
                      f"{', '.join(_e(n) for n in rec.significantly_worse)}</p>")  # fmt: skip
        if rec.slower_than_float:
            notes += ("<p>Slower than float (the speed's 95% interval lies below 0.95×): "
                      f"{', '.join(_e(n) for n in rec.slower_than_float)}</p>")  # fmt: skip
        notes += f'<p class="note">{_e(compare_legend(result))}</p>'
    table = view_html(models_view(result))
    sections = [("Summary", summary + table + notes), ("Gates", gates_section(gates))]
    if result.warnings:
        items = "".join(f"<li>⚠ {_e(w.message)} <code>{_e(w.code)}</code></li>"
                        for w in result.warnings)  # fmt: skip
        sections.insert(1, ("Warnings", f"<ul>{items}</ul>"))
    batching = [
        [_e(m.name), _e(m.batching.mode), str(m.batching.samples_per_invoke), _e(m.batching.reason)]
        for m in models if m.batching is not None
    ]  # fmt: skip
    if batching:
        headers = ["model", "batching", "per invoke", "why"]
        sections.append(("Batching", _table(headers, batching, text_columns=(0, 1, 3))))
    sections += [
        ("Trade-off", _tradeoff_plots(result)),
        ("Latency", _latency_plot(result)),
        ("Distribution of the class outputs", _distribution_section(result)),
    ]
    sections.append(("Environment", environment_section(env)))
    kind = "Comparison" if rec else "Evaluation"
    return page(f"quantlens · {kind} on {result.dataset.source}", sections)


def _distribution_section(result: EvaluationResult) -> str:
    """The candidates' KL percentiles plotted, and every distribution statistic tabled."""
    models = [m for m in result.models if m.distribution]
    if not models:
        return ""
    plot = plots.kl_percentiles(
        [m.name for m in models],
        [[(m.distribution or {})[f"kl_{k}"] for _, k in PERCENTILES] for m in models],
        [p for p, _ in PERCENTILES],
    )
    view = distribution_view(models)
    return f'<div class="plot">{plot}</div>' + view_html(view)


def _tradeoff_plots(result: EvaluationResult) -> str:
    metric = _task_metric(result)
    models = [m for m in result.models if (m.fidelity or m.task_metrics)]
    if metric:
        values = [(m.task_metrics or {}).get(metric[0]) for m in models]
        label = metric[1]
    else:  # no labels: fidelity of the candidates
        models = [m for m in models if m.fidelity and math.isfinite(m.fidelity["sqnr_db"])]
        values = [m.fidelity["sqnr_db"] for m in models]  # type: ignore[index]
        label = "SQNR vs the reference (dB)"
    keep = [i for i, v in enumerate(values) if v is not None]
    models = [models[i] for i in keep]
    ys: list[float] = [float(values[i]) for i in keep]  # type: ignore[arg-type]
    if not models:
        return ""
    rec = result.recommendation.model if result.recommendation else None
    names = [m.name for m in models]
    svgs = [
        plots.tradeoff(
            names,
            [float(m.size_bytes) for m in models],
            ys,
            xlabel="size on disk (bytes)",
            ylabel=label,
            recommended=rec,
            logx=True,
        )
    ]
    # Latencies compare only within the models timed together (TensorFlow's apart).
    timed = [i for i, m in enumerate(models) if m.performance and m.performance.speedup]
    if len(timed) >= 2:
        p50 = [models[i].performance.latency_ms["p50"] for i in timed]  # type: ignore[union-attr]
        svgs.insert(
            0,
            plots.tradeoff(
                [names[i] for i in timed],
                p50,
                [ys[i] for i in timed],
                xlabel="p50 latency (ms)",
                ylabel=label,
                recommended=rec,
                logx=True,
            ),
        )
    return f'<div class="plots">{"".join(svgs)}</div>'


def _latency_plot(result: EvaluationResult) -> str:
    models = [m for m in result.models if m.performance and m.performance.samples_ms]
    if not models:
        return ""
    samples = [m.performance.samples_ms for m in models]  # type: ignore[union-attr]
    return plots.latency_boxes([m.name for m in models], samples)


def bench_html(
    result: BenchResult, env: dict[str, Any], gates: Sequence[dict[str, Any]] = ()
) -> str:
    """The report of a bench run."""
    profiles = ""
    for e in result.results:
        if e.profile:
            prof = [[_e(r["op_type"]), f"{r['share']:.1%}", _num(r["mean_us"], "{:.1f}")]
                    for r in e.profile["by_op_type"]]  # fmt: skip
            nodes = [[_e(r["node"]), _e(r["op_type"]), f"{r['share']:.1%}",
                      _num(r["mean_us"], "{:.1f}")] for r in e.profile["by_node"][:15]]  # fmt: skip
            profiles += (f"<h3>{_e(e.name)} (threads {e.threads}, batch {e.batch_size})</h3>"
                         + _table(["op type", "share", "µs per run"], prof)
                         + _table(["node", "op type", "share", "µs per run"], nodes))  # fmt: skip
    labels = [f"{e.name} t={e.threads} b={e.batch_size}" for e in result.results]
    reasons = "".join(
        f"<li>⚠ {_e(e.name)} (threads {_e(e.threads)}, batch {e.batch_size}): {_e(w)}</li>"
        for e in result.results for w in e.warnings
    )  # fmt: skip
    warnings = (f'<p class="note">⚠ after a model: its numbers may not be trusted</p>'
                f"<ul>{reasons}</ul>" if reasons else "")  # fmt: skip
    sections = [
        ("Summary", view_html(bench_view(result)) + warnings),
        ("Gates", gates_section(gates)),
        ("Latency", plots.latency_boxes(labels, [e.samples_ms for e in result.results])),
        ("Time by node (onnxruntime profiler)", profiles),
        ("Environment", environment_section(env)),
    ]
    return page("quantlens · Benchmark", sections)


def diagnosis_html(result: DiagnosisResult, env: dict[str, Any], top: int = 10) -> str:
    """The report of a diagnose run: where the error starts, the worst ops, the per-layer
    bars in graph order, and the keep-in-float search."""
    ops = [o for o in result.ops if o.error_added_db is not None]
    table = view_html(diagnosis_view(result, top))

    def code(name: str) -> str:
        return f"<code>{_e(name)}</code>"

    e2e = "".join(f"<p>{line}.</p>" for line in end_to_end_sentences(result, code))
    weights = worst_weights_sentence(result, code)
    head = (
        f"<p>{code(result.quant_path)} against {code(result.float_path)} on {result.samples} "
        f'samples.</p>{e2e}<p class="note">{_e(result.note)}</p>'
    )
    table += f"<p>{weights}.</p>" if weights else ""
    origin = origin_sentence(result, code)
    if origin is not None:
        head = f'<p class="banner">{origin}</p>' + head
    bars = ""
    if ops:
        bars = plots.layer_bars(
            [f"{o.index} {o.op_type} {short_tensor_name(o.output, 40)}" for o in ops],
            [min(o.output_sqnr_db or 0.0, 100.0) for o in ops],
            [o.error_added_db or 0.0 for o in ops],
        )
    sections = [("Where the error comes from", head + table), ("Per layer, in graph order", bars)]
    if result.suggestion:
        sections.append(("Keep in float", _suggestion_html(result.suggestion)))
    sections.append(("Environment", environment_section(env)))
    return page("quantlens · Diagnosis", sections)


def _suggestion_html(s: Suggestion) -> str:
    """The error sources, the candidates measured alone and the accepted steps of the search."""
    acc = s.accuracy
    sources, candidates, steps = suggestion_views(s)
    verdict = "meets" if s.met_budget else "does not meet"
    kept = kept_text(s, lambda n: f"<code>{_e(n)}</code>")
    banner = (f'<p class="banner">Keep {kept}: the model <code>{_e(s.model)}</code> {verdict} '
              f"the budget of a drop ≤ {drop_text(s.max_drop, acc)} "
              f"(manifest <code>{_e(s.manifest)}</code>; {s.evaluations} models built and "
              "measured).</p>")  # fmt: skip
    why = f'<p class="note"><b>Why:</b> {_e(s.explanation)}</p>' if s.explanation else ""
    legend = (f'<p class="note">{_e(precision_legend(s))} · ★ on a Pareto front (metric '
              "against latency, or against size)</p>")  # fmt: skip
    return (
        f"{banner}{why}<h3>Each source of error alone</h3>{view_html(sources)}"
        f"<h3>Candidates, each alone at a precision</h3>{view_html(candidates)}"
        f"<h3>The search, every step rebuilt and measured</h3>{view_html(steps)}{legend}"
    )


def kernels_html(
    check: KernelCheck, env: dict[str, Any], gates: Sequence[dict[str, Any]] = ()
) -> str:
    """The report of a kernel check."""
    findings = "".join(f"<li>{_e(line)}</li>" for line in kernel_findings(check))
    tables = "".join(f'<p class="note">{_e(v.title)}</p>' + view_html(v)
                     for v in kernel_views(check))  # fmt: skip
    sections = [
        ("Kernel paths", tables + (f"<ul>{findings}</ul>" if findings else "")),
        ("Gates", gates_section(gates)),
        ("Environment", environment_section(env)),
    ]
    return page("quantlens · Kernel check", sections)
