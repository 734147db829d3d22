"""How many local workers a run gets, and whether they are threads or processes.

A worker must repay its start-up with work. A worker thread only loads its models; threads run
large models whose batches are spent in a runtime that releases the GIL
(:func:`quantlens.models.batching.run_in_threads`), and there the tensors a sample passes
through measure its cost (about 0.3 µs per KB on this kind of machine, for MobileNetV2 as for
the MNIST-size CNN): one thread per MIN_BYTES_PER_THREAD of tensors. A worker process spawns,
imports its runtime and loads its models (0.2-0.3 s); what a small model's sample costs is
not in its tensors (an MLP's is in its weights), so the caller times the models' first batch
and gives a process per MIN_SECONDS_PER_PROCESS of the run that time predicts. Models whose
runtime imports slowly (Keras) get processes started before they load, by samples
(MIN_SAMPLES_PER_WORKER each).
"""

from __future__ import annotations

import os
from typing import Any

from quantlens.errors import QuantlensError

#: Worker processes started before the models load need this many samples each.
MIN_SAMPLES_PER_WORKER = 512
#: Worker processes need this much of the run's predicted time each: two workers beat one on
#: the MNIST-size CNN from about 12,000 samples (10,000: 0.57-0.63 s either way; 5,000: 0.60-0.67
#: s with two processes, 0.46 s inline), whole commands, default options.
MIN_SECONDS_PER_PROCESS = 0.4
#: Worker threads need this much work each (bytes of tensors a sample × samples):
#: MobileNetV2-128 (12 MB a sample) runs faster in two threads from about 64 samples (0.65 s
#: against 0.69 s inline; 128, 0.69 s against 0.91 s), whole commands, default options.
MIN_BYTES_PER_THREAD = 512 * 2**20


def workers_by_samples(workers: int, samples: int | None) -> int:
    """No more workers than the samples keep busy (MIN_SAMPLES_PER_WORKER each); all of them
    when the count is unknown (an iterable, which cannot be sharded: the caller refuses it)."""
    if samples is None:
        return workers
    return max(1, min(workers, samples // MIN_SAMPLES_PER_WORKER))


def thread_workers_by_work(workers: int, samples: int | None, sample_bytes: int | None) -> int:
    """Worker threads: as many as the samples keep busy, or more when the work is large (one
    per MIN_BYTES_PER_THREAD), never more than ``workers``."""
    by_samples = workers_by_samples(workers, samples)
    if samples is None or sample_bytes is None:
        return by_samples
    return max(by_samples, min(workers, samples * sample_bytes // MIN_BYTES_PER_THREAD))


def process_workers_by_time(workers: int, samples: int | None, batch: int,
                            batch_seconds: float | None) -> int:  # fmt: skip
    """Worker processes: one per MIN_SECONDS_PER_PROCESS of the run, as a batch of ``batch``
    samples timed at ``batch_seconds`` predicts it, never more than ``workers``; by samples
    when there is no time."""
    if samples is None or batch_seconds is None:
        return workers_by_samples(workers, samples)
    run = -(-samples // max(1, batch)) * batch_seconds
    return max(1, min(workers, int(run / MIN_SECONDS_PER_PROCESS)))


def releases_gil(model: Any) -> bool:
    """Whether the model's runs release the GIL (its runtime's; stored outputs' reads): its
    workers may be threads, and are sized once it is loaded."""
    from quantlens.models.stored import StoredOutputs

    if isinstance(model, StoredOutputs):
        return True
    path = model if isinstance(model, (str, os.PathLike)) else getattr(model, "path", None)
    if path is None:
        return False
    from quantlens.backends import backend_for

    try:
        return backend_for(path).releases_gil
    except QuantlensError:  # a model object of no known file kind
        return False
