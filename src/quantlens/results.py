"""Result types: frozen dataclasses with ``to_dict``/``from_dict`` and a schema version.

JSON has no infinity, so non-finite numbers are written as the strings ``"inf"``, ``"-inf"``
and ``"nan"`` (an SQNR of identical outputs is ``"inf"``) and read back as floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quantlens.errors import QuantlensError

EVALUATION_SCHEMA = "quantlens.evaluation/1"


def encode_number(x: float) -> float | str:
    """A float for JSON: finite as is, non-finite as 'inf', '-inf' or 'nan'."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def decode_number(x: float | str) -> float:
    """The inverse of :func:`encode_number`."""
    return float(x)


def _encode(metrics: Mapping[str, float] | None) -> dict[str, float | str] | None:
    return None if metrics is None else {k: encode_number(v) for k, v in metrics.items()}


def _decode(metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
    return None if metrics is None else {k: decode_number(v) for k, v in metrics.items()}


@dataclass(frozen=True)
class OutputFidelity:
    """Fidelity of one model output to the reference's matching output."""

    name: str
    fidelity: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fidelity": _encode(self.fidelity)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputFidelity:
        return cls(d["name"], _decode(d["fidelity"]) or {})


@dataclass(frozen=True)
class ModelResult:
    """One model's row: task metrics against labels and, for a candidate, fidelity."""

    name: str
    path: str
    format: str
    role: str  # "reference" | "candidate"
    size_bytes: int
    task_metrics: dict[str, float] | None = None
    fidelity: dict[str, float] | None = None  # first output; candidates only
    outputs: tuple[OutputFidelity, ...] = ()  # every output, when there are several

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "role": self.role,
            "size_bytes": self.size_bytes,
        }
        if self.task_metrics is not None:
            d["task_metrics"] = _encode(self.task_metrics)
        if self.fidelity is not None:
            d["fidelity"] = _encode(self.fidelity)
        if self.outputs:
            d["outputs"] = [o.to_dict() for o in self.outputs]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelResult:
        return cls(
            name=d["name"],
            path=d["path"],
            format=d["format"],
            role=d["role"],
            size_bytes=int(d["size_bytes"]),
            task_metrics=_decode(d.get("task_metrics")),
            fidelity=_decode(d.get("fidelity")),
            outputs=tuple(OutputFidelity.from_dict(o) for o in d.get("outputs", ())),
        )


@dataclass(frozen=True)
class DatasetSummary:
    """What the models ran on."""

    source: str
    samples: int
    task: str  # "classification" | "regression" | "none"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "samples": self.samples, "task": self.task}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetSummary:
        return cls(d["source"], int(d["samples"]), d["task"])


@dataclass(frozen=True)
class EvaluationResult:
    """The outcome of :func:`quantlens.evaluate`: the reference first, then each candidate."""

    dataset: DatasetSummary
    reference: str
    models: tuple[ModelResult, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    schema: str = EVALUATION_SCHEMA

    def model(self, name: str) -> ModelResult:
        """The result of the model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "dataset": self.dataset.to_dict(),
            "reference": self.reference,
            "settings": dict(self.settings),
            "models": [m.to_dict() for m in self.models],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationResult:
        """Read a report written by :meth:`to_dict`.

        Raises:
            QuantlensError: the dictionary is not a quantlens evaluation report.
        """
        if d.get("schema") != EVALUATION_SCHEMA:
            raise QuantlensError(
                f"not a quantlens evaluation report (schema {d.get('schema')!r}, "
                f"expected {EVALUATION_SCHEMA!r})"
            )
        return cls(
            dataset=DatasetSummary.from_dict(d["dataset"]),
            reference=d["reference"],
            models=tuple(ModelResult.from_dict(m) for m in d["models"]),
            settings=dict(d.get("settings", {})),
        )
