"""BenchOptions: how a benchmark runs, validated once where it is made (the CLI, a TOML
config or a caller of the API)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from quantlens.engine.options import override
from quantlens.errors import ConfigError

DEFAULT_WARMUP_RUNS = 10
DEFAULT_RUNS = 50
DEFAULT_MIN_SECONDS = 1.0


@dataclass(frozen=True)
class BenchOptions:
    """Every setting of a benchmark that is not a model or its inputs.

    Attributes:
        threads: runtime thread counts to try (``None``: the runtime's default).
        batch_sizes: batch sizes to try.
        warmup_runs: untimed invokes per model before the timed rounds.
        runs: minimum timed rounds.
        min_seconds: minimum duration of the timed phase.
        measure_memory: run the child-process probe (init, first inference, peak RSS).
        profile: for ONNX models, also collect onnxruntime's profiler output and aggregate
            kernel time by node and op type (in a separate session, after the timing).
    """

    threads: tuple[int | None, ...] = (1,)
    batch_sizes: tuple[int, ...] = (1,)
    warmup_runs: int = DEFAULT_WARMUP_RUNS
    runs: int = DEFAULT_RUNS
    min_seconds: float = DEFAULT_MIN_SECONDS
    measure_memory: bool = True
    profile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "threads", tuple(self.threads))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if not self.threads or any(t is not None and t < 1 for t in self.threads):
            raise ConfigError(
                f"threads must be whole numbers of at least 1, got {list(self.threads)}"
            )
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be at least 1, got {list(self.batch_sizes)}")
        if self.warmup_runs < 0 or self.runs < 1 or not 0 <= self.min_seconds < math.inf:
            raise ConfigError("warm-up runs must be ≥ 0, runs ≥ 1 and min-seconds ≥ 0")

    def with_overrides(self, **overrides: Any) -> BenchOptions:
        """These options with some fields replaced (validated again); see
        :func:`quantlens.engine.options.override`."""
        return override(self, "benchmark", overrides)
