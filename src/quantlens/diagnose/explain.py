"""Why a repair search found no model within the budget (or none that stays small), in one
paragraph a person can act on, from what the search measured."""

from __future__ import annotations

import math
from collections.abc import Mapping

from quantlens.budget import within
from quantlens.metric_registry import human_size, short_tensor_name
from quantlens.results import SearchStep, SourceCheck, Suggestion

#: A suggestion that keeps less than this share of the mode's size reduction is explained too.
SMALL_ENOUGH = 0.5
#: A source "dominates" when it alone causes at least this share of the mode's drop.
DOMINANT = 0.5
#: An input whose int8 range clips at least this share of its values is named.
CLIPPED_NOTE = 0.001


def _value(s: Suggestion, metric: float) -> str:
    return f"{metric:.1%} accuracy" if s.accuracy else f"{metric:.1f} dB SQNR"


def _budget(s: Suggestion) -> str:
    if s.accuracy:
        return f"accuracy within {s.max_drop * 100:.2g} points of the float model's"
    return f"SQNR ≥ {-20 * math.log10(s.max_drop):.1f} dB" if s.max_drop > 0 else "no error"


def size_kept(s: Suggestion, size_bytes: int) -> float:
    """The share of the mode's size reduction a model keeps (1: as small as the mode)."""
    base = s.steps[0].size_bytes
    saved = s.float_size_bytes - base
    return 1.0 if saved <= 0 else (s.float_size_bytes - size_bytes) / saved


def needs_explaining(s: Suggestion, chosen: SearchStep | None) -> bool:
    """Not within the budget, or within it only by giving up most of the size reduction."""
    if not s.met_budget:
        return True
    return chosen is not None and size_kept(s, chosen.size_bytes) < SMALL_ENOUGH


def explain(s: Suggestion, chosen: SearchStep, stopped: str,
            clipped_inputs: Mapping[str, float] | None = None) -> str:  # fmt: skip
    """One paragraph: the best point reached, which error source dominates (each measured
    alone), how spread the error is, and what would be needed. ``clipped_inputs``: the share
    of each model input's values the int8 model clips (from the diagnosis)."""
    base = s.steps[0]
    sources = {c.source: c for c in s.sources}
    kept = len(chosen.kept)
    kept_share = size_kept(s, chosen.size_bytes)
    size = (f"{human_size(chosen.size_bytes)} ({kept_share:.0%} of the mode's size reduction "
            "kept)" if kept_share >= 0 else f"{human_size(chosen.size_bytes)}, larger than the "
            f"float model's {human_size(s.float_size_bytes)} (a float op's weights are stored "
            "in float32)")  # fmt: skip
    if s.met_budget:
        text = [f"The smallest model found within the budget ({_budget(s)}) keeps {kept} op(s) "
                f"at a higher precision and reaches {_value(s, chosen.metric)} at {size}; the "
                f"mode alone gives {_value(s, base.metric)}."]  # fmt: skip
    else:
        text = [f"No model the search built meets the budget ({_budget(s)}). The best reached "
                f"{_value(s, chosen.metric)} keeping {kept} op(s) at a higher precision, at "
                f"{size}; the mode alone gives {_value(s, base.metric)}."]  # fmt: skip
    if stopped:
        text.append(f"The search stopped early: {stopped} (--max-evaluations).")
    alone = _dominant(s, base, sources)
    if alone:
        text.append(alone)
    types = [c for c in s.sources if c.is_op_type]
    if types:
        best_type = min(types, key=lambda c: c.drop)
        text.append(f"Keeping every {best_type.source} in float gives "
                    f"{_value(s, best_type.metric)} at "
                    f"{human_size(best_type.size_bytes)}.")  # fmt: skip
    single = [r for r in s.by_sensitivity if r.precision == "float"]
    if single:
        top = min(single, key=lambda r: r.drop)
        adding = sum(1 for r in s.by_error if r.error_added_db >= 1.0)
        text.append(f"No single op is the cause: the best one alone ({top.op.op_type} "
                    f"{short_tensor_name(top.op.tensor)}) only moves it to "
                    f"{_value(s, top.metric)}, and "
                    f"{adding} ops each add ≥ 1 dB of error."
                    if not within(top.drop, s.max_drop) else "")  # fmt: skip
    for name, share in (clipped_inputs or {}).items():
        if share >= CLIPPED_NOTE:
            text.append(f"The int8 model clips {share:.2%} of the values of input {name}: its "
                        "range was calibrated below the data's (litert-quantizer averages each "
                        "calibration sample's range, so values past a typical sample's "
                        "extremes clip).")  # fmt: skip
    text.append(_remedy(s, sources))
    return " ".join(t for t in text if t)


def _dominant(s: Suggestion, base: SearchStep, sources: dict[str, SourceCheck]) -> str:
    """Each of weights, activations and the model's boundaries measured alone."""
    parts = []
    w, a, io = sources.get("weights"), sources.get("activations"), sources.get("inputs and outputs")
    if w is not None:
        share = "most of" if w.drop >= DOMINANT * base.drop else "part of"
        parts.append(f"with only the weights int8 (every activation float) it reaches "
                     f"{_value(s, w.metric)}: the weights cause {share} the error")  # fmt: skip
    if a is not None:
        parts.append(f"with int16 activations instead of int8 it reaches {_value(s, a.metric)}")
    if io is not None:
        parts.append(f"with every op float and only the inputs and outputs int8 it reaches "
                     f"{_value(s, io.metric)}")  # fmt: skip
    return ("Each source alone: " + "; ".join(parts) + ".") if parts else ""


def _remedy(s: Suggestion, sources: dict[str, SourceCheck]) -> str:
    """What would be needed, from which sources fail the budget on their own."""
    w, a, io = sources.get("weights"), sources.get("activations"), sources.get("inputs and outputs")
    needs = []
    if w is not None and not within(w.drop, s.max_drop):
        needs.append("int8 weights alone miss the budget, so the model needs wider weights "
                     "where it is sensitive (float weights in the layers the search kept) or "
                     "quantization-aware training so the weights tolerate the int8 "
                     "grid")  # fmt: skip
    if a is not None and within(a.drop, s.max_drop):
        needs.append("int16 activations meet it (mode int16x8), at the cost of int16 kernels")
    if io is not None and not within(io.drop, s.max_drop):
        needs.append("the int8 inputs and outputs alone miss it: keep them float, or feed the "
                     "model data whose range fits int8 (check the calibration set covers the "
                     "inputs' range)")  # fmt: skip
    if s.accuracy:
        needs.append("more labelled samples would tighten the accuracy intervals")
    if not needs:
        needs.append("a looser budget, or quantization-aware training")
    return "What would be needed: " + "; ".join(needs) + "."
