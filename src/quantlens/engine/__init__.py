"""Where shards run: a local process pool, or a Ray cluster. Inline runs need no engine.

Each worker opens the models of the :class:`~quantlens.evaluation.Plan` itself (once per
process) and evaluates the shards it is given; the caller merges the shard outcomes in shard
order, so the result equals an inline run (exactly for counts, within floating-point
summation otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quantlens.errors import ConfigError

ENGINES = ("local", "ray")

_MODELS: dict[Any, list[Any]] = {}  # per worker process: the plan's models -> loaded


def shard_task(plan: Any, dataset: Any) -> Any:
    """Evaluate one shard in a worker (models loaded once per process and plan)."""
    from quantlens.evaluation import run_shard
    from quantlens.models.base import trusted_models
    from quantlens.models.loading import load_model

    key = plan.models_key
    if key not in _MODELS:
        from quantlens.models.containment import mark_verified

        mark_verified(plan.verified)
        from quantlens.models.layout import adapt

        with trusted_models(plan.trusted):
            models = [adapt(load_model(p, num_threads=plan.num_threads), plan.layout)
                      for p in plan.paths]  # fmt: skip
        for model, mode in zip(models, plan.batching, strict=False):
            model.set_batching(mode)  # as the caller's probe decided
        _MODELS[key] = models
    return run_shard(_MODELS[key], dataset, plan)


def run_shards(
    plan: Any, shards: Sequence[Any], *, engine: str, workers: int, ray_address: str | None,
    progress: Callable[[int], None] | None = None,
) -> list[Any]:  # fmt: skip
    """Run every shard on ``engine`` with ``workers`` workers; outcomes in shard order."""
    if engine == "local":
        from quantlens.engine.pool import run_pool

        return run_pool(plan, shards, workers, progress)
    if engine == "ray":
        from quantlens.engine.ray_engine import run_ray

        return run_ray(plan, shards, workers, ray_address, progress)
    raise ConfigError(f"unknown engine '{engine}'; use one of {', '.join(ENGINES)}")
