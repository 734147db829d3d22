"""Terminal rendering with rich: the evaluation table and a progress bar that waits its turn."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from quantlens.metric_registry import human_size, spell, spell_change
from quantlens.report.formats import (
    compare_legend,
    end_to_end_sentences,
    origin_sentence,
    short_tensor_name,
    worst_weights_sentence,
)
from quantlens.report.text import LONG_TEXT, term
from quantlens.report.views import (
    TableView,
    bench_view,
    compare_view,
    diagnosis_view,
    distribution_view,
    evaluation_view,
    kept_text,
    kernel_findings,
    kernel_views,
    precision_legend,
    shown_steps,
    stored_reference_note,
    suggestion_views,
)
from quantlens.results import (
    BenchEntry,
    BenchResult,
    DiagnosisResult,
    EvaluationResult,
    KernelCheck,
    ModelInfo,
    Suggestion,
)

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
    up to NAME_MIN characters stays on one line, a longer one breaks after its '/', '_' or
    ';'), nothing is cut."""
    shown = [columns[i] for i, c in enumerate(columns) if c.compact or _WIDE.get()]
    cells = [[r[i] for i, c in enumerate(columns) if c.compact or _WIDE.get()] for r in rows]
    # a table narrower than its title would fold the title to its own width: widen it, as
    # far as the terminal allows
    widest = None if title is None else min(cell_len(title), width or cell_len(title))
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False, min_width=widest)  # fmt: skip
    widths: list[int | None] = [None] * len(shown)
    if width is not None and not _WIDE.get():
        widths = _fit(shown, cells, width)
    for c, w in zip(shown, widths, strict=True):
        table.add_column(c.header, justify="right" if c.kind == "num" else "left",
                         style=c.style, no_wrap=c.kind == "num", overflow="fold",
                         width=w)  # fmt: skip
    for r in cells:
        table.add_row(*(
            _break_name(cell, w) if c.kind == "name" and w is not None else cell
            for c, w, cell in zip(shown, widths, r, strict=True)
        ))  # fmt: skip
    return table


#: A long name breaks after one of these, the first kind preferred (a '_' often sits inside
#: a word such as 'conv1_1').
_STRONG_BREAKS, _WEAK_BREAKS = frozenset("/;, "), frozenset("_.:-")


def _break_name(cell: str, width: int) -> Any:
    """The cell as rich Text with line breaks after separators, so that no line is longer
    than ``width`` unless a single part is (rich folds that one)."""
    from rich.text import Text

    text = Text.from_markup(cell)
    plain = text.plain
    if len(plain) <= width or "\n" in plain:
        return text
    strong = [i + 1 for i, ch in enumerate(plain) if ch in _STRONG_BREAKS]
    weak = [i + 1 for i, ch in enumerate(plain) if ch in _WEAK_BREAKS]
    offsets, start = [], 0
    while len(plain) - start > width:
        # a space may end a line one past the width: it is stripped
        fits = [b for b in strong if start < b <= start + width + (plain[b - 1] == " ")]
        fits = fits or [b for b in weak if start < b <= start + width]
        if not fits:
            later = [b for b in strong + weak if b > start]
            if not later:
                break
            fits = [min(later)]  # a part longer than the width: rich folds it
        start = max(fits)
        offsets.append(start)
    parts = text.divide(offsets)
    for part in parts:
        part.rstrip()  # in place: the space that ended a line
    return Text("\n").join(parts)


def _plain(text: str) -> str:
    from rich.text import Text

    return Text.from_markup(text).plain


def _fit(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int | None]:
    """Each column's width so the table fits ``width`` (None: as wide as its numbers): rich
    alone shrinks every wrappable column alike (folding names where a text column had room)
    or crops."""
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
    # numbers are never the ones cut. Last, text folds inside its longest word: a cut number
    # would be worse.
    stages = (("text", floor), ("name", floor), ("name", [8] * len(columns)),
              ("text", [6] * len(columns)))  # fmt: skip
    # A name column whose longest name breaks after a separator folds there; one without
    # (an op type: 'BatchNormalization') is cut mid-word, so it gives up its room last.
    separators = _STRONG_BREAKS | _WEAK_BREAKS
    cut_last = [c.kind == "name" and not any(ch in separators for ch in max(col, key=cell_len))
                for c, col in zip(columns, texts, strict=True)]  # fmt: skip
    for kind, lowest in stages:
        excess = sum(widths) - room
        if excess <= 0:
            break
        for i, c in sorted(
            enumerate(columns), key=lambda ic: (cut_last[ic[0]], -(widths[ic[0]] - lowest[ic[0]]))
        ):
            if c.kind != kind or excess <= 0:
                continue
            cut = max(0, min(excess, widths[i] - lowest[i]))
            widths[i] -= cut
            excess -= cut
    return [None if c.kind == "num" else max(1, w) for c, w in zip(columns, widths, strict=True)]


#: How a view's cell tones look on the terminal.
TONES = {"good": "bold green", "bad": "red"}


def view_table(view: TableView, width: int | None = None) -> Table:
    """A view as a rich table that fits ``width``: names and text escaped, tones coloured."""
    columns = [Column(c.header, c.kind, c.compact, c.style) for c in view.columns]
    rows = [
        [(f"[{TONES[cell.tone]}]{term(cell.text)}[/]" if cell.tone in TONES else term(cell.text))
         + term(cell.note) for cell in row]
        for row in view.rows
    ]  # fmt: skip
    return build_table(term(view.title, 2000), columns, rows, width)


def evaluation_table(result: EvaluationResult, width: int | None = None) -> Table:
    """One row per model, the reference first: size, task metrics, fidelity to the reference
    (compact: the first task metric, SQNR, top-1 agreement, p50 and speed)."""
    return view_table(evaluation_view(result), width)


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
    with_distribution = [m for m in result.models if m.distribution]
    if with_distribution:
        console.print(view_table(distribution_view(with_distribution), console.width))
    for m in result.models:
        for o in m.outputs:
            f = o.fidelity
            sqnr = spell("sqnr_db", f.get("sqnr_db"))
            mse = spell("mse", f.get("mse"))
            cosine = spell("cosine_similarity", f.get("cosine_similarity"))
            console.print(
                f"  {term(m.name)} · output {term(o.name)}: SQNR {sqnr} dB, mse {mse}, "
                f"cosine {cosine}"
            )


def print_run_notes(result: EvaluationResult, console: Console) -> None:
    """The report's warnings, how each model that did not run the batch as given ran, and
    where stored reference outputs went or came from."""
    if result.reference_outputs is not None:
        console.print(f"[dim]{term(stored_reference_note(result.reference_outputs), 4000)}[/]")
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
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=console, transient=True,
            )  # fmt: skip
            # the task first: a bar started empty drew "0/N" before its first update
            task_id = progress.add_task(description, total=total, completed=done)
            progress.start()
        progress.update(task_id, completed=done)

    try:
        yield advance
    finally:
        if progress is not None:
            progress.stop()


def bench_table(result: BenchResult, width: int | None = None) -> Table:
    """One row per model and configuration (see :func:`~quantlens.report.views.bench_view`)."""
    return view_table(bench_view(result), width)


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
    """The ranked comparison, in the order and with the verdicts compare() decided:
    acceptable variants by size, then the rest by drop."""
    return view_table(compare_view(result), width)


def print_compare(result: EvaluationResult, console: Console | None = None) -> None:
    """Print the ranked comparison and the recommendation."""
    console = console or Console()
    console.print(compare_table(result, console.width))
    console.print(f"[dim]{compare_legend(result)}[/]")
    print_run_notes(result, console)
    rec = result.recommendation
    if rec is None:
        return
    console.print(f"[bold]recommendation:[/] {term(rec.model)} — {term(rec.reason, 2000)}")
    if rec.significantly_worse:
        console.print("significantly worse than the reference (p < 0.05): "
                      + ", ".join(term(n) for n in rec.significantly_worse))  # fmt: skip
    if rec.slower_than_float:
        console.print("slower than float (the speed's 95% interval lies below 0.95×): "
                      + ", ".join(term(n) for n in rec.slower_than_float))  # fmt: skip
    if rec.note:
        console.print(f"note: {term(rec.note, 2000)}")


def _short(name: str, width: int = 96) -> str:
    """A tensor name for the terminal: a fused name shortened to its first part."""
    return term(short_tensor_name(name, width))


def print_diagnosis(result: DiagnosisResult, top: int, console: Console | None = None) -> None:
    """The ops that add the most error, the end-to-end fidelity, weights, and what is unmatched."""
    console = console or Console()
    quant, flt = term(Path(result.quant_path).name), term(Path(result.float_path).name)
    console.print(f"[bold]{quant}[/] against [bold]{flt}[/] on {result.samples} samples")
    console.print(f"[dim]{term(result.note, 2000)}[/]")
    for line in end_to_end_sentences(result, term):
        console.print(line)
    console.print(view_table(diagnosis_view(result, top), console.width))
    origin = origin_sentence(result, term)
    if origin is not None:
        console.print(f"[bold]{origin}[/]")
    weights = worst_weights_sentence(result, term)
    if weights is not None:
        console.print(weights)
    unmatched = result.unmatched
    if unmatched.get("quantized") or unmatched.get("float"):
        n_q, n_f = len(unmatched.get("quantized", [])), len(unmatched.get("float", []))
        console.print(f"unmatched tensors: {n_q} in the quantized model, {n_f} in the float model")


def print_suggestion(s: Suggestion, console: Console | None = None) -> None:
    """The candidate layers, every measured step, the Pareto fronts and the suggested model."""
    console = console or Console()
    for view in suggestion_views(s):
        console.print(view_table(view, console.width))
    if not _WIDE.get():  # the change column is left out of a terminal-wide table
        for st, change in shown_steps(s):
            console.print(f"  step {st.step}: {term(change, limit=LONG_TEXT)}")
    console.print(f"[dim]{precision_legend(s)} · ★ on a Pareto front: nothing is better in "
                  "both the metric and latency, or the metric and size · drop: against the "
                  f"float model · {s.evaluations} models built and measured[/]")  # fmt: skip
    if s.refused:
        console.print(f"{s.refused} plan(s) could not be built or run, e.g.: "
                      f"{term(s.refused_reasons[0], limit=LONG_TEXT)}")  # fmt: skip
    verdict = "meets the budget" if s.met_budget else "does NOT meet the budget"
    console.print(f"[bold]suggested model[/] ({verdict}): {term(s.model)}\n"
                  f"kept: {term(kept_text(s), limit=LONG_TEXT)}\n"
                  f"manifest: {term(s.manifest)}")  # fmt: skip
    if s.explanation:
        console.print(f"\n[bold]why:[/] {term(s.explanation, limit=LONG_TEXT)}")


def print_diff(rows: Sequence[Any], only_old: Sequence[str], only_new: Sequence[str],
               console: Console | None = None) -> None:  # fmt: skip
    """Old against new, model by model; regressions in red."""
    console = console or Console()
    diff_rows = []
    for r in rows:
        diff_rows.append([term(r.model), term(r.metric), spell(r.metric, r.old),
                          spell(r.metric, r.new), spell_change(r.metric, r.change),
                          "[bold red]regression[/]" if r.regression else ""])  # fmt: skip
    console.print(build_table(
        "old → new (change: points for accuracy-like metrics, dB for SQNR, relative otherwise)",
        [Column("model", "name"), Column("metric", "text"), Column("old"), Column("new"),
         Column("change"), Column("", "text")], diff_rows, console.width,
    ))  # fmt: skip
    if only_old:
        console.print("only in the old report: " + ", ".join(term(n) for n in only_old))
    if only_new:
        console.print("only in the new report: " + ", ".join(term(n) for n in only_new))
    n = sum(r.regression for r in rows)
    console.print(f"{n} regression(s)" if n else "no regressions")


def print_kernels(check: KernelCheck, console: Console | None = None) -> None:
    """The kernel paths against the reference kernels (and the float model), then what that
    says: dead or non-finite paths, and kernel error beside quantization error."""
    console = console or Console()
    for view in kernel_views(check):
        console.print(view_table(view, console.width))
    print_run_notes(check.kernels, console)
    for line in kernel_findings(check):
        console.print(term(line, 2000))
