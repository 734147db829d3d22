"""diff(): compare two saved reports model by model and mark the regressions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quantlens.gates import METRICS, report_models

#: metric -> higher is better; values in [0, 1] are compared in absolute points.
DIFF_METRICS: dict[str, bool] = {
    "accuracy": True, "top5_accuracy": True, "macro_f1": True, "r2": True,
    "task_mae": False, "task_rmse": False, "sqnr_db": True, "top1_agreement": True,
    "p50_ms": False, "p99_ms": False, "size_bytes": False, "peak_rss_mb": False,
}  # fmt: skip
#: Metrics in [0, 1], whose changes are absolute (in points).
ABSOLUTE_METRICS = {"accuracy", "top5_accuracy", "macro_f1", "r2", "top1_agreement"}
_LATENCY = {"p50_ms", "p99_ms"}


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
        if self.metric in ABSOLUTE_METRICS or self.metric == "sqnr_db":
            return self.new - self.old
        return (self.new - self.old) / self.old if self.old else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "old": self.old, "new": self.new,
                "change": self.change, "regression": self.regression}  # fmt: skip


def diff_reports(
    old: Mapping[str, Any], new: Mapping[str, Any], *, threshold: float = 0.01,
    latency_threshold: float = 0.10, sqnr_threshold_db: float = 1.0,
) -> tuple[list[DiffRow], list[str], list[str]]:  # fmt: skip
    """Compare the models both reports have.

    A regression is: a [0, 1] metric (accuracy, F1, R², top-1 agreement) down by more than
    ``threshold`` points; SQNR down by more than ``sqnr_threshold_db``; MAE/RMSE, size or
    memory up by more than ``threshold`` relative; p50/p99 latency up by more than
    ``latency_threshold`` relative.

    Returns:
        The rows, and the model names only in the old and only in the new report.
    """
    old_models, old_ref, _ = report_models(old)
    new_models, new_ref, _ = report_models(new)
    old_by = {m["name"]: m for m in old_models}
    new_by = {m["name"]: m for m in new_models}
    rows = []
    for name, n in new_by.items():
        o = old_by.get(name)
        if o is None:
            continue
        for metric, higher_better in DIFF_METRICS.items():
            a, b = METRICS[metric][1](o, old_ref), METRICS[metric][1](n, new_ref)
            if a is None or b is None:
                continue
            worse = b - a if not higher_better else a - b  # > 0: got worse
            if metric in ABSOLUTE_METRICS:
                regression = worse > threshold
            elif metric == "sqnr_db":
                regression = worse > sqnr_threshold_db
            else:
                limit = latency_threshold if metric in _LATENCY else threshold
                regression = a > 0 and worse / a > limit
            rows.append(DiffRow(name, metric, a, b, regression))
    only_old = [n for n in old_by if n not in new_by]
    only_new = [n for n in new_by if n not in old_by]
    return rows, only_old, only_new
