"""Gates: ``METRIC OP NUMBER`` conditions that fail a run (exit 1) when a model breaks them.

A gate applies to every candidate (every model but the reference, or the first model of a
benchmark), or to one model named as ``MODEL:METRIC>NUMBER``. The metric names are those of
:data:`quantlens.metric_registry.METRICS`; an unknown name is an error, and so is a known one
the report lacks.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quantlens.errors import ConfigError, QuantlensError
from quantlens.metric_registry import METRICS, spell
from quantlens.results import BenchResult, EvaluationResult, KernelCheck, report_from_dict

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_GATE = re.compile(
    r"^\s*(?:(?P<model>[^:<>=!]+):)?(?P<metric>[A-Za-z0-9_]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Gate:
    """A parsed ``[MODEL:]METRIC OP NUMBER``: the run fails when the condition holds."""

    text: str
    metric: str
    op: str
    threshold: float
    model: str | None = None

    def violated_by(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)


def parse_gate(text: str) -> Gate:
    """Parse one gate expression.

    Raises:
        ConfigError: the expression is malformed or names an unknown metric.
    """
    m = _GATE.match(text)
    if m is None:
        raise ConfigError(
            f"cannot read gate '{text}': write METRIC OP NUMBER, e.g. accuracy_drop>0.01 or "
            "int8:p50_ms>5 (OP is one of > >= < <= == !=)"
        )
    metric = m["metric"]
    if metric not in METRICS:
        raise ConfigError(
            f"unknown metric '{metric}' in gate '{text}'; known: {', '.join(sorted(METRICS))}"
        )
    value = float(m["value"])
    if not math.isfinite(value):
        raise ConfigError(f"gate '{text}' needs a finite number")
    model = m["model"].strip() if m["model"] else None
    return Gate(text.strip(), metric, m["op"], value, model)


@dataclass(frozen=True)
class GateOutcome:
    """One gate checked against one model."""

    gate: str
    model: str
    value: float
    failed: bool
    metric: str = ""  # the registry's name of what the gate reads

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "model": self.model, "value": self.value,
                "failed": self.failed, "metric": self.metric}  # fmt: skip


Report = EvaluationResult | BenchResult | KernelCheck


def check_gates(gates: Sequence[Gate], report: Report | Mapping[str, Any]) -> list[GateOutcome]:
    """Check every gate against the models of a report (a result, or its JSON as a dict,
    which is read through ``from_dict`` first).

    Raises:
        ConfigError: the report is not a quantlens report, or a gate names a model it lacks,
            or a metric it has no value for.
    """
    entries, reference, candidates = report_models(report)
    outcomes = []
    names = [name for name, _ in entries]
    for g in gates:
        if g.model is not None and g.model not in names:
            raise ConfigError(f"gate '{g.text}': no model '{g.model}' in the report "
                              f"(models: {', '.join(names)})")  # fmt: skip
        targets = [(n, m) for n, m in entries if n == g.model] if g.model else candidates
        for name, m in targets:
            value = METRICS[g.metric].read(m, reference)
            if value is None:
                raise ConfigError(f"gate '{g.text}': the report has no {g.metric} for "
                                  f"'{name}'")  # fmt: skip
            outcomes.append(GateOutcome(g.text, name, value, g.violated_by(value), g.metric))
    return outcomes


def describe_failure(o: GateOutcome, gates: Sequence[Gate]) -> str:
    """'model broke gate: value (by how much)'."""
    g = next(g for g in gates if g.text == o.gate)
    by = abs(o.value - g.threshold)
    return (f"{o.model} broke gate {g.text}: {g.metric} = {spell(g.metric, o.value)} "
            f"(by {spell(g.metric, by)})")  # fmt: skip


def report_models(
    report: Report | Mapping[str, Any],
) -> tuple[list[tuple[str, Any]], Any, list[tuple[str, Any]]]:
    """A report's models by name, its reference, and the candidates gates apply to.

    Benchmark entries are named ``model@threadsxbatch`` when several configurations ran; the
    first entry is their reference.

    Raises:
        ConfigError: a dict that is not a quantlens report.
    """
    if isinstance(report, Mapping):
        try:
            report = report_from_dict(report)
        except QuantlensError as exc:
            raise ConfigError(str(exc)) from None
    if isinstance(report, KernelCheck):  # gates read the kernel paths against the reference
        report = report.kernels
    if isinstance(report, BenchResult):
        entries = list(report.results)
        several = len({(e.threads, e.batch_size) for e in entries}) > 1
        named = [(f"{e.name}@{e.threads}x{e.batch_size}" if several else e.name, e)
                 for e in entries]  # fmt: skip
        return named, entries[0], [(n, e) for n, e in named if e.ratio_to_first is not None]
    models = list(report.models)
    ref = next((m for m in models if m.role == "reference"), models[0])
    return [(m.name, m) for m in models], ref, [(m.name, m) for m in models if m is not ref]
