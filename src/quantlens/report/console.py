"""Terminal rendering with rich: the evaluation table and a progress bar that waits its turn."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quantlens.models.base import ModelInfo
from quantlens.report.text import term
from quantlens.results import (
    BenchEntry,
    BenchResult,
    DiagnosisResult,
    EvaluationResult,
    ModelResult,
)

TASK_COLUMNS = {
    "classification": [("accuracy", "acc", "{:.4f}"), ("top5_accuracy", "top5", "{:.4f}"),
                       ("macro_f1", "macro F1", "{:.4f}")],
    "regression": [("mse", "mse", "{:.4g}"), ("mae", "mae", "{:.4g}"), ("r2", "r2", "{:.4f}")],
}  # fmt: skip
FIDELITY_COLUMNS = [
    ("sqnr_db", "SQNR dB", "{:.2f}"),
    ("mse", "out mse", "{:.3g}"),
    ("max_abs_error", "max |err|", "{:.3g}"),
    ("cosine_similarity", "cosine", "{:.5f}"),
    ("top1_agreement", "top-1 agree", "{:.4f}"),
    ("kl_divergence", "KL", "{:.3g}"),
]


def make_console(stderr: bool = False) -> Console:
    """A console; when not writing to a terminal, wide enough that tables never wrap."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=200)


def human_size(n: int) -> str:
    """Bytes as B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def _fmt(value: float | None, pattern: str) -> str:
    if value is None:
        return "—"
    return pattern.format(value) if value == value and abs(value) != float("inf") else str(value)


def evaluation_table(result: EvaluationResult) -> Table:
    """One row per model, the reference first: size, task metrics, fidelity to the reference."""
    task_cols = [
        c
        for c in TASK_COLUMNS.get(result.dataset.task, [])
        if any(m.task_metrics and c[0] in m.task_metrics for m in result.models)
    ]
    fid_cols = [
        c for c in FIDELITY_COLUMNS if any(m.fidelity and c[0] in m.fidelity for m in result.models)
    ]
    table = Table(
        title=f"{result.dataset.samples} samples from {term(result.dataset.source)}"
        f" · task: {result.dataset.task} · fidelity vs {term(result.reference)}",
        title_justify="left",
    )
    table.add_column("model", style="bold")
    table.add_column("format")
    table.add_column("size", justify="right")
    for _, header, _ in task_cols:
        table.add_column(header, justify="right", style="cyan")
    for _, header, _ in fid_cols:
        table.add_column(header, justify="right", style="magenta")
    benched = any(m.performance for m in result.models)
    if benched:
        for header in ("p50 ms", "speed-up", "peak RSS"):
            table.add_column(header, justify="right", style="green")
    for m in result.models:
        row = [
            term(m.name) + (" (ref)" if m.role == "reference" else ""),
            m.format,
            human_size(m.size_bytes),
        ]
        row += [_fmt((m.task_metrics or {}).get(k), p) for k, _, p in task_cols]
        row += [_fmt((m.fidelity or {}).get(k), p) for k, _, p in fid_cols]
        if benched:
            perf = m.performance
            row += (
                [
                    f"{perf.latency_ms['p50']:.4g}" + (" ⚠" if perf.warnings else ""),
                    _fmt(perf.speedup, "{:.2f}×"),
                    "—" if perf.peak_rss_mb is None else f"{perf.peak_rss_mb:.1f} MiB",
                ]
                if perf
                else ["—"] * 3
            )
        table.add_row(*row)
    return table


def print_evaluation(result: EvaluationResult, console: Console | None = None) -> None:
    """Print the evaluation table, and per-output fidelity when models have several outputs."""
    console = console or Console()
    console.print(evaluation_table(result))
    noisy = [m for m in result.models if m.performance and m.performance.warnings]
    if noisy:
        console.print("[dim]⚠ p50 ms: the latency is noisy or from few runs; "
                      "the reasons follow[/]")  # fmt: skip
        for m in noisy:
            for w in m.performance.warnings:  # type: ignore[union-attr]
                console.print(f"  ⚠ {term(m.name)}: {term(w, 2000)}")
    print_run_notes(result, console)
    for m in result.models:
        if m.nonfinite_outputs:
            console.print(f"  ⚠ {term(m.name)} produced NaN or inf on {m.nonfinite_outputs} "
                          "sample(s); "
                          "they are left out of its metrics")  # fmt: skip
    for m in result.models:
        for o in m.outputs:
            f = o.fidelity
            sqnr = _fmt(f.get("sqnr_db"), "{:.2f}")
            mse = _fmt(f.get("mse"), "{:.3g}")
            cosine = _fmt(f.get("cosine_similarity"), "{:.5f}")
            console.print(
                f"  {term(m.name)} · output {term(o.name)}: SQNR {sqnr} dB, mse {mse}, "
                f"cosine {cosine}"
            )


def print_run_notes(result: EvaluationResult, console: Console) -> None:
    """The report's warnings, and how each model that did not run the batch as given ran."""
    warned = {w.model for w in result.warnings}
    for w in result.warnings:
        console.print(f"⚠ {term(w.message, 2000)} [dim]({term(w.code)})[/]")
    for m in result.models:
        b = m.batching
        if b is not None and b.mode != "resize" and m.name not in warned:
            console.print(f"[dim]{term(m.name)}: {b.samples_per_invoke} sample(s) per invoke "
                          f"({term(b.mode)}): {term(b.reason, 2000)}[/]")  # fmt: skip


def print_model_info(info: ModelInfo, console: Console | None = None) -> None:
    """Print what a model is: format, size, I/O with quantization, ops and weight dtypes."""
    console = console or Console()
    console.print(
        f"[bold]{term(info.name)}[/] · {info.format} · {human_size(info.size_bytes)} · "
        f"{term(info.path)}"
    )
    table = Table("", "name", "shape", "dtype", "scale", "zero point")
    for role, specs in (("input", info.inputs), ("output", info.outputs)):
        for s in specs:
            q = s.quantization
            scale = (
                ", ".join(f"{v:.6g}" for v in q.scale[:4]) + ("…" if q and len(q.scale) > 4 else "")
                if q
                else "—"
            )
            zp = ", ".join(str(v) for v in q.zero_point[:4]) if q else "—"
            shape = "(" + ", ".join("?" if d is None else str(d) for d in s.shape) + ")"
            table.add_row(role, term(s.name), shape, term(s.dtype), scale, zp)
    console.print(table)
    if info.op_counts:
        console.print("ops: " + ", ".join(f"{term(k)}×{v}" for k, v in info.op_counts.items()))
    if info.activation_dtypes:
        console.print(
            "activation tensors: "
            + ", ".join(f"{term(k)}: {v}" for k, v in info.activation_dtypes.items())
        )
    if info.weight_dtypes:
        console.print(
            "weights: "
            + ", ".join(f"{term(k)}: {v:,} values" for k, v in info.weight_dtypes.items())
        )


@contextmanager
def delayed_progress(
    total: int | None, description: str, console: Console, delay_s: float = 1.5
) -> Iterator[Callable[[int], None]]:
    """A progress callback whose bar appears only once a run has lasted ``delay_s`` seconds,
    and only on a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress: Any = None
    task_id: Any = None
    done = 0
    start = time.monotonic()

    def advance(n: int) -> None:
        nonlocal progress, task_id, done
        done += n
        if progress is None:
            if not console.is_terminal or time.monotonic() - start < delay_s:
                return
            progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=console, transient=True,
            )  # fmt: skip
            progress.start()
            task_id = progress.add_task(description, total=total)
        progress.update(task_id, completed=done)

    try:
        yield advance
    finally:
        if progress is not None:
            progress.stop()


def _ratio_text(ratio: dict[str, float] | None) -> str:
    if not ratio:
        return "1 (base)"
    lo, hi = ratio.get("ci95_low", float("nan")), ratio.get("ci95_high", float("nan"))
    interval = f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
    return f"{ratio['ratio']:.3f}{interval}"


def bench_table(result: BenchResult) -> Table:
    """One row per model and configuration: latency percentiles, throughput, memory, size."""
    table = Table(title="latency of invoke in ms (steady state); ratio = p50 / first model's p50, "
                  "95% bootstrap interval over rounds", title_justify="left")  # fmt: skip
    headers = ("model", "threads", "batch", "runs", "p50", "p90", "p99", "mean", "cv", "init",
               "first", "samples/s", "peak RSS", "size", "gzip", "ratio [95% CI]")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    for e in result.results:
        lat = e.latency_ms
        flag = " ⚠" if e.warnings else ""
        table.add_row(
            term(e.name) + flag,
            "default" if e.threads is None else str(e.threads),
            str(e.batch_size),
            str(e.runs),
            *(f"{lat[k]:.4g}" for k in ("p50", "p90", "p99", "mean")),
            f"{lat['cv']:.0%}",
            *(_fmt(lat.get(k), "{:.3g}") for k in ("init", "first")),
            f"{e.throughput_sps:,.0f}",
            "—" if e.peak_rss_mb is None else f"{e.peak_rss_mb:.1f} MiB",
            human_size(e.size_bytes),
            human_size(e.size_gzip_bytes),
            _ratio_text(e.ratio_to_first),
        )
    return table


def print_bench(result: BenchResult, console: Console | None = None) -> None:
    """Print the benchmark table and every warning under it."""
    console = console or Console()
    console.print(bench_table(result))
    if any(e.warnings for e in result.results):
        console.print("[dim]⚠ after a model: its numbers may not be trusted; the reasons "
                      "follow[/]")  # fmt: skip
    for e in result.results:
        for w in e.warnings:
            console.print(f"  ⚠ {term(e.name)} (threads={e.threads}, batch={e.batch_size}): "
                          f"{term(w, 2000)}")  # fmt: skip
    for e in result.results:
        if e.profile:
            console.print(profile_table(e))


def profile_table(e: BenchEntry, top: int = 8) -> Table:
    """Where an ONNX model spends its time: op types, then the slowest nodes."""
    p = e.profile or {}
    table = Table(title=f"{term(e.name)} (threads={e.threads}, batch={e.batch_size}): kernel time "
                        f"{p.get('total_us', 0):.1f} µs per run", title_justify="left")  # fmt: skip
    for h in ("op type / node", "share", "µs per run"):
        table.add_column(h, justify="left" if h.startswith("op") else "right")
    for r in p.get("by_op_type", []):
        table.add_row(f"[bold]{term(r['op_type'])}[/]", f"{r['share']:.1%}", f"{r['mean_us']:.1f}")
    for r in p.get("by_node", [])[:top]:
        table.add_row(f"  {term(r['node'])} ({term(r['op_type'])})", f"{r['share']:.1%}",
                      f"{r['mean_us']:.1f}")  # fmt: skip
    return table


def _delta_text(paired: dict[str, Any] | None, task: str) -> tuple[str, str]:
    if not paired:
        return "—", "—"
    key, scale, unit = (
        ("accuracy_delta", 100, " pt") if task == "classification" else ("mae_delta", 1, "")
    )
    d, lo, hi = (paired[key] * scale, paired["ci95_low"] * scale, paired["ci95_high"] * scale)
    p = paired.get("mcnemar_p", paired.get("wilcoxon_p"))
    return f"{d:+.2f}{unit} [{lo:+.2f}, {hi:+.2f}]", f"{p:.2g}"


def compare_table(result: EvaluationResult) -> Table:
    """The ranked comparison: acceptable variants by size, then the rest by drop."""
    from quantlens.compare import drop, within

    rec = result.recommendation or {}
    task = result.dataset.task
    ref = result.models[0]
    baseline = result.model(rec.get("float_baseline", ref.name))
    max_drop = rec.get("max_drop", 0.01)
    metric = {"classification": ("accuracy", "{:.4f}"), "regression": ("mae", "{:.4g}")}.get(task)

    def rank(m: ModelResult) -> tuple[bool, float]:
        """Acceptable variants first, smallest first; then the rest, smallest drop first."""
        d = drop(m, ref, task)
        if d is not None and within(d, max_drop):
            return (False, m.size_bytes)
        return (True, d if d is not None else math.inf)

    table = Table(
        title=f"{result.dataset.samples} samples from {term(result.dataset.source)} · task: "
        f"{task} · drop vs {term(ref.name)}, speed-up and size vs {term(baseline.name)}",
        title_justify="left",
    )
    headers = ["variant", "size", "× float"]
    if metric:
        headers += [metric[0], "Δ [95% CI]", "p"]
    headers += ["SQNR dB", "top-1 agree", "p50 ms", "speed-up", "verdict"]
    for h in headers:
        table.add_column(h, justify="left" if h in ("variant", "verdict") else "right")
    for m in [ref, *sorted(result.models[1:], key=rank)]:
        d = drop(m, ref, task)
        worse = m.name in rec.get("significantly_worse", [])
        if m is ref:
            verdict = "reference"
        elif m.name == rec.get("model"):
            verdict = "[bold green]✓ recommended[/]"
        elif d is not None and within(d, max_drop):
            verdict = "ok"
        else:
            verdict = "[red]too large a drop[/]" + (" (significant)" if worse else "")
        if m.name in rec.get("slower_than_float", []):
            verdict += " · slower than float"
        if m.name in rec.get("io_change", []):
            verdict += " · integer I/O"
        row = [term(m.name), human_size(m.size_bytes), f"{m.size_bytes / baseline.size_bytes:.2f}"]
        if metric:
            value = (m.task_metrics or {}).get(metric[0])
            row += [_fmt(value, metric[1]), *_delta_text(m.paired, task)]
        fid = m.fidelity or {}
        p50 = m.performance.latency_ms["p50"] if m.performance else None
        row += [
            _fmt(fid.get("sqnr_db"), "{:.1f}"),
            _fmt(fid.get("top1_agreement"), "{:.4f}"),
            _fmt(p50, "{:.4g}"),
            _fmt(m.performance.speedup if m.performance else None, "{:.2f}×"),
            verdict,
        ]
        table.add_row(*row)
    return table


def print_compare(result: EvaluationResult, console: Console | None = None) -> None:
    """Print the ranked comparison and the recommendation."""
    console = console or Console()
    console.print(compare_table(result))
    legend = "✓ the recommended variant"
    if result.dataset.task in ("classification", "regression"):
        legend += (" · Δ: change of the task metric against the reference, with its 95% "
                   "interval · p: the paired test's p-value")  # fmt: skip
    console.print(f"[dim]{legend}[/]")
    print_run_notes(result, console)
    rec = result.recommendation or {}
    console.print(f"[bold]recommendation:[/] {term(rec.get('model'))} — "
                  f"{term(rec.get('reason'), 2000)}")  # fmt: skip
    if rec.get("significantly_worse"):
        console.print("significantly worse than the reference (p < 0.05): "
                      + ", ".join(term(n) for n in rec["significantly_worse"]))  # fmt: skip
    if rec.get("slower_than_float"):
        console.print("slower than float (the speed-up's 95% interval lies below 1×): "
                      + ", ".join(term(n) for n in rec["slower_than_float"]))  # fmt: skip
    if rec.get("note"):
        console.print(f"note: {term(rec['note'], 2000)}")


def _short(name: str, width: int = 48) -> str:
    """A long fused tensor name, shortened to its first part."""
    first = name.split(";")[0]
    return term(first if len(first) <= width else "…" + first[-(width - 1) :])


def print_diagnosis(result: DiagnosisResult, top: int, console: Console | None = None) -> None:
    """The ops that add the most error, the end-to-end fidelity, weights, and what is unmatched."""
    console = console or Console()
    quant, flt = term(Path(result.quant_path).name), term(Path(result.float_path).name)
    console.print(f"[bold]{quant}[/] against [bold]{flt}[/] on {result.samples} samples")
    console.print(f"[dim]{term(result.note, 2000)}[/]")
    for name, f in result.end_to_end.items():
        console.print(
            f"end to end, output {term(name)}: SQNR {_fmt(f.get('sqnr_db'), '{:.2f}')} dB, "
            f"cosine {_fmt(f.get('cosine_similarity'), '{:.5f}')}"
            + (f", top-1 agreement {f['top1_agreement']:.4f}" if "top1_agreement" in f else "")
        )
    by_output = {t["name"]: t for t in result.tensors}
    title = (f"top {top} ops by error added (dB of per-channel median SQNR lost between the op's "
             "worst input and its output)")  # fmt: skip
    table = Table(title=title, title_justify="left")
    debugged = any("debugger" in t for t in result.tensors)
    headers = ["#", "op", "type", "output tensor", "error added dB", "SQNR dB", "ch. median dB",
               "ch. worst dB", "float range", "ch. range ×", "scale", "rmse/scale"]  # fmt: skip
    if debugged:
        headers += ["debugger mse", "debugger max |err|"]
    for h in headers:
        table.add_column(h, justify="left" if h in ("op", "type", "output tensor") else "right")
    for rank, op in enumerate(result.top_ops(top), start=1):
        t = by_output.get(op["output"], {})
        extra = []
        if debugged:
            dbg = t.get("debugger", {})
            extra = [_fmt(dbg.get("mean_squared_error"), "{:.3g}"),
                     _fmt(dbg.get("max_abs_error"), "{:.3g}")]  # fmt: skip
        table.add_row(
            str(rank), str(op["index"]), term(op["op_type"]), _short(op["output"]),
            f"{op['error_added_db']:+.1f}", _fmt(op.get("output_sqnr_db"), "{:.1f}"),
            _fmt(op.get("output_channel_sqnr_median_db"), "{:.1f}"),
            _fmt(op.get("output_channel_sqnr_worst_db"), "{:.1f}"),
            (f"[{t['float_min']:.3g}, {t['float_max']:.3g}]" if "float_min" in t else "—"),
            _fmt(t.get("channel_range_ratio"), "{:.3g}"),
            _fmt(t.get("scale"), "{:.3g}"), _fmt(t.get("rmse_over_scale"), "{:.2f}"), *extra,
        )  # fmt: skip
    console.print(table)
    weights = sorted(result.weights, key=lambda w: w["sqnr_db"])[:5]
    if weights:
        console.print("worst weights: " + "; ".join(
            f"{_short(w['name'], 40)} ({term(w['dtype'])}, op {w['op_index']}) "
            f"{w['sqnr_db']:.1f} dB"
            for w in weights))  # fmt: skip
    unmatched = result.unmatched
    if unmatched.get("quantized") or unmatched.get("float"):
        n_q, n_f = len(unmatched.get("quantized", [])), len(unmatched.get("float", []))
        console.print(f"unmatched tensors: {n_q} in the quantized model, {n_f} in the float model")


def print_suggestion(s: dict[str, Any], console: Console | None = None) -> None:
    """The two rankings, every measured step, the Pareto fronts and the suggested model."""
    console = console or Console()
    acc = s["budget_metric"] == "accuracy"
    unit = "accuracy" if acc else "SQNR dB"
    ranks = Table(title="candidate layers: by error added, and by the metric with only that "
                        "layer kept in float", title_justify="left")  # fmt: skip
    for h in ("rank", "by error added", "dB", "by sensitivity", unit):
        ranks.add_column(h, justify="right" if h in ("rank", "dB", unit) else "left")
    by_err, by_sens = s["rankings"]["error_added"], s["rankings"]["sensitivity"]
    for k in range(max(len(by_err), len(by_sens))):
        e = by_err[k] if k < len(by_err) else None
        v = by_sens[k] if k < len(by_sens) else None
        ranks.add_row(
            str(k + 1),
            f"{term(e['op_type'])} {_short(e['tensor'], 36)}" if e else "",
            f"{e['error_added_db']:+.1f}" if e else "",
            f"{term(v['op_type'])} {_short(v['tensor'], 36)}" if v else "",
            f"{v['metric']:.4f}" if v and acc else (f"{v['metric']:.1f}" if v else ""),
        )
    console.print(ranks)
    budget = f"drop ≤ {s['max_drop']:g} ({'accuracy' if acc else 'relative RMSE'})"
    steps = Table(title=f"greedy search, budget: {budget}", title_justify="left")
    for h in ("step", "kept in float", unit, "drop", "size", "p50 ms", "Pareto"):
        steps.add_column(h, justify="left" if h == "kept in float" else "right")
    front = set(s["pareto"]["latency"]) | set(s["pareto"]["size"])
    steps.add_row("float", "everything", _fmt(s.get("float_metric"), "{:.4f}"), "0",
                  human_size(s["float_size_bytes"]), f"{s['float_p50_ms']:.4g}", "")  # fmt: skip
    for st in s["steps"]:
        kept = ", ".join(_short(n, 28) for n in st["kept_in_float"][-1:])
        put_back = "" if st.get("accepted", True) else " [dim](no gain: put back)[/]"
        steps.add_row(
            str(st["step"]),
            (f"+ {kept}" if kept else "nothing")
            + (f" ({len(st['kept_in_float'])})" if kept else "")
            + put_back,
            f"{st['metric']:.4f}" if acc else f"{st['metric']:.1f}",
            f"{st['drop']:.4f}",
            human_size(st["size_bytes"]),
            f"{st['p50_ms']:.4g}",
            "★" if st["step"] in front else "",
        )
    console.print(steps)
    verdict = "meets the budget" if s["met_budget"] else "does NOT meet the budget"
    kept = ", ".join(f"{term(k['op_type'])} {term(k['tensor'])}"
                     for k in s["kept_in_float"]) or "none"  # fmt: skip
    console.print(f"[bold]suggested model[/] ({verdict}): {term(s['model'])}\n"
                  f"kept in float: {kept}")  # fmt: skip


def print_diff(rows: Sequence[Any], only_old: Sequence[str], only_new: Sequence[str],
               console: Console | None = None) -> None:  # fmt: skip
    """Old against new, model by model; regressions in red."""
    console = console or Console()
    table = Table(title="old → new (change: points for accuracy-like metrics and dB for SQNR, "
                        "relative otherwise)", title_justify="left")  # fmt: skip
    for h in ("model", "metric", "old", "new", "change", ""):
        table.add_column(h, justify="left" if h in ("model", "metric", "") else "right")
    for r in rows:
        relative = r.metric not in ("accuracy", "top5_accuracy", "macro_f1", "r2",
                                    "top1_agreement", "sqnr_db")  # fmt: skip
        change = f"{r.change:+.1%}" if relative else f"{r.change:+.4g}"
        table.add_row(term(r.model), term(r.metric), f"{r.old:.6g}", f"{r.new:.6g}", change,
                      "[bold red]regression[/]" if r.regression else "")  # fmt: skip
    console.print(table)
    if only_old:
        console.print("only in the old report: " + ", ".join(term(n) for n in only_old))
    if only_new:
        console.print("only in the new report: " + ", ".join(term(n) for n in only_new))
    n = sum(r.regression for r in rows)
    console.print(f"{n} regression(s)" if n else "no regressions")
