"""Result types: frozen dataclasses with ``to_dict``/``from_dict`` and a schema version.

JSON has no infinity, so non-finite numbers are written as the strings ``"inf"``, ``"-inf"``
and ``"nan"`` (an SQNR of identical outputs is ``"inf"``) and read back as floats.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantlens.errors import QuantlensError

EVALUATION_SCHEMA = "quantlens.evaluation/1"
COMPARE_SCHEMA = "quantlens.compare/1"


def encode_number(x: float) -> float | str:
    """A float for JSON: finite as is, non-finite as 'inf', '-inf' or 'nan'."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def encode_tree(obj: Any) -> Any:
    """:func:`encode_number` applied to every float in nested dicts and lists."""
    if isinstance(obj, float):
        return encode_number(obj)
    if isinstance(obj, Mapping):
        return {k: encode_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [encode_tree(v) for v in obj]
    return obj


_NON_FINITE = {"inf", "-inf", "nan"}


def decode_tree(obj: Any) -> Any:
    """The inverse of :func:`encode_tree`: 'inf', '-inf' and 'nan' strings back to floats."""
    if isinstance(obj, str) and obj in _NON_FINITE:
        return float(obj)
    if isinstance(obj, Mapping):
        return {k: decode_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_tree(v) for v in obj]
    return obj


def decode_number(x: float | str) -> float:
    """The inverse of :func:`encode_number`."""
    return float(x)


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of a tensor: real = (q - zero_point) * scale.

    ``scale`` and ``zero_point`` have one entry per tensor, or one per channel along ``axis``.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}


def plain_name(tensor_name: str) -> str:
    """'serving_default_x:0' -> 'x': the name a user or a Keras model would use."""
    return tensor_name.split(":")[0].removeprefix("serving_default_")


def infer_batch_axis(shape: Sequence[int | None]) -> int | None:
    """The batch axis of a tensor of this signature shape (``None`` for a dimension that may
    vary): see :attr:`TensorSpec.batch_axis`."""
    if len(shape) == 0:
        return None
    if shape[0] is None or shape[0] == 1:
        return 0
    return next((i for i, d in enumerate(shape) if d is None), 0)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` holds ``None`` for a dimension that may vary."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quantization: QuantParams | None = None

    @functools.cached_property  # read for every input of every batch
    def batch_axis(self) -> int | None:
        """The axis samples are stacked on, read from the signature (None: not batched).

        Axis 0 when it may vary or is 1; otherwise the first axis that may vary (a
        recurrent state ``[layers, batch, units]``); a scalar has none (a sample rate).
        """
        return infer_batch_axis(self.shape)

    @functools.cached_property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The shape of one sample: the shape without its batch axis."""
        axis = self.batch_axis
        return self.shape if axis is None else self.shape[:axis] + self.shape[axis + 1 :]

    @property
    def declared_batch(self) -> int | None:
        """The batch size the signature fixes (None: the batch may vary, or there is none)."""
        axis = self.batch_axis
        return None if axis is None else self.shape[axis]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "batch_axis": self.batch_axis,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What a model is: format, size, I/O and, where the format tells, its ops and weights."""

    name: str
    path: str
    format: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_counts: dict[str, int] = field(default_factory=dict)
    weight_dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> number of elements
    activation_dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> tensor count

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "op_counts": dict(self.op_counts),
            "weight_dtypes": dict(self.weight_dtypes),
            "activation_dtypes": dict(self.activation_dtypes),
        }


@dataclass(frozen=True)
class OutputFidelity:
    """Fidelity of one model output to the reference's matching output."""

    name: str
    fidelity: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fidelity": encode_tree(self.fidelity)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputFidelity:
        return cls(d["name"], decode_tree(d["fidelity"]) or {})


EVALUATION_LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "init", "first")


#: A slowdown smaller than this share is not called slower: a float16 model that runs as
#: float32 can time 0.3% slower with a tight interval, and nobody should care.
SLOWER_MARGIN = 0.05


@dataclass(frozen=True)
class Performance:
    """A model's benchmark figures as evaluate and compare report them."""

    latency_ms: dict[str, float]  # p50 p90 p99 mean std init first
    throughput_sps: float
    peak_rss_mb: float | None
    size_gzip_bytes: int
    speedup: float | None  # baseline p50 / this model's p50 (None: timed apart, see below)
    warnings: tuple[str, ...] = ()
    samples_ms: tuple[float, ...] = ()  # the raw steady-state latencies (an even subset)
    speedup_ci95: tuple[float, float] | None = None  # from the paired block bootstrap
    speed_baseline: str | None = None  # the float runtime model speed-ups are against

    @property
    def significantly_slower(self) -> bool:
        """Slower than the baseline by more than SLOWER_MARGIN beyond the noise: the whole
        interval of the speed-up lies below 1 − SLOWER_MARGIN."""
        return self.speedup_ci95 is not None and self.speedup_ci95[1] < 1.0 - SLOWER_MARGIN

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_samples_ms": list(self.samples_ms),
            "latency_ms": encode_tree(self.latency_ms),
            "throughput_sps": self.throughput_sps,
            "peak_rss_mb": self.peak_rss_mb,
            "size_gzip_bytes": self.size_gzip_bytes,
            "speedup": None if self.speedup is None else encode_number(self.speedup),
            "speedup_ci95": None
            if self.speedup_ci95 is None
            else [encode_number(v) for v in self.speedup_ci95],
            "speed_baseline": self.speed_baseline,
            "bench_warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Performance | None:
        if "latency_ms" not in d:
            return None
        return cls(
            latency_ms=decode_tree(d["latency_ms"]) or {},
            throughput_sps=float(d["throughput_sps"]),
            peak_rss_mb=d.get("peak_rss_mb"),
            size_gzip_bytes=int(d["size_gzip_bytes"]),
            speedup=None if d.get("speedup") is None else decode_number(d["speedup"]),
            warnings=tuple(d.get("bench_warnings", ())),
            samples_ms=tuple(d.get("latency_samples_ms", ())),
            speedup_ci95=None
            if d.get("speedup_ci95") is None
            else (decode_number(d["speedup_ci95"][0]), decode_number(d["speedup_ci95"][1])),
            speed_baseline=d.get("speed_baseline"),
        )


@dataclass(frozen=True)
class BatchingDecision:
    """How a model runs its batches, and why (see :mod:`quantlens.models.batching`)."""

    mode: str  # "resize" | "chunks" | "per-sample"
    reason: str
    #: Largest difference between batched and one-at-a-time outputs, relative to the
    #: outputs' magnitude (None when not measured).
    max_relative_difference: float | None = None
    #: Samples per invoke in the run (the batch size when resized).
    samples_per_invoke: int | None = None

    @property
    def batch_dependent(self) -> bool:
        """The model leaves its batch open, yet its outputs for a sample depend on the other
        samples of a batch (so it runs one sample at a time)."""
        return self.mode == "per-sample" and (self.max_relative_difference or 0.0) > 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "batching": self.mode,
            "reason": self.reason,
            "max_relative_difference": None
            if self.max_relative_difference is None
            else encode_number(self.max_relative_difference),
            "samples_per_invoke": self.samples_per_invoke,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchingDecision:
        diff = d.get("max_relative_difference")
        return cls(d["batching"], d["reason"], None if diff is None else decode_number(diff),
                   d.get("samples_per_invoke"))  # fmt: skip


@dataclass(frozen=True)
class ReportWarning:
    """Something about the run a person must know before trusting it (JSON ``warnings``).

    Codes: ``input_saturation``, ``reference_quantized``, ``batch_dependent``,
    ``not_quantized``, ``batch_size_overridden``.
    """

    code: str
    model: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "model": self.model, "message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportWarning:
        return cls(str(d["code"]), d.get("model"), str(d["message"]))


#: A p-value below this says a difference is not noise.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class PairedStats:
    """A candidate against the reference on the same samples: the change of the task metric
    (candidate − reference: accuracy as a fraction, or MAE) with its 95% bootstrap interval,
    and the p-value of the paired test (exact McNemar on the discordant pairs for accuracy,
    Wilcoxon signed-rank on per-sample absolute errors for regression)."""

    task: str  # "classification" | "regression"
    samples: int
    delta: float
    ci95_low: float
    ci95_high: float
    p_value: float
    resamples: int
    correct_to_wrong: int | None = None  # classification: the discordant pairs
    wrong_to_correct: int | None = None

    @property
    def significantly_worse(self) -> bool:
        """Worse than the reference (less accurate, or a larger MAE), beyond the noise."""
        worse = self.delta < 0 if self.task == "classification" else self.delta > 0
        return worse and self.p_value < SIGNIFICANCE

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"samples": self.samples}
        if self.task == "classification":
            d["accuracy_delta"] = encode_number(self.delta)
        else:
            d["mae_delta"] = encode_number(self.delta)
        d.update(ci95_low=encode_number(self.ci95_low), ci95_high=encode_number(self.ci95_high),
                 resamples=self.resamples)  # fmt: skip
        if self.task == "classification":
            d["mcnemar_p"] = encode_number(self.p_value)
            d["flips"] = {"correct_to_wrong": self.correct_to_wrong,
                          "wrong_to_correct": self.wrong_to_correct}  # fmt: skip
        else:
            d["wilcoxon_p"] = encode_number(self.p_value)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedStats:
        if "accuracy_delta" in d:
            flips = d.get("flips") or {}
            return cls("classification", int(d["samples"]), decode_number(d["accuracy_delta"]),
                       decode_number(d["ci95_low"]), decode_number(d["ci95_high"]),
                       decode_number(d["mcnemar_p"]), int(d.get("resamples", 0)),
                       flips.get("correct_to_wrong"), flips.get("wrong_to_correct"))  # fmt: skip
        return cls("regression", int(d["samples"]), decode_number(d["mae_delta"]),
                   decode_number(d["ci95_low"]), decode_number(d["ci95_high"]),
                   decode_number(d["wilcoxon_p"]), int(d.get("resamples", 0)))  # fmt: skip


@dataclass(frozen=True)
class VariantQuantization:
    """How compare() made a variant: its mode, the quantizer's settings, and how it changes
    the model's I/O contract ("float32 -> int8"; None: it keeps float I/O)."""

    mode: str
    settings: dict[str, Any] = field(default_factory=dict)
    io_change: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "settings": encode_tree(self.settings),
                "io_change": self.io_change}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariantQuantization:
        return cls(str(d["mode"]), dict(decode_tree(d.get("settings") or {})), d.get("io_change"))


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
    performance: Performance | None = None  # when the run was benchmarked
    paired: PairedStats | None = None  # candidates with labels: paired statistics
    quantization: VariantQuantization | None = None  # compare's variants
    nonfinite_outputs: int = 0  # samples whose outputs held NaN or inf (left out of metrics)
    zero_outputs: int = 0  # samples whose outputs were all zero where the reference's were not
    batching: BatchingDecision | None = None  # how its batches ran, and why
    #: Class outputs (first output), candidates only: KL mean ± SE and percentiles, top-1
    #: agreement ± SE, Δp of the labelled class (metrics.distribution).
    distribution: dict[str, float] | None = None

    @property
    def class_scores(self) -> bool:
        """Its first output was read as class scores (top-1 agreement measured); a
        candidate's only."""
        return self.fidelity is not None and "top1_agreement" in self.fidelity

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "role": self.role,
            "size_bytes": self.size_bytes,
            "nonfinite_outputs": self.nonfinite_outputs,
            "zero_outputs": self.zero_outputs,
        }
        if self.task_metrics is not None:
            d["task_metrics"] = encode_tree(self.task_metrics)
        if self.fidelity is not None:
            d["fidelity"] = encode_tree(self.fidelity)
        if self.distribution is not None:
            d["distribution"] = encode_tree(self.distribution)
        if self.outputs:
            d["outputs"] = [o.to_dict() for o in self.outputs]
        if self.performance is not None:
            d.update(self.performance.to_dict())
        if self.paired is not None:
            d["paired"] = self.paired.to_dict()
        if self.quantization is not None:
            d["quantization"] = self.quantization.to_dict()
        if self.batching is not None:
            d["batching"] = self.batching.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelResult:
        return cls(
            name=d["name"],
            path=d["path"],
            format=d["format"],
            role=d["role"],
            size_bytes=int(d["size_bytes"]),
            task_metrics=decode_tree(d.get("task_metrics")),
            fidelity=decode_tree(d.get("fidelity")),
            outputs=tuple(OutputFidelity.from_dict(o) for o in d.get("outputs", ())),
            performance=Performance.from_dict(d),
            paired=PairedStats.from_dict(d["paired"]) if d.get("paired") else None,
            quantization=(
                VariantQuantization.from_dict(d["quantization"]) if d.get("quantization") else None
            ),
            nonfinite_outputs=int(d.get("nonfinite_outputs", 0)),
            zero_outputs=int(d.get("zero_outputs", 0)),
            batching=BatchingDecision.from_dict(d["batching"]) if d.get("batching") else None,
            distribution=decode_tree(d.get("distribution")),
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
class StoredReference:
    """Reference outputs kept in a file (``evaluate --save-reference-outputs``) and what they
    are the outputs of: the file a run wrote (``role`` "saved") or read in place of running
    the reference (``role`` "loaded")."""

    path: str  # the file of stored outputs
    role: str  # "saved" | "loaded"
    model_path: str  # the reference model the outputs came from, where it was when saved
    model_sha256: str | None  # its SHA-256 (of every file, for a directory); None: in memory
    data_source: str
    data_digest: str  # SHA-256 over the per-sample digests of the inputs as bound, in order
    samples: int
    saved_by: str  # "quantlens <version>"
    saved_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "role": self.role,
            "model_path": self.model_path,
            "model_sha256": self.model_sha256,
            "data_source": self.data_source,
            "data_digest": self.data_digest,
            "samples": self.samples,
            "saved_by": self.saved_by,
            "saved_at": self.saved_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoredReference:
        sha = d["model_sha256"]
        return cls(str(d["path"]), str(d["role"]), str(d["model_path"]),
                   None if sha is None else str(sha), str(d["data_source"]),
                   str(d["data_digest"]), int(d["samples"]), str(d["saved_by"]),
                   str(d["saved_at"]))  # fmt: skip


@dataclass(frozen=True)
class RankedVariant:
    """A variant in the order compare() weighs them, with its drop against the reference
    (in ``max_drop``'s units; None: not measurable) and whether that is within the budget."""

    model: str
    drop: float | None
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "drop": None if self.drop is None else encode_number(
            self.drop), "within_budget": self.within_budget}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankedVariant:
        drop = d.get("drop")
        return cls(d["model"], None if drop is None else decode_number(drop),
                   bool(d["within_budget"]))  # fmt: skip


@dataclass(frozen=True)
class Recommendation:
    """compare()'s decision: the variant to ship and why, and its verdict on every variant
    (significantly worse, slower than float, changing the I/O contract; the ranking)."""

    model: str
    reason: str
    max_drop: float
    prefer: str
    allow_io_change: bool
    float_baseline: str
    significantly_worse: tuple[str, ...] = ()
    slower_than_float: tuple[str, ...] = ()
    io_change: tuple[str, ...] = ()
    ranking: tuple[RankedVariant, ...] = ()
    note: str | None = None  # e.g. calibrated on the evaluation data

    def verdict(self, name: str) -> RankedVariant | None:
        """The ranking's entry for a variant."""
        return next((r for r in self.ranking if r.model == name), None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "reason": self.reason, "max_drop": self.max_drop,
            "prefer": self.prefer, "allow_io_change": self.allow_io_change,
            "float_baseline": self.float_baseline,
            "significantly_worse": list(self.significantly_worse),
            "slower_than_float": list(self.slower_than_float), "io_change": list(self.io_change),
            "ranking": [r.to_dict() for r in self.ranking],
        }  # fmt: skip
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recommendation:
        return cls(
            d["model"], d["reason"], float(d["max_drop"]), d.get("prefer", "size"),
            bool(d.get("allow_io_change", False)), d.get("float_baseline", ""),
            tuple(d.get("significantly_worse", ())), tuple(d.get("slower_than_float", ())),
            tuple(d.get("io_change", ())),
            tuple(RankedVariant.from_dict(r) for r in d.get("ranking", ())), d.get("note"),
        )  # fmt: skip


@dataclass(frozen=True)
class EvaluationResult:
    """The outcome of :func:`quantlens.evaluate`: the reference first, then each candidate."""

    dataset: DatasetSummary
    reference: str
    models: tuple[ModelResult, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    recommendation: Recommendation | None = None  # compare's decision
    warnings: tuple[ReportWarning, ...] = ()
    schema: str = EVALUATION_SCHEMA
    #: The reference's outputs stored to a file, or read from one instead of running it.
    reference_outputs: StoredReference | None = None

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
            "warnings": [w.to_dict() for w in self.warnings],
            **({"recommendation": self.recommendation.to_dict()} if self.recommendation else {}),
            **(
                {"reference_outputs": self.reference_outputs.to_dict()}
                if self.reference_outputs
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationResult:
        """Read a report written by :meth:`to_dict`.

        Raises:
            QuantlensError: the dictionary is not a quantlens evaluation report.
        """
        if d.get("schema") not in (EVALUATION_SCHEMA, COMPARE_SCHEMA):
            raise QuantlensError(
                f"not a quantlens evaluation report (schema {d.get('schema')!r}, "
                f"expected {EVALUATION_SCHEMA!r} or {COMPARE_SCHEMA!r})"
            )
        return cls(
            dataset=DatasetSummary.from_dict(d["dataset"]),
            reference=d["reference"],
            models=tuple(ModelResult.from_dict(m) for m in d["models"]),
            settings=dict(d.get("settings", {})),
            recommendation=(
                Recommendation.from_dict(d["recommendation"]) if d.get("recommendation") else None
            ),
            warnings=tuple(ReportWarning.from_dict(w) for w in d.get("warnings", ())),
            schema=d["schema"],
            reference_outputs=(
                StoredReference.from_dict(d["reference_outputs"])
                if d.get("reference_outputs")
                else None
            ),
        )


BENCH_SCHEMA = "quantlens.bench/1"


@dataclass(frozen=True)
class BenchEntry:
    """One model under one configuration (threads, batch size)."""

    name: str
    path: str
    format: str
    threads: int | None  # None: the runtime's default
    batch_size: int
    latency_ms: dict[str, float]  # p50 p90 p95 p99 mean std min max cv, init and first
    samples_ms: tuple[float, ...]
    throughput_sps: float
    peak_rss_mb: float | None  # None when the memory probe failed (see warnings)
    size_bytes: int
    size_gzip_bytes: int
    warnings: tuple[str, ...] = ()
    ratio_to_first: dict[str, float] | None = None  # p50 ratio to the group's first, with CI
    profile: dict[str, Any] | None = None  # ONNX: time by node and op type (--profile)
    timed_runs: int = 0  # rounds timed (samples_ms keeps an evenly spread subset of them)
    ratio_baseline: str | None = None  # the model ratio_to_first is against

    def __post_init__(self) -> None:
        if not self.timed_runs:  # every round was kept
            object.__setattr__(self, "timed_runs", len(self.samples_ms))

    @property
    def runs(self) -> int:
        return self.timed_runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "format": self.format,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "runs": self.runs,
            "latency_ms": encode_tree(self.latency_ms),
            "samples_ms": list(self.samples_ms),
            "throughput_sps": self.throughput_sps,
            "peak_rss_mb": self.peak_rss_mb,
            "size_bytes": self.size_bytes,
            "size_gzip_bytes": self.size_gzip_bytes,
            "warnings": list(self.warnings),
            "ratio_to_first": encode_tree(self.ratio_to_first),
            "ratio_baseline": self.ratio_baseline,
            **({"profile": encode_tree(self.profile)} if self.profile else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchEntry:
        return cls(
            name=d["name"],
            path=d["path"],
            format=d["format"],
            threads=d["threads"],
            batch_size=int(d["batch_size"]),
            latency_ms=decode_tree(d["latency_ms"]) or {},
            samples_ms=tuple(d["samples_ms"]),
            throughput_sps=float(d["throughput_sps"]),
            peak_rss_mb=d["peak_rss_mb"],
            size_bytes=int(d["size_bytes"]),
            size_gzip_bytes=int(d["size_gzip_bytes"]),
            warnings=tuple(d.get("warnings", ())),
            ratio_to_first=decode_tree(d.get("ratio_to_first")),
            profile=d.get("profile"),
            timed_runs=int(d.get("runs", 0)),
            ratio_baseline=d.get("ratio_baseline"),
        )


@dataclass(frozen=True)
class BenchResult:
    """The outcome of :func:`quantlens.benchmark`: one entry per model and configuration."""

    results: tuple[BenchEntry, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    schema: str = BENCH_SCHEMA

    def entry(
        self, name: str, threads: int | None = None, batch_size: int | None = None
    ) -> BenchEntry:
        """The entry of model ``name`` (under the given configuration, when several ran)."""
        for e in self.results:
            if (
                e.name == name
                and threads in (None, e.threads)
                and batch_size in (None, e.batch_size)
            ):
                return e
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "settings": dict(self.settings),
            "results": [e.to_dict() for e in self.results],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchResult:
        if d.get("schema") != BENCH_SCHEMA:
            raise QuantlensError(
                f"not a quantlens bench report (schema {d.get('schema')!r}, "
                f"expected {BENCH_SCHEMA!r})"
            )
        return cls(
            tuple(BenchEntry.from_dict(e) for e in d["results"]), dict(d.get("settings", {}))
        )


QUANTIZE_SCHEMA = "quantlens.quantize/1"


@dataclass(frozen=True)
class QuantizedVariant:
    """One .tflite written by :func:`quantlens.quantize`."""

    mode: str
    settings: dict[str, Any]  # the exact converter or recipe settings
    path: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "settings": self.settings,
            "path": self.path,
            "size_bytes": self.size_bytes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizedVariant:
        return cls(d["mode"], dict(d["settings"]), d["path"], int(d["size_bytes"]))


@dataclass(frozen=True)
class FailedMode:
    """A mode that could not be made, or made a file that is not quantized, and why."""

    mode: str
    reason: str
    code: str = "mode_failed"  # or "not_quantized": the file was written but is not quantized

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "code": self.code}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FailedMode:
        return cls(str(d["mode"]), str(d["reason"]), str(d.get("code", "mode_failed")))


@dataclass(frozen=True)
class QuantizeResult:
    """The manifest of a quantize run: source, calibration, every variant written, and every
    mode that could not be made."""

    source: str
    calibration_source: str | None
    calibration_samples: int
    variants: tuple[QuantizedVariant, ...]
    failed: tuple[FailedMode, ...] = ()
    schema: str = QUANTIZE_SCHEMA

    def variant(self, mode: str) -> QuantizedVariant:
        for v in self.variants:
            if v.mode == mode:
                return v
        raise KeyError(mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "source": self.source,
            "calibration": {"source": self.calibration_source, "samples": self.calibration_samples}
            if self.calibration_source
            else None,
            "variants": [v.to_dict() for v in self.variants],
            "failed": [f.to_dict() for f in self.failed],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizeResult:
        calib = d.get("calibration") or {}
        return cls(
            d["source"],
            calib.get("source"),
            int(calib.get("samples", 0)),
            tuple(QuantizedVariant.from_dict(v) for v in d["variants"]),
            tuple(FailedMode.from_dict(f) for f in d.get("failed", ())),
        )


def _maybe(x: Any) -> float | None:
    return None if x is None else decode_number(x)


#: A diagnosis tensor row's fields that are not its tensor-wide fidelity metrics.
_TENSOR_FIELDS = (
    "index", "name", "float_name", "dtype", "op_type", "channel_sqnr_median_db",
    "channel_sqnr_worst_db", "float_min", "float_max", "channel_range_ratio", "scale",
    "zero_point", "rmse_over_scale", "clipped_fraction", "debugger",
)  # fmt: skip


@dataclass(frozen=True)
class TensorRow:
    """One activation of the quantized model in a diagnosis, against the float model's tensor
    it was matched to: tensor-wide fidelity (``fidelity``: mse, sqnr_db, ... as the metric
    registry names them), SQNR per channel (median and worst), the float values' range and
    how much wider the widest channel is than the median one, and for an integer tensor its
    scale, zero point, error in units of the scale and the share of values that clipped;
    ``debugger``: the TFLite QuantizationDebugger's statistics for it, when it ran."""

    index: int
    name: str
    float_name: str
    dtype: str
    op_type: str  # of the op producing it ("INPUT" for a model input)
    fidelity: dict[str, float]
    channel_sqnr_median_db: float
    channel_sqnr_worst_db: float
    float_min: float
    float_max: float
    channel_range_ratio: float | None = None
    scale: float | None = None
    zero_point: int | None = None
    rmse_over_scale: float | None = None
    clipped_fraction: float | None = None
    debugger: dict[str, float] | None = None

    @property
    def sqnr_db(self) -> float:
        """The tensor-wide SQNR."""
        return self.fidelity["sqnr_db"]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _TENSOR_FIELDS[:5]}
        d.update(encode_tree(self.fidelity))
        for k in _TENSOR_FIELDS[5:]:
            v = getattr(self, k)
            if v is not None:
                d[k] = encode_tree(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorRow:
        fidelity = {k: decode_number(v) for k, v in d.items() if k not in _TENSOR_FIELDS}

        def num(key: str) -> float | None:
            return None if d.get(key) is None else decode_number(d[key])

        return cls(
            int(d["index"]), str(d["name"]), str(d["float_name"]), str(d["dtype"]),
            str(d["op_type"]), fidelity, decode_number(d["channel_sqnr_median_db"]),
            decode_number(d["channel_sqnr_worst_db"]), decode_number(d["float_min"]),
            decode_number(d["float_max"]), num("channel_range_ratio"), num("scale"),
            None if d.get("zero_point") is None else int(d["zero_point"]), num("rmse_over_scale"),
            num("clipped_fraction"),
            None if d.get("debugger") is None else {k: decode_number(v)
                                                    for k, v in d["debugger"].items()},
        )  # fmt: skip


@dataclass(frozen=True)
class OpRow:
    """One op of the quantized model in a diagnosis: its output tensor, the ops reading it,
    and how much error it adds (dB of per-channel median SQNR lost between its worst input
    and its output; None when its output could not be compared)."""

    index: int
    op_type: str
    output: str
    consumers: tuple[int, ...] = ()
    node: str | None = None  # the graph node's own name, where the format has one (ONNX)
    error_added_db: float | None = None
    output_sqnr_db: float | None = None
    output_channel_sqnr_median_db: float | None = None
    output_channel_sqnr_worst_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "op_type": self.op_type,
                             "output": self.output, "consumers": list(self.consumers),
                             "error_added_db": _encode_maybe(self.error_added_db)}  # fmt: skip
        if self.node:
            d["node"] = self.node
        for key in ("output_sqnr_db", "output_channel_sqnr_median_db",
                    "output_channel_sqnr_worst_db"):  # fmt: skip
            if getattr(self, key) is not None:
                d[key] = encode_number(getattr(self, key))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpRow:
        return cls(
            int(d["index"]), str(d["op_type"]), str(d["output"]),
            tuple(int(c) for c in d.get("consumers", ())), d.get("node"),
            _maybe(d.get("error_added_db")), _maybe(d.get("output_sqnr_db")),
            _maybe(d.get("output_channel_sqnr_median_db")),
            _maybe(d.get("output_channel_sqnr_worst_db")),
        )  # fmt: skip


@dataclass(frozen=True)
class WeightRow:
    """A quantized weight (dequantized) against the float weight it replaces."""

    index: int
    name: str
    op_index: int  # the op reading it (-1: none found)
    op_type: str
    dtype: str
    sqnr_db: float
    max_abs_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op_index": self.op_index,
                "op_type": self.op_type, "dtype": self.dtype,
                "sqnr_db": encode_number(self.sqnr_db),
                "max_abs_error": encode_number(self.max_abs_error)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WeightRow:
        return cls(int(d["index"]), str(d["name"]), int(d["op_index"]), str(d["op_type"]),
                   str(d["dtype"]), decode_number(d["sqnr_db"]),
                   decode_number(d["max_abs_error"]))  # fmt: skip


def _encode_maybe(x: float | None) -> float | str | None:
    return None if x is None else encode_number(x)


@dataclass(frozen=True)
class OpRef:
    """An op of the quantized model, by its index, type and the name the rebuilder knows."""

    op_index: int
    op_type: str
    tensor: str

    def to_dict(self) -> dict[str, Any]:
        return {"op_index": self.op_index, "op_type": self.op_type, "tensor": self.tensor}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpRef:
        return cls(int(d["op_index"]), str(d["op_type"]), str(d["tensor"]))


@dataclass(frozen=True)
class ErrorRank:
    """A repair candidate ranked by the error its op adds (dB) and by its worst weight's SQNR
    (None: the op has no quantized weight)."""

    op: OpRef
    error_added_db: float
    weight_sqnr_db: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.op.to_dict(), "error_added_db": encode_number(self.error_added_db),
                "weight_sqnr_db": _encode_maybe(self.weight_sqnr_db)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorRank:
        w = d.get("weight_sqnr_db")
        return cls(OpRef.from_dict(d), decode_number(d["error_added_db"]),
                   None if w is None else decode_number(w))  # fmt: skip


#: Per-op precisions of a repair (quantlens.quantize.precision): the label tables show, and
#: what it means.
PRECISIONS: dict[str, tuple[str, str]] = {
    "float": ("float", "weights and activations float"),
    "int16-act": ("int16 act", "int16 activations, int8 weights"),
    "int8-weights": ("float act", "int8 weights, float activations"),
}
#: A model input or output as a repair candidate is keyed ``"INPUT name"`` / ``"OUTPUT name"``.
BOUNDARY_KINDS = ("INPUT", "OUTPUT")


def boundary_key(kind: str, tensor: str) -> str:
    """The key a model input or output is kept under in a plan."""
    return f"{kind} {tensor}"


def boundary_of(key: str) -> tuple[str, str] | None:
    """(kind, tensor) of a boundary's key; None for an op's name."""
    kind, _, tensor = key.partition(" ")
    return (kind, tensor) if kind in BOUNDARY_KINDS and tensor else None


@dataclass(frozen=True)
class Placement:
    """An op (by the name its quantizer knows) or a model input/output (``"INPUT name"``)
    kept at another precision than the mode's (:mod:`quantlens.quantize.precision`)."""

    name: str
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "precision": self.precision}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        return cls(str(d["name"]), str(d["precision"]))


@dataclass(frozen=True)
class Sensitivity:
    """A candidate at one precision alone (``with_ops``: the ops reading its output, kept
    with it in float), and the budget metric, drop and size that bought."""

    op: OpRef
    precision: str
    with_ops: tuple[str, ...]
    metric: float
    drop: float
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.op.to_dict(), "precision": self.precision, "with": list(self.with_ops),
                "metric": encode_number(self.metric), "drop": encode_number(self.drop),
                "size_bytes": self.size_bytes}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sensitivity:
        return cls(OpRef.from_dict(d), str(d.get("precision", "float")),
                   tuple(d.get("with", ())), decode_number(d["metric"]),
                   decode_number(d["drop"]), int(d.get("size_bytes", 0)))  # fmt: skip


#: How a search step was chosen.
STEP_KINDS = {
    "start": "the mode as it quantizes",
    "greedy": "the next candidate by measured gain",
    "segment": "a contiguous run of ops from one end of the graph, found by bisection",
    "prune": "one op put back to the mode's precision",
}


@dataclass(frozen=True)
class SearchStep:
    """One measured plan of the search. ``accepted`` is False when it did not improve on the
    last accepted plan (a greedy or segment step: it did not lower the drop; a prune step:
    it left the budget), so the search went on from that plan. ``interval``: the metric's 95%
    interval (accuracy with labels: Wilson's)."""

    step: int
    kept: tuple[Placement, ...]
    path: str
    metric: float
    drop: float
    size_bytes: int
    accepted: bool = True
    p50_ms: float = math.nan
    how: str = "greedy"
    interval: tuple[float, float] | None = None

    @property
    def kept_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.kept)

    def to_dict(self) -> dict[str, Any]:
        d = {"step": self.step, "how": self.how, "kept": [p.to_dict() for p in self.kept],
             "path": self.path, "metric": encode_number(self.metric),
             "drop": encode_number(self.drop), "size_bytes": self.size_bytes,
             "accepted": self.accepted, "p50_ms": encode_number(self.p50_ms)}  # fmt: skip
        if self.interval is not None:
            d["interval"] = [encode_number(v) for v in self.interval]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchStep:
        kept = (tuple(Placement.from_dict(p) for p in d["kept"]) if "kept" in d
                else tuple(Placement(n, "float") for n in d.get("kept_in_float", ())))  # fmt: skip
        interval = d.get("interval")
        return cls(int(d["step"]), kept, str(d["path"]),
                   decode_number(d["metric"]), decode_number(d["drop"]), int(d["size_bytes"]),
                   bool(d.get("accepted", True)), decode_number(d.get("p50_ms", "nan")),
                   str(d.get("how", "greedy")),
                   None if interval is None else (decode_number(interval[0]),
                                                  decode_number(interval[1])))  # fmt: skip


#: The sources of error a repair measures alone, besides each suspect op type.
SOURCES = ("weights", "activations", "inputs and outputs", "everything")


@dataclass(frozen=True)
class SourceCheck:
    """One source of error measured alone: the model quantized with every other source
    removed (e.g. every activation in float, so only the weights are int8)."""

    source: str  # one of SOURCES, or an op type kept in float wherever it occurs
    description: str
    metric: float
    drop: float
    size_bytes: int

    @property
    def is_op_type(self) -> bool:
        return self.source not in SOURCES

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "description": self.description,
                "metric": encode_number(self.metric), "drop": encode_number(self.drop),
                "size_bytes": self.size_bytes}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceCheck:
        return cls(str(d["source"]), str(d["description"]), decode_number(d["metric"]),
                   decode_number(d["drop"]), int(d["size_bytes"]))  # fmt: skip


@dataclass(frozen=True)
class KeptOp:
    """An op of the suggested model and the precision it is kept at."""

    op: OpRef
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.op.to_dict(), "precision": self.precision}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeptOp:
        return cls(OpRef.from_dict(d), str(d.get("precision", "float")))


@dataclass(frozen=True)
class Suggestion:
    """What to keep at a higher precision: the candidates by error added and by measured
    sensitivity, each error source measured alone, every step of the search, the steps on a
    Pareto front (metric against latency, and against size), and the model the search
    suggests — the smallest that meets the budget, else the best it reached, with
    ``explanation`` saying why no model met it."""

    budget_metric: str  # "accuracy" | "sqnr"
    max_drop: float
    float_metric: float | None
    float_p50_ms: float
    float_size_bytes: int
    by_error: tuple[ErrorRank, ...]
    by_sensitivity: tuple[Sensitivity, ...]
    steps: tuple[SearchStep, ...]
    pareto_latency: tuple[int, ...]
    pareto_size: tuple[int, ...]
    met_budget: bool
    kept: tuple[KeptOp, ...]
    model: str
    sources: tuple[SourceCheck, ...] = ()
    explanation: str = ""
    evaluations: int = 0
    max_evaluations: int = 0
    precisions: tuple[str, ...] = ("float",)
    manifest: str = ""
    #: The step whose model is suggested (None: a candidate measured alone).
    model_step: int | None = None
    #: Plans the quantizer could not build or the runtime refused: how many, and why (the
    #: distinct reasons, at most five).
    refused: int = 0
    refused_reasons: tuple[str, ...] = ()

    @property
    def accuracy(self) -> bool:
        """The budget is in accuracy points (else relative RMSE from SQNR)."""
        return self.budget_metric == "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_metric": self.budget_metric, "max_drop": self.max_drop,
            "float_metric": None if self.float_metric is None else encode_number(
                self.float_metric),
            "float_p50_ms": encode_number(self.float_p50_ms),
            "float_size_bytes": self.float_size_bytes,
            "precisions": list(self.precisions),
            "evaluations": self.evaluations, "max_evaluations": self.max_evaluations,
            "rankings": {"error_added": [r.to_dict() for r in self.by_error],
                         "sensitivity": [r.to_dict() for r in self.by_sensitivity]},
            "sources": [c.to_dict() for c in self.sources],
            "steps": [st.to_dict() for st in self.steps],
            "pareto": {"latency": list(self.pareto_latency), "size": list(self.pareto_size)},
            "met_budget": self.met_budget,
            "explanation": self.explanation,
            "kept": [k.to_dict() for k in self.kept],
            "model": self.model, "manifest": self.manifest, "model_step": self.model_step,
            "refused": self.refused, "refused_reasons": list(self.refused_reasons),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Suggestion:
        rankings, pareto = d.get("rankings", {}), d.get("pareto", {})
        float_metric = d.get("float_metric")
        kept = d.get("kept", d.get("kept_in_float", ()))
        return cls(
            d["budget_metric"], float(d["max_drop"]),
            None if float_metric is None else decode_number(float_metric),
            decode_number(d["float_p50_ms"]), int(d["float_size_bytes"]),
            tuple(ErrorRank.from_dict(r) for r in rankings.get("error_added", ())),
            tuple(Sensitivity.from_dict(r) for r in rankings.get("sensitivity", ())),
            tuple(SearchStep.from_dict(st) for st in d["steps"]),
            tuple(pareto.get("latency", ())), tuple(pareto.get("size", ())),
            bool(d["met_budget"]), tuple(KeptOp.from_dict(k) for k in kept),
            str(d["model"]), tuple(SourceCheck.from_dict(c) for c in d.get("sources", ())),
            str(d.get("explanation", "")), int(d.get("evaluations", 0)),
            int(d.get("max_evaluations", 0)), tuple(d.get("precisions", ("float",))),
            str(d.get("manifest", "")), d.get("model_step"), int(d.get("refused", 0)),
            tuple(str(r) for r in d.get("refused_reasons", ())),
        )  # fmt: skip


DIAGNOSIS_SCHEMA = "quantlens.diagnosis/1"
#: An op adding less error than this (dB: the error's amplitude doubled) is not where it starts.
ORIGIN_MIN_DB = 6.0


@dataclass(frozen=True)
class DiagnosisResult:
    """The outcome of :func:`quantlens.diagnose`: where the quantization error comes from."""

    float_path: str
    quant_path: str
    samples: int
    note: str
    end_to_end: dict[str, dict[str, float]]  # output name -> fidelity
    tensors: tuple[TensorRow, ...]  # one per matched tensor, in graph order
    ops: tuple[OpRow, ...]  # one per op of the quantized model, in graph order
    weights: tuple[WeightRow, ...]
    unmatched: dict[str, list[str]]
    suggestion: Suggestion | None = None
    #: How graph viewers (Model Explorer) know the quantized model's main graph, and whether
    #: they know its ops by their output tensors' names ("tensor", .tflite) or by node ids
    #: ("node", .onnx: by the node's name).
    graph_id: str = "main"
    node_keys: str = "tensor"
    schema: str = DIAGNOSIS_SCHEMA

    def top_ops(self, k: int) -> list[OpRow]:
        """The ``k`` ops that add the most error, largest first."""
        measured = [o for o in self.ops if o.error_added_db is not None]
        return sorted(measured, key=lambda o: -(o.error_added_db or 0.0))[:k]

    def origin(self) -> OpRow | None:
        """The op where the error starts: the first in graph order that adds at least half
        of the worst op's error and at least ORIGIN_MIN_DB (the error's amplitude doubled);
        None when no op does."""
        top = self.top_ops(1)
        if not top:
            return None
        bar = max(ORIGIN_MIN_DB, (top[0].error_added_db or 0.0) / 2)
        damaging = [o for o in self.top_ops(len(self.ops)) if (o.error_added_db or 0.0) >= bar]
        return min(damaging, key=lambda o: o.index) if damaging else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "float_model": self.float_path,
            "quantized_model": self.quant_path,
            "samples": self.samples,
            "note": self.note,
            "end_to_end": {k: encode_tree(v) for k, v in self.end_to_end.items()},
            "ops": [o.to_dict() for o in self.ops],
            "tensors": [t.to_dict() for t in self.tensors],
            "weights": [w.to_dict() for w in self.weights],
            "unmatched": self.unmatched,
            "graph_id": self.graph_id,
            "node_keys": self.node_keys,
            **({"suggestion": self.suggestion.to_dict()} if self.suggestion else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DiagnosisResult:
        """Read a report written by :meth:`to_dict`."""
        if d.get("schema") != DIAGNOSIS_SCHEMA:
            raise QuantlensError(
                f"not a quantlens diagnosis (schema {d.get('schema')!r}, expected "
                f"{DIAGNOSIS_SCHEMA!r})"
            )
        return cls(
            float_path=d["float_model"],
            quant_path=d["quantized_model"],
            samples=int(d["samples"]),
            note=d["note"],
            end_to_end={k: decode_tree(v) or {} for k, v in d["end_to_end"].items()},
            tensors=tuple(TensorRow.from_dict(t) for t in d["tensors"]),
            ops=tuple(OpRow.from_dict(o) for o in d["ops"]),
            weights=tuple(WeightRow.from_dict(w) for w in d["weights"]),
            unmatched=dict(d["unmatched"]),
            suggestion=Suggestion.from_dict(d["suggestion"]) if d.get("suggestion") else None,
            graph_id=str(d.get("graph_id", "main")),
            node_keys=str(d.get("node_keys", "tensor")),
        )


KERNELS_SCHEMA = "quantlens.kernels/1"


@dataclass(frozen=True)
class KernelCheck:
    """The outcome of :func:`quantlens.check_kernels`: one model on every CPU kernel path.

    ``kernels`` evaluates every path against the first (the reference kernels): the kernel
    error; ``against_float`` (given the float model) evaluates the float model on the
    reference kernels against the quantized one on every path: the first row is the
    quantization error alone, the others quantization and kernel error together. Every path
    of ``kernels`` is timed in interleaved rounds (its ``performance``; speed against the
    reference kernels)."""

    model: str
    reference_model: str | None
    paths: dict[str, str]  # kernel path -> what runs, the reference first
    kernels: EvaluationResult
    against_float: EvaluationResult | None
    schema: str = KERNELS_SCHEMA

    @property
    def settings(self) -> dict[str, Any]:
        """How the paths ran (batch size, threads, ...), as an evaluation's settings."""
        return self.kernels.settings

    @property
    def quantization_error(self) -> ModelResult | None:
        """The quantized model on the reference kernels against the float model on them."""
        return None if self.against_float is None else self.against_float.models[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model": self.model,
            "reference_model": self.reference_model,
            "paths": dict(self.paths),
            "kernels": self.kernels.to_dict(),
            "against_float": None if self.against_float is None else self.against_float.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KernelCheck:
        if d.get("schema") != KERNELS_SCHEMA:
            raise QuantlensError(f"not a quantlens kernel check (schema {d.get('schema')!r})")
        against = d.get("against_float")
        return cls(
            model=str(d["model"]),
            reference_model=d.get("reference_model"),
            paths={str(k): str(v) for k, v in d["paths"].items()},
            kernels=EvaluationResult.from_dict(d["kernels"]),
            against_float=None if against is None else EvaluationResult.from_dict(against),
        )


def report_from_dict(d: Mapping[str, Any]) -> EvaluationResult | BenchResult | KernelCheck:
    """An evaluate, compare or bench report read back from its JSON (schema checked).

    Raises:
        QuantlensError: the dictionary is not such a report.
    """
    schema = str(d.get("schema", ""))
    if schema.startswith("quantlens.bench/"):
        return BenchResult.from_dict(d)
    if schema.startswith(("quantlens.evaluation/", "quantlens.compare/")):
        return EvaluationResult.from_dict(d)
    if schema.startswith("quantlens.kernels/"):
        return KernelCheck.from_dict(d)
    raise QuantlensError(f"not a quantlens report (schema {schema!r}); give the JSON of "
                         "evaluate, compare or bench")  # fmt: skip
