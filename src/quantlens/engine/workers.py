"""How many local workers a run gets, and whether they are threads or processes.

A worker must repay its start-up with work. A worker process (spawned, importing its runtime,
loading its models: 0.2-0.3 s) needs MIN_SAMPLES_PER_WORKER samples, whatever the model — a
sample's cost is not known before the models run (an MLP's is in its weights, a conv net's in
its activations). A worker thread only loads its models; it runs for models whose batches are
spent in a runtime that releases the GIL, large models (:func:`quantlens.models.batching.
run_in_threads`), where the tensors a sample passes through do measure its cost (about 0.3 µs
per KB on this kind of machine, for MobileNetV2 as for the MNIST-size CNN): threads come
sooner, one per MIN_BYTES_PER_THREAD of tensors.
"""

from __future__ import annotations

import os
from typing import Any

from quantlens.errors import ConfigError, QuantlensError

#: Worker processes need this many samples each.
MIN_SAMPLES_PER_WORKER = 512
#: Worker threads need this much work each (bytes of tensors a sample × samples):
#: MobileNetV2-128 (12 MB a sample) runs faster in two threads from about 64 samples (0.65 s
#: against 0.69 s inline; 128, 0.69 s against 0.91 s), whole commands, default options.
MIN_BYTES_PER_THREAD = 512 * 2**20


def samples_in(samples: int | None, limit: int | None) -> int | None:
    """How many samples a run reads: the data's, or the limit if fewer (None: unknown)."""
    if samples is None:
        return None
    return min(samples, limit) if limit is not None else samples


def workers_by_samples(workers: int, samples: int | None) -> int:
    """No more workers than the samples keep busy (MIN_SAMPLES_PER_WORKER each); all of them
    when the count is unknown (an iterable, which cannot be sharded: the caller refuses it)."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
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
