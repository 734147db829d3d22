"""The drop rule: how much worse a quantized model is than the float one, in the units a
budget (``--max-drop``) is given in, and whether a drop is within it. compare() ranks and
recommends by it; the keep-in-float search stops by it."""

from __future__ import annotations

import math

from quantlens.results import ModelResult


def relative_rmse(sqnr_db: float) -> float:
    """The error's RMS over the signal's, 10^(−SQNR/20): 0 for identical outputs."""
    return 0.0 if math.isinf(sqnr_db) and sqnr_db > 0 else 10 ** (-sqnr_db / 20)


def drop(model: ModelResult, reference: ModelResult, task: str) -> float | None:
    """How much worse the model is, in the units ``max_drop`` is given in.

    classification: accuracy points lost (0.01 = one point); regression: relative increase
    of MAE; no labels: 1 − top-1 agreement for class outputs, else relative RMSE
    (10^(−SQNR/20)).
    """
    if task == "classification" and model.task_metrics and reference.task_metrics:
        return reference.task_metrics["accuracy"] - model.task_metrics["accuracy"]
    if task == "regression" and model.task_metrics and reference.task_metrics:
        ref_mae = reference.task_metrics["mae"]
        return (model.task_metrics["mae"] - ref_mae) / ref_mae if ref_mae > 0 else 0.0
    if model.fidelity is None:
        return 0.0 if model is reference else None
    if model.class_scores:
        return 1.0 - model.fidelity["top1_agreement"]
    return relative_rmse(model.fidelity["sqnr_db"])


def within(drop_value: float, max_drop: float) -> bool:
    """``drop_value ≤ max_drop``, forgiving the float error of 1.0 − 0.99 and the like."""
    return drop_value <= max_drop + 1e-9
