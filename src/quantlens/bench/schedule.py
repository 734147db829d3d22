"""Interleaved timing rounds: A B C A B C ... so that drift hits every model alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def interleave(
    invokers: Sequence[Callable[[], object]],
    *,
    warmup_runs: int,
    runs: int,
    min_seconds: float,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[list[float]]:
    """Time each invoker once per round until ``runs`` rounds and ``min_seconds`` have passed.

    Warm-up runs are interleaved the same way and discarded. ``min_seconds`` is measured
    over the whole steady-state phase, so a single model gets benchmark_model's semantics and
    several models all get the same number of rounds.

    Returns:
        Latencies in milliseconds, one list per invoker, index ``r`` from round ``r``.
    """
    for _ in range(warmup_runs):
        for f in invokers:
            f()
    raw: list[list[int]] = [[] for _ in invokers]
    pairs = list(zip(invokers, (r.append for r in raw), strict=True))
    start = clock()
    min_ns = min_seconds * 1e9
    rounds = 0
    while True:
        for f, record in pairs:
            t0 = clock()
            f()
            t1 = clock()
            record(t1 - t0)  # nanoseconds now, milliseconds later: keep the timed span bare
        rounds += 1
        if rounds >= runs and clock() - start >= min_ns:
            return [[ns / 1e6 for ns in r] for r in raw]
