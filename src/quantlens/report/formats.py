"""One spelling per kind of quantity, shared by the console, Markdown and HTML renderers."""

from __future__ import annotations

from typing import Any


def latency(ms: float | None) -> str:
    """A latency with a unit that suits it (µs, ms, s) and 3 significant digits."""
    if ms is None or ms != ms:
        return "—"
    if ms < 1:
        return f"{ms * 1000:.3g} µs"
    if ms < 1000:
        return f"{ms:.3g} ms"
    return f"{ms / 1000:.3g} s"


def human_size(n: int) -> str:
    """Bytes as B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def number(value: float | None, pattern: str) -> str:
    """A number in ``pattern``; '—' when missing, non-finite values spelled out."""
    if value is None:
        return "—"
    return pattern.format(value) if value == value and abs(value) != float("inf") else str(value)


def ratio_text(ratio: dict[str, float] | None) -> str:
    """A ratio of medians with its 95% interval, or '1 (base)' for the baseline itself."""
    if not ratio:
        return "1 (base)"
    lo, hi = ratio.get("ci95_low", float("nan")), ratio.get("ci95_high", float("nan"))
    interval = f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
    return f"{ratio['ratio']:.3f}{interval}"


def delta_text(paired: dict[str, Any] | None, task: str) -> tuple[str, str]:
    """The change of the task metric with its 95% interval (accuracy in points, MAE as it
    is), and the paired test's p-value."""
    if not paired:
        return "—", "—"
    key, scale, unit = (
        ("accuracy_delta", 100, "\u00a0pt") if task == "classification" else ("mae_delta", 1, "")
    )
    d, lo, hi = (paired[key] * scale, paired["ci95_low"] * scale, paired["ci95_high"] * scale)
    p = paired.get("mcnemar_p", paired.get("wilcoxon_p"))
    return f"{d:+.2f}{unit} [{lo:+.2f}, {hi:+.2f}]", number(p, "{:.2g}")
