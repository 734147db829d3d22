"""Shards on a Ray cluster (local when no address is given); ``ray`` is imported only here."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from quantlens.engine import shard_task
from quantlens.errors import ConfigError, QuantlensError, WorkerDiedError, require

LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")


def run_ray(plan: Any, shards: Sequence[Any], workers: int, address: str | None,
            progress: Callable[[int], None] | None) -> list[Any]:  # fmt: skip
    """Run the shards as Ray tasks (one CPU each); outcomes in shard order.

    Model and data paths must be readable at the same place on every node of the cluster.
    """
    ray = require("ray", "ray", "--engine ray")
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(
                address=address, num_cpus=None if address else workers,
                include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": LOG_LEVEL}},
            )  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from exc
    try:
        task = ray.remote(num_cpus=1)(shard_task)
        refs = [task.remote(plan, shard) for shard in shards]
        outcomes = []
        for k, ref in enumerate(refs):
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # our own error, raised in a task
                cause = exc.as_instanceof_cause()
                if isinstance(cause, QuantlensError):
                    raise cause from None
                raise
            except ray.exceptions.RayError as exc:  # a worker or node that died
                raise WorkerDiedError(
                    f"a Ray worker failed while evaluating shard {k + 1} of {len(shards)} "
                    f"({k} had finished): {type(exc).__name__}; no report was written"
                ) from exc
            if progress is not None:
                progress(outcome.samples)
            outcomes.append(outcome)
        return outcomes
    finally:
        if started:
            ray.shutdown()
