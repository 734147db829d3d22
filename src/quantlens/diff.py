"""diff(): compare two saved reports model by model and mark the regressions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quantlens.gates import Report, report_models
from quantlens.metric_registry import METRICS


@dataclass(frozen=True)
class DiffRow:
    """One metric of one model in both reports."""

    model: str
    metric: str
    old: float
    new: float
    regression: bool

    @property
    def change(self) -> float:
        """Absolute change for [0, 1] metrics and SQNR; relative otherwise."""
        if METRICS[self.metric].change_kind in ("points", "db"):
            return self.new - self.old
        return (self.new - self.old) / self.old if self.old else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "old": self.old, "new": self.new,
                "change": self.change, "regression": self.regression}  # fmt: skip


def diff_reports(
    old: Report | Mapping[str, Any], new: Report | Mapping[str, Any], *, threshold: float = 0.01,
    latency_threshold: float = 0.10, sqnr_threshold_db: float = 1.0,
) -> tuple[list[DiffRow], list[str], list[str]]:  # fmt: skip
    """Compare the models both reports have (results, or their JSON as dicts, read through
    ``from_dict``).

    A regression is: a [0, 1] metric (accuracy, F1, R², top-1 agreement) down by more than
    ``threshold`` points; SQNR down by more than ``sqnr_threshold_db``; MAE/RMSE, size or
    memory up by more than ``threshold`` relative; p50/p99 latency up by more than
    ``latency_threshold`` relative.

    Returns:
        The rows, and the model names only in the old and only in the new report.
    """
    old_models, old_ref, _ = report_models(old)
    new_models, new_ref, _ = report_models(new)
    old_by = dict(old_models)
    new_by = dict(new_models)
    rows = []
    for name, n in new_by.items():
        o = old_by.get(name)
        if o is None:
            continue
        for spec in (s for s in METRICS.values() if s.diffed):
            metric = spec.name
            a, b = spec.read(o, old_ref), spec.read(n, new_ref)
            if a is None or b is None:
                continue
            worse = a - b if spec.higher_is_better else b - a  # > 0: got worse
            if spec.change_kind == "points":
                regression = worse > threshold
            elif spec.change_kind == "db":
                regression = worse > sqnr_threshold_db
            else:
                limit = latency_threshold if spec.kind == "latency" else threshold
                regression = a > 0 and worse / a > limit
            rows.append(DiffRow(name, metric, a, b, regression))
    only_old = [n for n in old_by if n not in new_by]
    only_new = [n for n in new_by if n not in old_by]
    return rows, only_old, only_new
