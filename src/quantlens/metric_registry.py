"""Every metric quantlens reports, declared once: its name, where a report holds it, which way
is better, how a change of it is measured and how a value is spelled.

Gates (``METRIC OP NUMBER``), ``diff`` and every renderer read this table; a new metric is
one :func:`declare` call here (and the code that computes it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: A value from a result's model (a ModelResult, or a BenchEntry) and the reference's.
Reader = Callable[[Any, Any], float | None]

#: How each kind of metric is spelled and how its change is measured: ``points`` (a fraction
#: in [0, 1], its change in points), ``db`` (its change in dB), ``relative`` (the rest).
KINDS: dict[str, tuple[str, str]] = {
    "fraction": ("{:.4f}", "points"),
    "similarity": ("{:.5f}", "points"),
    "db": ("{:.1f}", "db"),
    "error": ("{:.4g}", "relative"),
    "latency": ("latency", "relative"),
    "size": ("size", "relative"),
    "memory": ("{:.1f}\u00a0MiB", "relative"),
    "throughput": ("{:,.0f}", "relative"),
    "ratio": ("{:.3g}", "relative"),
    "speed": ("{:.2f}×", "relative"),
    "count": ("{:.0f}", "relative"),
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: ``read`` takes it from a result's model (a ModelResult or BenchEntry) and
    the reference's; ``higher_is_better`` is None for a metric without a direction; ``diffed``
    metrics are compared by ``quantlens diff``."""

    name: str
    doc: str
    kind: str
    read: Reader
    higher_is_better: bool | None = None
    diffed: bool = False
    #: Where a result holds it: ``ModelResult.<section>[<key>]`` ("task_metrics", "fidelity");
    #: renderers show a column for each such metric a result has, in declaration order.
    section: str | None = None
    key: str | None = None
    label: str = ""  # its column heading
    short: str = ""  # a narrower heading for the terminal (default: the label)

    @property
    def short_label(self) -> str:
        return self.short or self.label

    @property
    def change_kind(self) -> str:
        """'points', 'db' or 'relative'."""
        return KINDS[self.kind][1]


METRICS: dict[str, MetricSpec] = {}


def declare(spec: MetricSpec) -> MetricSpec:
    """Add a metric to the registry."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown metric kind {spec.kind!r}")
    METRICS[spec.name] = spec
    return spec


def _get(obj: Any, *path: str) -> float | None:
    """``obj.path[0].path[1]…``, each step an attribute or a mapping key; None where missing."""
    for k in path:
        if obj is None:
            return None
        obj = obj.get(k) if isinstance(obj, Mapping) else getattr(obj, k, None)
    return None if obj is None else float(obj)


def _at(*path: str) -> Reader:
    """A reader of a result's own field (``task_metrics``, ``fidelity``, ``size_bytes``)."""
    return lambda m, ref: _get(m, *path)


def _perf(*path: str) -> Reader:
    """A reader of a performance figure: an evaluation's model holds it in ``performance``,
    a benchmark entry in itself."""
    return lambda m, ref: _get(getattr(m, "performance", m), *path)


def _speedup(m: Any, ref: Any) -> float | None:
    if hasattr(m, "ratio_to_first"):  # a benchmark entry: one over its p50 ratio to the first
        ratio = (m.ratio_to_first or {}).get("ratio", 1.0)
        return 1.0 / ratio if ratio else None
    return _get(m, "performance", "speedup")


# task metrics against the labels: classification, then regression
for _name, _label, _short in (("accuracy", "accuracy", "acc"), ("top5_accuracy", "top-5", ""),
                              ("macro_f1", "macro F1", "")):  # fmt: skip
    declare(MetricSpec(_name, f"task metric `{_name}` against the labels", "fraction",
                       _at("task_metrics", _name), True, True,
                       "task_metrics", _name, _label, _short))  # fmt: skip
for _name, _diffed in (("mse", False), ("mae", True), ("rmse", True)):
    declare(MetricSpec(f"task_{_name}", f"regression `{_name}` against the labels", "error",
                       _at("task_metrics", _name), False, _diffed, "task_metrics", _name,
                       _name.upper()))  # fmt: skip
declare(MetricSpec("r2", "task metric `r2` against the labels", "fraction",
                   _at("task_metrics", "r2"), True, True, "task_metrics", "r2", "R²"))  # fmt: skip
# fidelity to the reference, first output
_FIDELITY = [("sqnr_db", "db", True, True, "SQNR dB"), ("mse", "error", False, False, "out MSE"),
             ("mae", "error", False, False, "out MAE"), ("rmse", "error", False, False, "out RMSE"),
             ("max_abs_error", "error", False, False, "max |err|"),
             ("cosine_similarity", "similarity", True, False, "cosine"),
             ("top1_agreement", "fraction", True, True, "top-1 agreement"),
             ("kl_divergence", "error", False, False, "KL")]  # fmt: skip
for _name, _kind, _better, _diffed, _label in _FIDELITY:
    declare(MetricSpec(_name, f"fidelity to the reference: `{_name}` (first output)", _kind,
                       _at("fidelity", _name), _better, _diffed, "fidelity", _name, _label,
                       "top-1" if _name == "top1_agreement" else ""))  # fmt: skip
# distribution statistics of class outputs (first output), metrics.distribution
#: The percentiles they report (percentile, the name its metric ends in), largest first.
PERCENTILES = (
    (100.0, "max"), (99.9, "p99_9"), (99.0, "p99"), (95.0, "p95"), (90.0, "p90"),
    (50.0, "median"), (10.0, "p10"), (5.0, "p5"), (1.0, "p1"), (0.1, "p0_1"), (0.0, "min"),
)  # fmt: skip
_PERCENTILE_NAMES = tuple(name for _, name in PERCENTILES)
for _name in ("kl_mean", "kl_mean_se", *(f"kl_{p}" for p in _PERCENTILE_NAMES)):
    declare(MetricSpec(_name, f"KL divergence per sample: `{_name}`", "error",
                       _at("distribution", _name), False))  # fmt: skip
for _name in ("delta_p_mean", "delta_p_mean_se", "delta_p_rms",
              *(f"delta_p_{p}" for p in _PERCENTILE_NAMES)):  # fmt: skip
    declare(MetricSpec(_name, f"change of the labelled class's probability: `{_name}`",
                       "error", _at("distribution", _name), None))  # fmt: skip
declare(MetricSpec("top1_agreement_se", "binomial standard error of top-1 agreement", "error",
                   _at("distribution", "top1_agreement_se"), False))  # fmt: skip
for _name in ("p50", "p90", "p99", "mean", "init", "first"):
    declare(MetricSpec(f"{_name}_ms", f"latency `{_name}` in milliseconds", "latency",
                       _perf("latency_ms", _name), False, _name in ("p50", "p99")))  # fmt: skip
declare(MetricSpec("throughput_sps", "samples per second", "throughput",
                   _perf("throughput_sps"), True))  # fmt: skip
declare(MetricSpec("peak_rss_mb", "peak resident memory, MiB", "memory", _perf("peak_rss_mb"),
                   False, True))  # fmt: skip
declare(MetricSpec("size_bytes", "size on disk", "size", _at("size_bytes"), False, True))
declare(MetricSpec("size_gzip_bytes", "size gzip-compressed", "size",
                   _perf("size_gzip_bytes"), False))  # fmt: skip
declare(MetricSpec("speedup", "the float model's p50 over this model's", "speed", _speedup,
                   True))  # fmt: skip


def _accuracy_drop(m: Any, ref: Any) -> float | None:
    a, b = _get(ref, "task_metrics", "accuracy"), _get(m, "task_metrics", "accuracy")
    return None if a is None or b is None else a - b


def _mae_increase(m: Any, ref: Any) -> float | None:
    a, b = _get(ref, "task_metrics", "mae"), _get(m, "task_metrics", "mae")
    return None if a is None or b is None or a == 0 else (b - a) / a


def _size_ratio(m: Any, ref: Any) -> float | None:
    a, b = _get(ref, "size_bytes"), _get(m, "size_bytes")
    return None if not a or b is None else b / a


declare(MetricSpec("accuracy_drop", "reference accuracy − model accuracy (0.01 = one point)",
                   "fraction", _accuracy_drop, False))  # fmt: skip
declare(MetricSpec("mae_increase", "relative increase of the regression MAE over the "
                   "reference's", "ratio", _mae_increase, False))  # fmt: skip
declare(MetricSpec("size_ratio", "size on disk / the reference's", "ratio", _size_ratio, False))
declare(
    MetricSpec(
        "nonfinite_outputs", "outputs holding NaN or inf", "count", _at("nonfinite_outputs"), False
    )
)
declare(MetricSpec("zero_outputs", "samples whose outputs are all zero where the "
                   "reference's are not (a dead kernel or delegate)", "count",
                   _at("zero_outputs"), False))  # fmt: skip


def shown_in(section: str, present: set[str]) -> list[MetricSpec]:
    """The metrics of a result section (``task_metrics``, ``fidelity``) that ``present``
    holds, in declaration order: the columns a renderer shows."""
    return [s for s in METRICS.values() if s.section == section and s.key in present]


def spec_for(key: str) -> MetricSpec | None:
    """The metric a result's key names: a fidelity or task key ('mse' of the task metrics is
    'task_mse' here)."""
    return METRICS.get(key) or METRICS.get(f"task_{key}")


def latency(ms: float | None) -> str:
    """A latency with a unit that suits it (µs, ms, s) and 3 significant digits."""
    if ms is None or ms != ms:
        return "—"
    if ms < 1:
        return f"{ms * 1000:.3g} µs"
    if ms < 1000:
        return f"{ms:.3g} ms"
    return f"{ms / 1000:.3g} s"


def short_tensor_name(name: str, width: int = 96) -> str:
    """A TFLite fused tensor name ('a/Relu;a/BiasAdd;a/conv') as its first part, which names
    the op's output; longer than ``width``, its end."""
    first = name.split(";")[0]
    return first if len(first) <= width else "…" + first[-(width - 1) :]


def human_size(n: int | float) -> str:
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


def spell(key: str, value: float | None) -> str:
    """A metric's value the way its kind is spelled everywhere (fractions with four decimals,
    SQNR with one, latencies with a unit, sizes in KiB/MiB)."""
    spec = spec_for(key)
    pattern = KINDS[spec.kind][0] if spec is not None else "{:.4g}"
    if pattern == "latency":
        return latency(value)
    if pattern == "size":
        return "—" if value is None else human_size(value)
    return number(value, pattern)


def spell_change(key: str, change: float) -> str:
    """A change of a metric: points for fractions, dB for SQNR, relative for the rest."""
    spec = spec_for(key)
    kind = spec.change_kind if spec is not None else "relative"
    if kind == "points":
        return f"{change * 100:+.2f}\u00a0pt"
    if kind == "db":
        return f"{change:+.1f}\u00a0dB"
    return f"{change:+.1%}"


def drop_words(d: float, task: str, top1: bool = True) -> str:
    """A drop in words, in the units of ``task``; with no labels, top-1 disagreement for
    class outputs, else (``top1`` false) the error's RMS relative to the reference's."""
    if task == "classification":
        return f"{d * 100:.3g} accuracy point{'' if abs(d * 100) == 1 else 's'}"
    if task == "regression":
        return f"{d:.2%} of MAE"
    if not top1:
        return f"{d:.2%} RMS error relative to the reference"
    return f"{d:.2%} disagreement with the reference"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, value) points that no other point beats on both (cost lower,
    value higher, at least one strictly), in order of cost."""
    front = [
        i for i, (x, y) in enumerate(points)
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                   for j, (x2, y2) in enumerate(points) if j != i)
    ]  # fmt: skip
    return sorted(front, key=lambda i: points[i][0])
