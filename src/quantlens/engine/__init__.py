"""Where shards run: local workers (threads or processes, :mod:`quantlens.engine.pool`; how
many and which, :mod:`quantlens.engine.workers`), or a Ray cluster. Inline runs need no
engine.

Each worker opens the models of the :class:`~quantlens.engine.shard.Plan` itself (once per
thread or process, :func:`~quantlens.engine.shard.load_plan_models`) and evaluates the shards
it is given; the caller merges the shard outcomes in shard order, so the result equals an
inline run (exactly for counts, within floating-point summation otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quantlens.engine.options import ENGINES
from quantlens.errors import ConfigError


def run_shards(
    plan: Any, shards: Sequence[Any], *, engine: str, workers: int, ray_address: str | None,
    progress: Callable[[int], None] | None = None,
    inline: Callable[[Any, Any, Any], Any] | None = None, started: Any = None,
    threads: bool = False, follow: Callable[[list[Any]], None] | None = None,
) -> list[Any]:  # fmt: skip
    """Run every shard on ``engine`` with ``workers`` workers; outcomes in shard order.
    ``inline(shard, plan, decided)`` runs a shard in this process: the local engine makes
    the caller one of its workers (a Ray cluster's workers are elsewhere); ``started``: the
    local engine's worker processes, started ahead
    (:func:`quantlens.engine.pool.start_workers`); ``threads``: its other workers are
    threads of this process instead, which wait for the batching the caller's first shard
    decides and are handed to ``follow`` once loaded (see
    :func:`quantlens.engine.pool.run_pool`)."""
    if engine == "local":
        from quantlens.engine.pool import run_pool

        return run_pool(plan, shards, workers, progress, inline, started, threads, follow)
    if engine == "ray":
        from quantlens.engine.ray_engine import run_ray

        return run_ray(plan, shards, workers, ray_address, progress)
    raise ConfigError(f"unknown engine '{engine}'; use one of {', '.join(ENGINES)}")
