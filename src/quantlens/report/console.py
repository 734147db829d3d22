"""Terminal rendering with rich: the evaluation table and a progress bar that waits its turn."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from quantlens.models.base import ModelInfo
from quantlens.report.formats import delta_text, human_size, latency, number, ratio_text
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
    ("top1_agreement", "top-1", "{:.4f}"),
    ("kl_divergence", "KL", "{:.3g}"),
]


#: Tables show every column (``--wide``) instead of each command's compact set.
_WIDE: ContextVar[bool] = ContextVar("quantlens_wide_tables", default=False)
#: How wide a --wide table may grow.
WIDE_WIDTH = 240
#: A name column is at least this wide (so names up to it are never folded), when it fits.
NAME_MIN = 28


@contextmanager
def wide_tables(wide: bool = True) -> Iterator[None]:
    """Within the block, tables show all their columns and may be wider than the terminal."""
    token = _WIDE.set(wide)
    try:
        yield
    finally:
        _WIDE.reset(token)


def make_console(stderr: bool = False) -> Console:
    """A console as wide as the terminal, or ``COLUMNS`` when set (piped output too), or 80;
    with :func:`wide_tables`, as wide as a wide table needs."""
    if _WIDE.get():
        probe = Console(stderr=stderr)
        return Console(stderr=stderr, width=max(probe.width, WIDE_WIDTH))
    return Console(stderr=stderr)


@dataclass(frozen=True)
class Column:
    """A table column: ``name`` (a model or tensor name: folded, never cut), ``text`` (words
    that wrap) or ``num`` (never wraps); ``compact`` columns show without ``--wide``."""

    header: str
    kind: str = "num"
    compact: bool = True
    style: str | None = None


def build_table(
    title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]],
    width: int | None = None,
) -> Table:  # fmt: skip
    """A table of the compact columns (all of them with --wide), laid out to fit ``width``:
    numbers never wrap, text columns wrap at their words first, names fold last (so a name
    up to NAME_MIN characters stays on one line), nothing is cut."""
    shown = [i for i, c in enumerate(columns) if c.compact or _WIDE.get()]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False)  # fmt: skip
    for i in shown:
        c = columns[i]
        table.add_column(c.header, justify="right" if c.kind == "num" else "left",
                         style=c.style, no_wrap=c.kind == "num", overflow="fold")  # fmt: skip
    for r in rows:
        table.add_row(*(r[i] for i in shown))
    if width is not None and not _WIDE.get():
        _fit(table, [columns[i] for i in shown], [[r[i] for i in shown] for r in rows], width)
    return table


def _plain(text: str) -> str:
    from rich.text import Text

    return Text.from_markup(text).plain


def _fit(table: Table, columns: Sequence[Column], rows: Sequence[Sequence[str]],
         width: int) -> None:  # fmt: skip
    """Give each column a width so the table fits ``width``: rich alone shrinks every
    wrappable column alike (folding names where a text column had room) or crops."""
    from rich.cells import cell_len

    texts = [[_plain(c.header), *(_plain(r[i]) for r in rows)] for i, c in enumerate(columns)]
    longest = [max(cell_len(t) for t in col) for col in texts]
    words = [max([cell_len(w) for t in col for w in t.split()] or [1]) for col in texts]
    floor = [
        longest[i] if c.kind == "num" else (min(longest[i], NAME_MIN) if c.kind == "name"
                                            else words[i])
        for i, c in enumerate(columns)
    ]  # fmt: skip
    # padding (none at the outer edges), one separator between columns, two edges
    room = width - (2 * len(columns) - 2) - max(0, len(columns) - 1) - 2
    widths = list(longest)
    # Give up room from text first, then names down to NAME_MIN, then names folded further:
    # numbers are never the ones cut.
    for kind, lowest in (("text", floor), ("name", floor), ("name", [8] * len(columns))):
        excess = sum(widths) - room
        if excess <= 0:
            break
        for i, c in sorted(enumerate(columns), key=lambda ic: -(widths[ic[0]] - lowest[ic[0]])):
            if c.kind != kind or excess <= 0:
                continue
            cut = max(0, min(excess, widths[i] - lowest[i]))
            widths[i] -= cut
            excess -= cut
    for column, c, w in zip(table.columns, columns, widths, strict=True):
        if c.kind != "num":
            column.width = max(1, w)


def evaluation_table(result: EvaluationResult, width: int | None = None) -> Table:
    """One row per model, the reference first: size, task metrics, fidelity to the reference
    (compact: the first task metric, SQNR, top-1 agreement, p50 and speed-up)."""
    task_cols = [
        c
        for c in TASK_COLUMNS.get(result.dataset.task, [])
        if any(m.task_metrics and c[0] in m.task_metrics for m in result.models)
    ]
    fid_cols = [
        c for c in FIDELITY_COLUMNS if any(m.fidelity and c[0] in m.fidelity for m in result.models)
    ]
    compact_fidelity = ("sqnr_db", "top1_agreement")
    columns = [Column("model", "name", style="bold"), Column("format", "text", compact=False),
               Column("size", compact=False)]  # fmt: skip
    columns += [Column(h, style="cyan", compact=i == 0) for i, (_, h, _) in enumerate(task_cols)]
    columns += [Column(h, style="magenta", compact=k in compact_fidelity) for k, h, _ in fid_cols]
    benched = any(m.performance for m in result.models)
    if benched:
        columns += [Column("p50", style="green"), Column("speed-up", style="green"),
                    Column("peak RSS", style="green", compact=False)]  # fmt: skip
    rows = []
    for m in result.models:
        row = [
            term(m.name) + (" (ref)" if m.role == "reference" else ""),
            m.format,
            human_size(m.size_bytes),
        ]
        row += [number((m.task_metrics or {}).get(k), p) for k, _, p in task_cols]
        row += [number((m.fidelity or {}).get(k), p) for k, _, p in fid_cols]
        if benched:
            perf = m.performance
            row += (
                [
                    latency(perf.latency_ms["p50"]) + (" ⚠" if perf.warnings else ""),
                    number(perf.speedup, "{:.2f}×"),
                    "—" if perf.peak_rss_mb is None else f"{perf.peak_rss_mb:.1f} MiB",
                ]
                if perf
                else ["—"] * 3
            )
        rows.append(row)
    title = (f"{result.dataset.samples} samples from {term(result.dataset.source)} · task: "
             f"{result.dataset.task} · fidelity vs {term(result.reference)}")  # fmt: skip
    return build_table(title, columns, rows, width)


def print_evaluation(result: EvaluationResult, console: Console | None = None) -> None:
    """Print the evaluation table, and per-output fidelity when models have several outputs."""
    console = console or Console()
    console.print(evaluation_table(result, console.width))
    noisy = [m for m in result.models if m.performance and m.performance.warnings]
    if noisy:
        console.print("[dim]⚠ p50: the latency is noisy or from few runs; "
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
            sqnr = number(f.get("sqnr_db"), "{:.2f}")
            mse = number(f.get("mse"), "{:.3g}")
            cosine = number(f.get("cosine_similarity"), "{:.5f}")
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
    columns = [
        Column("", "text"), Column("name", "name"), Column("shape", "text"),
        Column("dtype", "text"), Column("scale", "text"), Column("zero point", "text"),
    ]  # fmt: skip
    rows = []
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
            rows.append([role, term(s.name), shape, term(s.dtype), scale, zp])
    table = build_table(None, columns, rows, console.width)
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


def bench_table(result: BenchResult, width: int | None = None) -> Table:
    """One row per model and configuration: latency percentiles, throughput, memory, size
    (compact: p50, p99, cv, throughput and the ratio; threads and batch when they vary)."""
    varied = {k: len({getattr(e, k) for e in result.results}) > 1
              for k in ("threads", "batch_size")}  # fmt: skip
    columns = [
        Column("model", "name"), Column("threads", compact=varied["threads"]),
        Column("batch", compact=varied["batch_size"]), Column("runs", compact=False),
        Column("p50"), Column("p90", compact=False), Column("p99"),
        Column("mean", compact=False), Column("cv"), Column("init", compact=False),
        Column("first", compact=False), Column("samples/s"),
        Column("peak RSS", compact=False), Column("size", compact=False),
        Column("gzip", compact=False), Column("ratio [95% CI]", "text"),
    ]  # fmt: skip
    rows = []
    for e in result.results:
        lat = e.latency_ms
        rows.append([
            term(e.name) + (" ⚠" if e.warnings else ""),
            "default" if e.threads is None else str(e.threads),
            str(e.batch_size),
            str(e.runs),
            *(latency(lat[k]) for k in ("p50", "p90", "p99", "mean")),
            f"{lat['cv']:.0%}",
            *(latency(lat.get(k)) for k in ("init", "first")),
            f"{e.throughput_sps:,.0f}",
            "—" if e.peak_rss_mb is None else f"{e.peak_rss_mb:.1f} MiB",
            human_size(e.size_bytes),
            human_size(e.size_gzip_bytes),
            ratio_text(e.ratio_to_first),
        ])  # fmt: skip
    title = ("latency of invoke (steady state); ratio = p50 / the first model's, with the 95% "
             "interval of a block bootstrap over rounds")  # fmt: skip
    return build_table(title, columns, rows, width)


def print_bench(result: BenchResult, console: Console | None = None) -> None:
    """Print the benchmark table and every warning under it."""
    console = console or Console()
    console.print(bench_table(result, console.width))
    if any(e.warnings for e in result.results):
        console.print("[dim]⚠ after a model: its numbers may not be trusted; the reasons "
                      "follow[/]")  # fmt: skip
    for e in result.results:
        for w in e.warnings:
            console.print(f"  ⚠ {term(e.name)} (threads={e.threads}, batch={e.batch_size}): "
                          f"{term(w, 2000)}")  # fmt: skip
    for e in result.results:
        if e.profile:
            console.print(profile_table(e, width=console.width))


def profile_table(e: BenchEntry, top: int = 8, width: int | None = None) -> Table:
    """Where an ONNX model spends its time: op types, then the slowest nodes."""
    p = e.profile or {}
    title = (f"{term(e.name)} (threads={e.threads}, batch={e.batch_size}): kernel time "
             f"{p.get('total_us', 0):.1f} µs per run")  # fmt: skip
    rows = [[f"[bold]{term(r['op_type'])}[/]", f"{r['share']:.1%}", f"{r['mean_us']:.1f}"]
            for r in p.get("by_op_type", [])]  # fmt: skip
    rows += [[f"  {term(r['node'])} ({term(r['op_type'])})", f"{r['share']:.1%}",
              f"{r['mean_us']:.1f}"] for r in p.get("by_node", [])[:top]]  # fmt: skip
    table = build_table(title, [Column("op type / node", "name"), Column("share"),
                                Column("µs per run")], rows, width)  # fmt: skip
    return table


def compare_table(result: EvaluationResult, width: int | None = None) -> Table:
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

    columns = [Column("variant", "name"), Column("size"), Column("× float", compact=False)]
    if metric:
        columns += [Column(metric[0], compact=False), Column("Δ [95% CI]", "text"),
                    Column("p", compact=False)]  # fmt: skip
    columns += [
        Column("SQNR dB", compact=not metric), Column("top-1 agree", compact=False),
        Column("p50", compact=False), Column("speed-up"), Column("verdict", "text"),
    ]  # fmt: skip
    rows = []
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
            row += [number(value, metric[1]), *delta_text(m.paired, task)]
        fid = m.fidelity or {}
        p50 = m.performance.latency_ms["p50"] if m.performance else None
        row += [
            number(fid.get("sqnr_db"), "{:.1f}"),
            number(fid.get("top1_agreement"), "{:.4f}"),
            latency(p50),
            number(m.performance.speedup if m.performance else None, "{:.2f}×"),
            verdict,
        ]
        rows.append(row)
    title = (f"{result.dataset.samples} samples from {term(result.dataset.source)} · task: "
             f"{task} · drop vs {term(ref.name)}, speed-up and size vs "
             f"{term(baseline.name)}")  # fmt: skip
    return build_table(title, columns, rows, width)


def print_compare(result: EvaluationResult, console: Console | None = None) -> None:
    """Print the ranked comparison and the recommendation."""
    console = console or Console()
    console.print(compare_table(result, console.width))
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


def _short(name: str, width: int = 96) -> str:
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
            f"end to end, output {term(name)}: SQNR {number(f.get('sqnr_db'), '{:.2f}')} dB, "
            f"cosine {number(f.get('cosine_similarity'), '{:.5f}')}"
            + (f", top-1 agreement {f['top1_agreement']:.4f}" if "top1_agreement" in f else "")
        )
    by_output = {t["name"]: t for t in result.tensors}
    title = (f"top {top} ops by error added (dB of per-channel median SQNR lost between the op's "
             "worst input and its output)")  # fmt: skip
    debugged = any("debugger" in t for t in result.tensors)
    columns = [
        Column("#"), Column("op", compact=False), Column("type", "text"),
        Column("output tensor", "name"), Column("added dB"), Column("SQNR dB"),
        Column("ch. median dB"), Column("ch. worst dB", compact=False),
        Column("float range", compact=False), Column("ch. range ×", compact=False),
        Column("scale", compact=False), Column("rmse/scale", compact=False),
    ]  # fmt: skip
    if debugged:
        columns += [Column("debugger mse", compact=False),
                    Column("debugger max |err|", compact=False)]  # fmt: skip
    rows = []
    for rank, op in enumerate(result.top_ops(top), start=1):
        t = by_output.get(op["output"], {})
        extra = []
        if debugged:
            dbg = t.get("debugger", {})
            extra = [number(dbg.get("mean_squared_error"), "{:.3g}"),
                     number(dbg.get("max_abs_error"), "{:.3g}")]  # fmt: skip
        rows.append([
            str(rank), str(op["index"]), term(op["op_type"]), _short(op["output"]),
            f"{op['error_added_db']:+.1f}", number(op.get("output_sqnr_db"), "{:.1f}"),
            number(op.get("output_channel_sqnr_median_db"), "{:.1f}"),
            number(op.get("output_channel_sqnr_worst_db"), "{:.1f}"),
            (f"[{t['float_min']:.3g}, {t['float_max']:.3g}]" if "float_min" in t else "—"),
            number(t.get("channel_range_ratio"), "{:.3g}"),
            number(t.get("scale"), "{:.3g}"), number(t.get("rmse_over_scale"), "{:.2f}"), *extra,
        ])  # fmt: skip
    table = build_table(title, columns, rows, console.width)
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
    by_err, by_sens = s["rankings"]["error_added"], s["rankings"]["sensitivity"]
    rank_rows = []
    for k in range(max(len(by_err), len(by_sens))):
        e = by_err[k] if k < len(by_err) else None
        v = by_sens[k] if k < len(by_sens) else None
        rank_rows.append([
            str(k + 1),
            f"{term(e['op_type'])} {_short(e['tensor'], 60)}" if e else "",
            f"{e['error_added_db']:+.1f}" if e else "",
            f"{term(v['op_type'])} {_short(v['tensor'], 60)}" if v else "",
            f"{v['metric']:.4f}" if v and acc else (f"{v['metric']:.1f}" if v else ""),
        ])  # fmt: skip
    console.print(build_table(
        "candidate layers: by error added, and by the metric with only that layer kept in float",
        [Column("rank"), Column("by error added", "text"), Column("dB"),
         Column("by sensitivity", "text"), Column(unit)], rank_rows, console.width,
    ))  # fmt: skip
    budget = f"drop ≤ {s['max_drop']:g} ({'accuracy' if acc else 'relative RMSE'})"
    front = set(s["pareto"]["latency"]) | set(s["pareto"]["size"])
    step_rows = [["float", "everything", number(s.get("float_metric"), "{:.4f}"), "0",
                  human_size(s["float_size_bytes"]), latency(s["float_p50_ms"]), ""]]  # fmt: skip
    for st in s["steps"]:
        kept = ", ".join(_short(n, 60) for n in st["kept_in_float"][-1:])
        put_back = "" if st.get("accepted", True) else " [dim](no gain: put back)[/]"
        step_rows.append([
            str(st["step"]),
            (f"+ {kept}" if kept else "nothing")
            + (f" ({len(st['kept_in_float'])})" if kept else "")
            + put_back,
            f"{st['metric']:.4f}" if acc else f"{st['metric']:.1f}",
            f"{st['drop']:.4f}",
            human_size(st["size_bytes"]),
            latency(st["p50_ms"]),
            "★" if st["step"] in front else "",
        ])  # fmt: skip
    console.print(build_table(
        f"greedy search, budget: {budget}",
        [Column("step"), Column("kept in float", "text"), Column(unit), Column("drop"),
         Column("size"), Column("p50"), Column("Pareto")], step_rows, console.width,
    ))  # fmt: skip
    console.print("[dim]★ on a Pareto front: nothing is better in both the metric and latency, "
                  "or the metric and size[/]")  # fmt: skip
    verdict = "meets the budget" if s["met_budget"] else "does NOT meet the budget"
    kept = ", ".join(f"{term(k['op_type'])} {term(k['tensor'])}"
                     for k in s["kept_in_float"]) or "none"  # fmt: skip
    console.print(f"[bold]suggested model[/] ({verdict}): {term(s['model'])}\n"
                  f"kept in float: {kept}")  # fmt: skip


def print_diff(rows: Sequence[Any], only_old: Sequence[str], only_new: Sequence[str],
               console: Console | None = None) -> None:  # fmt: skip
    """Old against new, model by model; regressions in red."""
    console = console or Console()
    diff_rows = []
    for r in rows:
        relative = r.metric not in ("accuracy", "top5_accuracy", "macro_f1", "r2",
                                    "top1_agreement", "sqnr_db")  # fmt: skip
        change = f"{r.change:+.1%}" if relative else f"{r.change:+.4g}"
        diff_rows.append([term(r.model), term(r.metric), f"{r.old:.6g}", f"{r.new:.6g}", change,
                          "[bold red]regression[/]" if r.regression else ""])  # fmt: skip
    console.print(build_table(
        "old → new (change: points for accuracy-like metrics and dB for SQNR, relative otherwise)",
        [Column("model", "name"), Column("metric", "text"), Column("old"), Column("new"),
         Column("change"), Column("", "text")], diff_rows, console.width,
    ))  # fmt: skip
    if only_old:
        console.print("only in the old report: " + ", ".join(term(n) for n in only_old))
    if only_new:
        console.print("only in the new report: " + ", ".join(term(n) for n in only_new))
    n = sum(r.regression for r in rows)
    console.print(f"{n} regression(s)" if n else "no regressions")
