"""Shards in the calling process itself, which has its models loaded already, and in local
workers: processes (spawned: TensorFlow and the runtimes do not survive fork), or threads of
this process for models whose runs release the GIL and dominate a batch."""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from quantlens._process import die_with_parent
from quantlens.engine.shard import load_plan_models, run_shard, set_batchings, shard_task
from quantlens.errors import WorkerDiedError

if TYPE_CHECKING:  # imported where processes start: 6 ms of a run that needs only threads
    from concurrent.futures import ProcessPoolExecutor


def _warm(modules: Sequence[str]) -> None:
    """A worker's initializer: die with the parent, and import what every shard needs."""
    import importlib

    die_with_parent()
    for name in ("quantlens.engine.shard", *modules):
        importlib.import_module(name)


def _ready() -> None:
    """A task that does nothing: submitting it makes the pool start its process."""


@contextmanager
def _callers_script_not_rerun() -> Iterator[None]:
    """While worker processes are spawned, hide where the caller's ``__main__`` came from.

    A spawned child otherwise runs the caller's script (or ``-m`` module) again, as
    ``__mp_main__``, before its first task: its imports (TensorFlow's seconds) in every
    worker, and, in a script that calls :func:`quantlens.evaluate` outside an ``if __name__
    == "__main__":`` block, the evaluation itself, which multiprocessing then refuses — the
    workers die. Workers run quantlens' own functions on quantlens' own objects, so they
    need nothing from the caller's module. (``python -m quantlens`` is never run again:
    multiprocessing skips a package's ``__main__``.)
    """
    main = sys.modules.get("__main__")
    spec, path = getattr(main, "__spec__", None), getattr(main, "__file__", None)
    if main is None or (path is None and spec is None):
        yield
        return
    main.__spec__ = None  # what multiprocessing reads, then __file__
    if path is not None:
        del main.__file__
    try:
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


def start_workers(count: int, modules: Sequence[str] = ()) -> ProcessPoolExecutor:
    """``count`` worker processes, started now: they import ``modules`` (the models'
    runtimes) while the caller loads and probes its own models. Hand them to
    :func:`run_pool`; shut them down if the run never gets there."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_warm, initargs=(tuple(modules),))  # fmt: skip
    with _callers_script_not_rerun():
        for _ in range(count):
            pool.submit(_ready)  # spawns a process, now
    return pool


def _stop(pool: ProcessPoolExecutor) -> None:
    """End workers whose last result is in now, rather than wait while each tears down its
    runtimes and models (40 ms at the end of a run, with nothing left to do)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


class _Stopped(Exception):
    """A worker thread told to stop between two batches (another worker failed, or the
    caller was interrupted)."""


def run_pool(plan: Any, shards: Sequence[Any], workers: int,
             progress: Callable[[int], None] | None,
             inline: Callable[[Any, Any, Any], Any] | None = None,
             started: ProcessPoolExecutor | None = None,
             threads: bool = False,
             follow: Callable[[list[Any]], None] | None = None) -> list[Any]:  # fmt: skip
    """Run the shards on ``workers`` workers; outcomes in shard order.

    With ``inline`` (``inline(shard, plan, decided)`` runs a shard on the caller's own
    models, as :func:`~quantlens.engine.shard.run_shard` does), the caller is one of the
    workers: it runs shards from the same queue while ``workers - 1`` others start and run
    the rest. A spawned worker process needs a while to import and load its models; the
    caller, idle otherwise, has both done already. ``started``: those processes, started
    earlier by :func:`start_workers` (shut down here when the run ends). With ``threads``,
    the others are threads of this process, each loading its own models: no process to
    start, no imports, no second copy of the runtimes in memory — for models whose batches
    are spent in a runtime that releases the GIL
    (:func:`quantlens.models.batching.run_in_threads`). A plan without batching decisions
    is then decided by the caller on the data's first batch, as an inline run decides it:
    the caller runs the first shard and probes on its first batch (whose outputs it keeps)
    while the threads load their models, then wait for the decisions. ``follow`` is handed
    each thread's models once loaded (to take what the caller's models decide as they run).
    """
    pending = deque(range(len(shards)))
    outcomes: list[Any] = [None] * len(shards)
    lock = threading.Lock()
    failure: list[BaseException] = []
    stop = threading.Event()
    # Set once the caller's first shard has decided the batching (or the run failed).
    decided = threading.Event()
    waits = threads and inline is not None and not plan.batching
    current = [plan]  # the plan, with the batching decisions once they are made

    def take() -> int | None:
        with lock:
            return pending.popleft() if pending and not failure else None

    def done(k: int, outcome: Any) -> None:
        with lock:
            outcomes[k] = outcome
            if progress is not None:
                progress(outcome.samples)

    def fail(exc: BaseException) -> None:
        with lock:
            failure.append(exc)
        stop.set()
        decided.set()

    def publish(decisions: Sequence[Any]) -> None:
        current[0] = replace(plan, batching=tuple(d.mode for d in decisions))
        decided.set()

    def between_batches(_samples: int) -> None:
        if stop.is_set():
            raise _Stopped

    def thread_worker() -> None:
        try:
            models = load_plan_models(plan)
            if follow is not None:
                follow(models)
            if waits:
                decided.wait()
                if stop.is_set():
                    return
                set_batchings(models, current[0])
            while (k := take()) is not None:
                done(k, run_shard(models, shards[k], current[0], progress=between_batches))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the caller's thread
            fail(exc)

    def thread_workers(count: int) -> None:
        """``count`` threads, each with its own models, taking shards until none is left."""
        running = [threading.Thread(target=thread_worker, name=f"quantlens-worker-{i + 1}",
                                    daemon=True) for i in range(count)]  # fmt: skip
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()

    def processes(count: int) -> None:
        """Keep ``count`` shards in flight on ``count`` processes until none is left."""
        from concurrent.futures.process import BrokenProcessPool

        finished = 0
        try:
            with started or start_workers(count) as pool:
                running: dict[Future[Any], int] = {}
                while True:
                    while len(running) < count and (k := take()) is not None:
                        running[pool.submit(shard_task, plan, shards[k])] = k
                    if not running:
                        _stop(pool)
                        return
                    ready, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in ready:
                        k = running.pop(future)
                        try:
                            outcome = future.result()
                        except BrokenProcessPool as exc:
                            raise WorkerDiedError(
                                f"a worker process died while evaluating shard {k + 1} of "
                                f"{len(shards)} ({finished} had finished); no report was "
                                "written — run with --workers 1 to see what failed"
                            ) from exc
                        finished += 1
                        done(k, outcome)
        except BaseException as exc:  # handed to the caller's thread
            fail(exc)

    others = thread_workers if threads else processes
    if inline is None:
        others(workers)
    else:
        first = take() if waits else None  # the data's first samples, decided on here
        helper = threading.Thread(target=others, args=(workers - 1,), daemon=True)
        helper.start()
        try:
            if first is not None:
                done(first, inline(shards[first], plan, publish))
                decided.set()  # a shard that never probed leaves the threads to probe
            while (k := take()) is not None:
                done(k, inline(shards[k], current[0], None))
        except BaseException:  # Ctrl-C, SIGTERM or a failed shard: stop the workers now,
            # not when their shards end
            with lock:
                pending.clear()
            stop.set()
            decided.set()
            if not threads:
                import multiprocessing

                for child in multiprocessing.active_children():
                    child.kill()
            raise
        finally:
            helper.join()
    if failure:
        raise failure[0]
    return outcomes
