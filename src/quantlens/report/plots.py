"""Plots as inline SVG strings, drawn with matplotlib (imported lazily, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from quantlens.errors import require
from quantlens.report.text import visible


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "report", "the HTML report")
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: no embedded font files
    # Labels are model and tensor names: '$...$' in one must stay text, not become mathtext
    # (which fails on a malformed formula after the whole run).
    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["text.usetex"] = False
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inlined in HTML


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points (x: cost, lower better; y: metric, higher better) nothing beats on both."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                   for j, (x2, y2) in enumerate(points) if j != i):  # fmt: skip
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def tradeoff(
    names: Sequence[str], costs: Sequence[float], metric: Sequence[float], *,
    xlabel: str, ylabel: str, recommended: str | None, logx: bool = False,
) -> str:  # fmt: skip
    """One point per model, the Pareto front drawn, the recommended model marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(costs, metric, color="#4C72B0", zorder=3)
    front = pareto_front(list(zip(costs, metric, strict=True)))
    ax.plot([costs[i] for i in front], [metric[i] for i in front], "--", color="#DD8452",
            label="Pareto front", zorder=2)  # fmt: skip
    for n, x, y in zip(names, costs, metric, strict=True):
        ax.annotate(visible(n, 60), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if n == recommended:
            ax.scatter([x], [y], s=220, facecolors="none", edgecolors="#55A868", linewidths=2,
                       label="recommended", zorder=4)  # fmt: skip
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def latency_boxes(names: Sequence[str], samples: Sequence[Sequence[float]]) -> str:
    """Box plots of the raw steady-state latencies, one per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(names)))
    ax.boxplot(list(samples), vert=False, tick_labels=[visible(n, 60) for n in names],
               showfliers=True,
               flierprops={"markersize": 2})  # fmt: skip
    ax.set_xlabel("latency of invoke (ms)")
    ax.set_xscale("log")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def layer_bars(labels: Sequence[str], sqnr: Sequence[float], added: Sequence[float],
               worst: int = 3) -> str:  # fmt: skip
    """Per-layer SQNR and error-added bars in graph order, the worst layers labelled."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    x = list(range(len(labels)))
    a1.bar(x, sqnr, color="#4C72B0")
    a1.set_ylabel("output SQNR (dB)")
    a2.bar(x, added, color=["#C44E52" if v > 0 else "#8C8C8C" for v in added])
    a2.set_ylabel("error added (dB)")
    a2.set_xlabel("op, in graph order")
    for i in sorted(x, key=lambda i: -added[i])[:worst]:
        a2.annotate(visible(labels[i], 60), (i, added[i]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=7)  # fmt: skip
    a2.set_xticks(x)
    for ax in (a1, a2):
        ax.grid(alpha=0.3, axis="y")
    return _svg(fig)
