"""Shards on a Ray cluster (local when no address is given); ``ray`` is imported only here."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from quantlens._quiet import captured_output
from quantlens.engine.shard import shard_task
from quantlens.errors import ConfigError, QuantlensError, WorkerDiedError, require

LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")


#: How long to wait for a Ray cluster's port before calling it unreachable (Ray itself retries
#: for minutes, printing a log line each time).
CONNECT_TIMEOUT_S = 10.0
#: Ray's default ports: the GCS for "HOST:PORT", the Ray Client server for "ray://HOST".
DEFAULT_PORTS = {"": 6379, "ray": 10001}


def check_reachable(address: str) -> None:
    """Refuse, within CONNECT_TIMEOUT_S, a cluster address nothing listens on.

    Raises:
        ConfigError: the address cannot be parsed, or its port does not accept a connection.
    """
    import socket
    from urllib.parse import urlsplit

    scheme, _, rest = address.rpartition("://")
    parts = urlsplit(f"//{rest}")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORTS.get(scheme, 6379)
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"cannot read the Ray address '{address}'; give HOST:PORT or ray://HOST")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
            "'ray start --head' or check --ray-address"
        ) from None


def run_ray(plan: Any, shards: Sequence[Any], workers: int, address: str | None,
            progress: Callable[[int], None] | None) -> list[Any]:  # fmt: skip
    """Run the shards as Ray tasks (one CPU each); outcomes in shard order.

    Model and data paths must be readable at the same place on every node of the cluster.
    """
    ray = require("ray", "ray", "--engine ray")
    started = not ray.is_initialized()
    if started:
        if address and address != "auto":
            check_reachable(address)
        try:
            with captured_output():  # Ray's C++ client logs every retry on fd 2
                ray.init(
                    address=address, num_cpus=None if address else workers,
                    include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                    logging_level=logging.ERROR,
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
