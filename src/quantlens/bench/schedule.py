"""Interleaved timing rounds: A B C A B C ... so that drift hits every model alike."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Rounds kept per model. Past this, every other kept round is dropped and from then on
#: only every other round is kept (then every fourth, ...): the kept rounds stay evenly
#: spread over the whole run, and memory stays the same however long it runs.
MAX_KEPT_ROUNDS = 2**14
#: Rounds in one run at most, whatever ``runs`` and ``min_seconds`` ask for.
MAX_ROUNDS = 10**8
#: Longest timed phase, whatever ``min_seconds`` asks for.
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class Timings:
    """Latencies of each invoker, in milliseconds, from the rounds that were kept."""

    samples_ms: list[np.ndarray]  # one array per invoker; index r is the r-th kept round
    rounds: int  # rounds timed in all
    stride: int  # one round in ``stride`` was kept


def interleave(
    invokers: Sequence[Callable[[], object]],
    *,
    warmup_runs: int,
    runs: int,
    min_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
    max_kept: int = MAX_KEPT_ROUNDS,
) -> Timings:
    """Time each invoker once per round until ``runs`` rounds and ``min_seconds`` have passed.

    Warm-up runs are interleaved the same way and discarded. ``min_seconds`` is measured
    over the whole steady-state phase, so a single model gets benchmark_model's semantics and
    several models all get the same number of rounds. At most ``max_kept`` rounds are kept
    (evenly spread, see MAX_KEPT_ROUNDS).
    """
    if not math.isfinite(min_seconds) or min_seconds > MAX_SECONDS:
        min_seconds = MAX_SECONDS
    runs = min(runs, MAX_ROUNDS)
    for _ in range(warmup_runs):
        for f in invokers:
            f()
    kept = np.zeros((len(invokers), max_kept), dtype=np.int64)
    count = 0  # rounds kept
    stride = 1
    start = clock()
    min_ns = min_seconds * 1e9
    rounds = 0
    columns = list(enumerate(invokers))
    while True:
        keep = rounds % stride == 0
        for i, f in columns:
            t0 = clock()
            f()
            t1 = clock()
            if keep:
                kept[i, count] = t1 - t0  # nanoseconds: keep the timed span bare
        rounds += 1
        if keep:
            count += 1
            if count == max_kept:  # thin: keep every other round from here on
                kept[:, : max_kept // 2] = kept[:, 0:max_kept:2]
                count, stride = max_kept // 2, stride * 2
        if rounds >= MAX_ROUNDS or (rounds >= runs and clock() - start >= min_ns):
            return Timings([row[:count] / 1e6 for row in kept], rounds, stride)
