"""Shards in local worker processes (spawned: TensorFlow and the runtimes do not survive fork)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from quantlens.engine import shard_task


def run_pool(plan: Any, shards: Sequence[Any], workers: int,
             progress: Callable[[int], None] | None) -> list[Any]:  # fmt: skip
    """Run the shards on ``workers`` processes; outcomes in shard order."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(shard_task, plan, shard) for shard in shards]
        outcomes = []
        for future in futures:  # in order: the merge keeps samples in the data's order
            outcome = future.result()
            if progress is not None:
                progress(outcome.samples)
            outcomes.append(outcome)
        return outcomes
