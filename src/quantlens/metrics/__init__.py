"""Streaming, mergeable metric accumulators: ``update`` per batch, ``merge``, ``result``."""

from quantlens.metrics.fidelity import FIDELITY_METRICS, FidelityState
from quantlens.metrics.task import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    ClassificationState,
    RegressionState,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "FIDELITY_METRICS",
    "REGRESSION_METRICS",
    "ClassificationState",
    "FidelityState",
    "RegressionState",
]
