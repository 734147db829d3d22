"""Plots as inline SVG strings, drawn with matplotlib (imported lazily, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from quantlens.errors import require
from quantlens.metric_registry import pareto_front
from quantlens.report.text import visible


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "report", "the HTML report")
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: no embedded font files
    matplotlib.rcParams["text.usetex"] = False
    import matplotlib.pyplot as plt

    return plt


def _label(name: str) -> str:
    """A model or tensor name as plot text: one line, and its '$' escaped so that it is not
    read as mathtext (a malformed formula would fail after the whole run)."""
    return visible(name, 60).replace("$", r"\$")


def _plain_log_axis(axis: Any, set_scale: Any) -> None:
    """A log axis labelled 1, 2, 5 per decade in plain numbers (0.002, 0.005, 0.01): the
    default's '3×10⁻³' minor labels run into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def tradeoff(
    names: Sequence[str], costs: Sequence[float], metric: Sequence[float], *,
    xlabel: str, ylabel: str, recommended: str | None, logx: bool = False,
) -> str:  # fmt: skip
    """One numbered point per model (a key under the plot names them: labels written beside
    the points overlap as soon as two models are close), the Pareto front drawn, the
    recommended model circled."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ax.scatter(costs, metric, color="#4C72B0", zorder=3)
    front = pareto_front(list(zip(costs, metric, strict=True)))
    ax.plot([costs[i] for i in front], [metric[i] for i in front], "--", color="#DD8452",
            linewidth=2, label="Pareto front", zorder=2)  # fmt: skip
    for label, (x, y) in _numbered_positions(costs, metric, logx).items():
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=9)
    for n, x, y in zip(names, costs, metric, strict=True):
        if n == recommended:
            ax.scatter([x], [y], s=220, facecolors="none", edgecolors="#55A868", linewidths=2,
                       label="recommended", zorder=4)  # fmt: skip
    if logx:
        _plain_log_axis(ax.xaxis, ax.set_xscale)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    blank = Line2D([], [], linestyle="none")
    key = [f"{k}  {_label(n)}" for k, n in enumerate(names, start=1)]
    ax.legend(handles + [blank] * len(key), labels + key, fontsize=9, loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)  # fmt: skip
    return _svg(fig)


def _numbered_positions(
    xs: Sequence[float], ys: Sequence[float], logx: bool
) -> dict[str, tuple[float, float]]:
    """'1', '2,3', ... at each cluster of points: models closer than 4% of the axes' spans
    share one label, so no two labels overlap."""
    import math

    px = [math.log10(x) if logx and x > 0 else x for x in xs]
    span_x = (max(px) - min(px)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    clusters: list[list[int]] = []
    for k in range(len(xs)):
        near = next((c for c in clusters if abs(px[c[0]] - px[k]) < 0.04 * span_x
                     and abs(ys[c[0]] - ys[k]) < 0.04 * span_y), None)  # fmt: skip
        if near is None:
            clusters.append([k])
        else:
            near.append(k)
    return {",".join(str(k + 1) for k in c): (xs[c[0]], ys[c[0]]) for c in clusters}


def latency_boxes(names: Sequence[str], samples: Sequence[Sequence[float]]) -> str:
    """Box plots of the raw steady-state latencies, one per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 0.8 + 0.32 * len(names)))
    ax.boxplot(list(samples), vert=False, tick_labels=[_label(n) for n in names],
               showfliers=True,
               flierprops={"markersize": 2})  # fmt: skip
    ax.set_xlabel("latency of invoke (ms)")
    _plain_log_axis(ax.xaxis, ax.set_xscale)
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


#: At most this many ops get a bar: beyond it, the ones adding the most error (in graph order).
MAX_BARS = 80


def layer_bars(labels: Sequence[str], sqnr: Sequence[float], added: Sequence[float]) -> str:
    """One row per op in graph order, top to bottom, labelled by its name: its output's SQNR
    and the error it adds, side by side."""
    plt = _pyplot()
    rows = list(range(len(labels)))
    if len(rows) > MAX_BARS:
        rows = sorted(sorted(rows, key=lambda i: -added[i])[:MAX_BARS])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 1.0 + 0.24 * len(rows)), sharey=True,
                                 gridspec_kw={"wspace": 0.08})  # fmt: skip
    y = list(range(len(rows)))
    a1.barh(y, [sqnr[i] for i in rows], color="#4C72B0")
    a1.set_xlabel("output SQNR (dB)")
    a2.barh(y, [added[i] for i in rows],
            color=["#C44E52" if added[i] > 0 else "#8C8C8C" for i in rows])  # fmt: skip
    a2.axvline(0, color="#444", linewidth=0.8)
    a2.set_xlabel("error added (dB)")
    a1.set_yticks(y, [_label(labels[i]) for i in rows], fontsize=8)
    a1.set_ylim(len(rows) - 0.5, -0.5)  # graph order reads top to bottom, no empty margin
    for ax in (a1, a2):
        ax.grid(alpha=0.3, axis="x")
        ax.xaxis.set_ticks_position("both")
        ax.tick_params(axis="x", labeltop=True)
    return _svg(fig)


def kl_percentiles(names: Sequence[str], curves: Sequence[Sequence[float]],
                   percentiles: Sequence[float]) -> str:  # fmt: skip
    """Each candidate's KL divergence at each percentile of its samples, the percentiles
    evenly spaced so that the tail (p90 to max, where quantized models differ) is as wide as
    the rest, on a log scale; one numbered line per candidate."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(9.6, 3.8))
    floor = 1e-6  # a KL of 0 has no place on a log axis: shown at the floor
    order = sorted(range(len(percentiles)), key=lambda i: percentiles[i])
    xs = list(range(len(order)))
    for k, (name, ys) in enumerate(zip(names, curves, strict=True), start=1):
        ax.plot(xs, [max(ys[i], floor) for i in order], marker="o", markersize=3,
                label=f"{k}. {_label(name)}")  # fmt: skip
    ticks = {0.0: "min", 100.0: "max"}
    ax.set_xticks(xs, [ticks.get(percentiles[i], f"p{percentiles[i]:g}") for i in order])
    ax.set_xlabel("percentile of samples")
    ax.set_ylabel("KL(reference ‖ candidate)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)
