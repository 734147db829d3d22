"""One spelling per kind of quantity, shared by the console, Markdown and HTML renderers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quantlens.metric_registry import drop_words, number, short_tensor_name, spell


def ratio_text(ratio: dict[str, float] | None) -> str:
    """A ratio of medians with its 95% interval, or '1 (base)' for the baseline itself."""
    if not ratio:
        return "1 (base)"
    lo, hi = ratio.get("ci95_low", float("nan")), ratio.get("ci95_high", float("nan"))
    interval = f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
    return f"{ratio['ratio']:.3f}{interval}"


def delta_header(task: str) -> str:
    """The heading of the column :func:`delta_text` fills."""
    return "Δ pt [95% CI]" if task == "classification" else "Δ MAE [95% CI]"


def delta_text(paired: Any, task: str, *, unit: bool = False) -> tuple[str, str]:
    """The change of the task metric with its 95% interval (accuracy in points, MAE as it
    is; the unit is in :func:`delta_header`, or after the number with ``unit``), and the
    paired test's p-value."""
    if paired is None:
        return "—", "—"
    scale = 100 if task == "classification" else 1
    d, lo, hi = paired.delta * scale, paired.ci95_low * scale, paired.ci95_high * scale
    after = " pt" if unit and task == "classification" else ""
    return f"{d:+.2f}{after} [{lo:+.2f}, {hi:+.2f}]", p_text(paired.p_value)


def p_text(p: float | None) -> str:
    """A p-value with two significant digits."""
    return number(p, "{:.2g}")


def suggestion_metric(value: float | None, accuracy: bool) -> str:
    """The budget metric of a keep-in-float step: accuracy, or SQNR in dB."""
    return spell("accuracy" if accuracy else "sqnr_db", value)


def drop_text(drop: float | None, accuracy: bool) -> str:
    """A drop against the float model: accuracy points, or relative RMSE for SQNR budgets."""
    if drop is None or drop != drop:
        return "—"
    return f"{drop * 100:.2f}\u00a0pt" if accuracy else f"{drop:.3g}"


def compare_legend(result: Any) -> str:
    """What the comparison's symbols and columns mean."""
    rec = result.recommendation
    task = result.dataset.task
    parts = ["✓ the recommended variant"]
    allowed = drop_words(rec.max_drop if rec else 0.01, task,
                         any(m.class_scores for m in result.models[1:]))  # fmt: skip
    if task in ("classification", "regression"):
        parts += [f"✗ a drop beyond the allowed {allowed} (significant: p < 0.05 in the "
                  "paired test)", "Δ: change of the task metric against the reference, with "
                  "its 95% interval"]  # fmt: skip
    else:  # no labels: the drop is fidelity to the reference
        parts += [f"✗ a drop beyond the allowed {allowed}"]
    parts += ["speed: the float model's p50 latency over the variant's",
              "slower: the speed's 95% interval lies below 0.95×"]  # fmt: skip
    return " · ".join(parts)


def origin_sentence(diagnosis: Any, wrap: Callable[[str], str] = str) -> str | None:
    """Where a diagnosis says the error starts, in one sentence (names through ``wrap``, which
    escapes them for the output); None when no op stands out."""
    o = diagnosis.origin()
    if o is None:
        return None
    name = wrap(short_tensor_name(o.output))
    text = (f"The error starts at op {o.index} ({wrap(o.op_type)} {name}), which adds "
            f"{o.error_added_db or 0.0:.1f} dB")  # fmt: skip
    t = next((t for t in diagnosis.tensors if t.name == o.output), None)
    ratio = t.channel_range_ratio if t else None
    if t is not None and t.scale is not None and ratio is not None and ratio >= WIDE_CHANNEL_RATIO:
        text += (f": its output's widest channel spans {ratio:.3g}× the range of the median "
                 "one, and all of them share one quantization scale")  # fmt: skip
    return text + "."


#: Channels whose ranges differ by more than this share a per-tensor scale badly.
WIDE_CHANNEL_RATIO = 10.0


def end_to_end_sentences(diagnosis: Any, wrap: Callable[[str], str] = str) -> list[str]:
    """Per model output, its fidelity at the end of the graph (names through ``wrap``)."""
    lines = []
    for name, f in diagnosis.end_to_end.items():
        sqnr = spell("sqnr_db", f.get("sqnr_db"))
        cosine = spell("cosine_similarity", f.get("cosine_similarity"))
        text = f"end to end, output {wrap(name)}: SQNR {sqnr} dB, cosine {cosine}"
        if "top1_agreement" in f:
            text += f", top-1 agreement {spell('top1_agreement', f['top1_agreement'])}"
        lines.append(text)
    return lines


def worst_weights_sentence(diagnosis: Any, wrap: Callable[[str], str] = str) -> str | None:
    """The five weights quantized worst (names through ``wrap``); None when none was compared."""
    weights = sorted(diagnosis.weights, key=lambda w: w.sqnr_db)[:5]
    if not weights:
        return None
    return "worst weights: " + "; ".join(
        f"{wrap(short_tensor_name(w.name, 40))} ({wrap(w.dtype)}, op {w.op_index}) "
        f"{w.sqnr_db:.1f} dB"
        for w in weights
    )
