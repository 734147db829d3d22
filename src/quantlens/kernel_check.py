"""check_kernels(): is it the kernel or the quantization?

The same quantized model gives different numbers on different CPU kernel paths: a ``.tflite``
on XNNPACK, on the optimized builtin kernels or on the reference kernels; an ``.onnx`` with
onnxruntime's graph optimizations on or off. This runs one model on every path its runtime
has, on real data, and measures each path against the reference path (the plain
implementation of each op) with the metrics of ``evaluate``, with NaN/inf and all-zero
outputs counted and each path timed. Given the float model it was made from, it also
measures the float model against the quantized one, both on reference kernels: the
quantization error, apart from the kernel error.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantlens.backends import backend_for, resolve
from quantlens.data import load_dataset
from quantlens.errors import ConfigError
from quantlens.evaluation import evaluate, performance_of
from quantlens.results import KernelCheck

DEFAULT_SAMPLES = 256


def check_kernels(
    model: str | os.PathLike[str],
    data: Any,
    *,
    reference: str | os.PathLike[str] | None = None,
    labels: Any = None,
    samples: int | None = DEFAULT_SAMPLES,
    batch_size: int = 32,
    num_threads: int | None = 1,
    progress: Callable[[int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> KernelCheck:
    """Run ``model`` on every CPU kernel path of its runtime and compare the paths.

    Args:
        model: a ``.tflite`` or ``.onnx`` model (quantized or not).
        data: inputs (anything ``load_dataset`` takes); labels add task metrics per path.
        reference: the float model ``model`` was made from, to measure the quantization
            error apart from the kernel error.
        samples: how many samples to run (None: all).
        num_threads: threads per model on every path.

    Returns:
        A :class:`KernelCheck`: per path its fidelity to the reference kernels, NaN/inf and
        all-zero outputs, latency; with ``reference``, each path against the float model.

    Raises:
        ConfigError: the runtime has a single kernel path, or ``reference`` is of another
            runtime.
    """
    backend = backend_for(model)
    if backend.kernel_paths is None:
        raise ConfigError(f"{Path(model).name}: quantlens knows one kernel path for "
                          f"{backend.title} model; give a .tflite or .onnx file")  # fmt: skip
    paths: dict[str, str] = dict(resolve(backend.kernel_paths))
    if reference is not None and backend_for(reference) is not backend:
        raise ConfigError(f"--reference {Path(reference).name} must be {backend.title} model "
                          f"like {Path(model).name}, to run on the same kernel paths")  # fmt: skip

    def on(path: str | os.PathLike[str], kernels: str, name: str) -> Any:
        m = backend.load(path, num_threads=num_threads, kernels=kernels)
        m.name = name
        return m

    first = next(iter(paths))
    runs = [on(model, k, k) for k in paths]
    if status:
        status(f"running {Path(model).name} on {len(runs)} kernel paths…")
    kernels = evaluate(runs[0], runs[1:], data, labels=labels, limit=samples,
                       batch_size=batch_size, num_threads=num_threads, bench=False,
                       progress=progress)  # fmt: skip
    against_float = None
    if reference is not None:
        if status:
            status(f"running the float model {Path(reference).name} on {first} kernels…")
        flt = on(reference, first, "float")
        against_float = evaluate(flt, runs, data, labels=labels, limit=samples,
                                 batch_size=batch_size, num_threads=num_threads, bench=False,
                                 progress=progress)  # fmt: skip
    if status:
        status("timing every path on one sample (interleaved rounds)…")
    batch = load_dataset(data, labels).head(runs[0].inputs, 1)
    perf = performance_of(runs, batch.inputs, num_threads, memory=False)
    kernels = dataclasses.replace(
        kernels,
        models=tuple(dataclasses.replace(m, performance=p)
                     for m, p in zip(kernels.models, perf, strict=True)),
        # every path runs the same model: that it is quantized is the point, not a mistake
        warnings=tuple(w for w in kernels.warnings if w.code != "reference_quantized"),
    )  # fmt: skip
    return KernelCheck(
        model=str(model),
        reference_model=None if reference is None else str(reference),
        paths=paths,
        kernels=kernels,
        against_float=against_float,
    )
