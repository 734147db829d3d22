"""Shards in local worker processes (spawned: TensorFlow and the runtimes do not survive fork)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from quantlens._process import die_with_parent
from quantlens.engine.shard import shard_task
from quantlens.errors import WorkerDiedError


def run_pool(plan: Any, shards: Sequence[Any], workers: int,
             progress: Callable[[int], None] | None) -> list[Any]:  # fmt: skip
    """Run the shards on ``workers`` processes; outcomes in shard order."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=die_with_parent) as pool:  # fmt: skip
        futures = [pool.submit(shard_task, plan, shard) for shard in shards]
        outcomes = []
        for k, future in enumerate(futures):  # in order: the merge keeps the data's order
            try:
                outcome = future.result()
            except BrokenProcessPool as exc:
                raise WorkerDiedError(
                    f"a worker process died while evaluating shard {k + 1} of {len(shards)} "
                    f"({k} had finished); no report was written — run with --workers 1 to "
                    "see what failed"
                ) from exc
            if progress is not None:
                progress(outcome.samples)
            outcomes.append(outcome)
        return outcomes
