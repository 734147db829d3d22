"""How many local workers a run gets, and whether they are threads or processes.

A worker repays its start-up only with enough work. For LiteRT and ONNX models the work is
known once the models are loaded (milliseconds for those runtimes): the tensors a sample
passes through, times the samples (the measure the auto batch uses too; on this kind of
machine about 0.3 µs per KB, for the MNIST-size CNN as for MobileNetV2). Others (Keras,
whose worker processes start before the models load, to import TensorFlow meanwhile) are
counted by samples.
"""

from __future__ import annotations

import os
from typing import Any

from quantlens.errors import ConfigError, QuantlensError

#: Workers whose work is not known before they start need this many samples each.
MIN_SAMPLES_PER_WORKER = 512
#: A worker needs this much work (bytes of tensors a sample × samples): two workers beat one
#: from about 12,000 samples of the MNIST-size CNN (55 KB a sample: 10,000 took 0.57-0.63 s
#: either way, 20,000 0.78 s against 0.80-0.86 s) and from about 64 of MobileNetV2-128 (12
#: MB: 0.65 s against 0.69 s; 128, 0.76 s against 0.91 s), whole commands, default options.
MIN_BYTES_PER_WORKER = 512 * 2**20


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


def workers_by_work(workers: int, samples: int | None, sample_bytes: int | None) -> int:
    """No more workers than the work keeps busy (MIN_BYTES_PER_WORKER each); by samples when
    a sample's size is unknown."""
    if samples is None or sample_bytes is None:
        return workers_by_samples(workers, samples)
    return max(1, min(workers, samples * sample_bytes // MIN_BYTES_PER_WORKER))


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
