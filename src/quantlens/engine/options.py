"""EvalOptions: how an evaluation runs, validated once where it is made (the CLI, a TOML
config or a caller of the API) and carried unchanged through compare, evaluate and the
engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quantlens.errors import ConfigError
from quantlens.models.layout import LAYOUTS

TASKS = ("classification", "regression")
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EvalOptions:
    """Every setting of a run that is not a model or the data.

    Attributes:
        task: force ``"classification"`` or ``"regression"``; inferred from labels by default.
        batch_size: samples per invoke (None: each model's chosen from its tensor sizes,
            and for a large model timed around that on the first batches, within batches
            chosen from all of theirs, see
            :func:`~quantlens.models.batching.auto_invoke_size`,
            :class:`~quantlens.models.batching.InvokeTuning` and
            :func:`~quantlens.models.batching.auto_batch_size`, and no warning when a model
            cannot use it), for models whose outputs do not depend on it; a model with a
            declared batch runs in chunks of it and a batch-dependent one one sample at a time.
        limit: use at most this many samples.
        num_threads: runtime threads per model (``None``: the runtime's default).
        allow_nonfinite: run on inputs holding NaN or inf instead of refusing them.
        bench: also measure each model's latency, throughput, memory and compressed size.
        workers: split the data into shards run by this many workers (this process and
            threads of it for large LiteRT/ONNX models, else worker processes); 1 runs inline.
        engine: ``"local"`` (this machine) or ``"ray"``, used when ``workers > 1``.
        ray_address: the address of an existing Ray cluster (None: a local one).
        layout: the data's image layout, ``"nhwc"`` or ``"nchw"`` (None: as every model takes
            it); a model laid out the other way gets its 4-D inputs transposed.
        constants: inputs fixed by name, the same value for every sample.
    """

    task: str | None = None
    batch_size: int | None = None
    limit: int | None = None
    num_threads: int | None = None
    allow_nonfinite: bool = False
    bench: bool = False
    workers: int = 1
    engine: str = "local"
    ray_address: str | None = None
    layout: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"unknown task '{self.task}'; use one of {', '.join(TASKS)}")
        for name in ("batch_size", "limit", "num_threads", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine '{self.engine}'; use one of {', '.join(ENGINES)}")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout '{self.layout}'; use nhwc or nchw")
        object.__setattr__(self, "constants", dict(self.constants or {}))

    def with_overrides(self, **overrides: Any) -> EvalOptions:
        """These options with some fields replaced (validated again); see :func:`override`."""
        return override(self, "evaluation", overrides)


def override(options: Any, what: str, overrides: dict[str, Any]) -> Any:
    """A frozen options dataclass with the fields named in ``overrides`` replaced (and so
    validated again); None values are ignored, so that unset keyword arguments keep the
    defaults.

    Raises:
        TypeError: a name is not a field, as for a wrong keyword argument.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(options)})
    if unknown:
        raise TypeError(f"unknown {what} option(s): {', '.join(unknown)}")
    return dataclasses.replace(options, **given) if given else options
