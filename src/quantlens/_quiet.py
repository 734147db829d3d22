"""Silencing the native libraries' own chatter (converter logs, artifact listings)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send file descriptors 1 and 2 to a temporary file for the duration of the block.

    TensorFlow's converter prints from C++ and Python alike, so redirecting ``sys.stdout``
    is not enough. The yielded list receives the captured text when the block ends, so a
    caller can show it if the work failed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    captured: list[str] = []
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))
