"""Silencing the native libraries' own chatter (converter logs, artifact listings)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

_lock = threading.Lock()
_depth = 0
_saved: list[int] = []
_sink: IO[bytes] | None = None


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send file descriptors 1 and 2 to a temporary file for the duration of the block.

    TensorFlow's converter prints from C++ and Python alike, so redirecting ``sys.stdout``
    is not enough. The yielded list receives the captured text when the block ends, so a
    caller can show it if the work failed.

    The descriptors belong to the process, so blocks in several threads share one capture:
    the first to enter redirects, the last to leave restores (two independent captures would
    interleave their save and restore, and the terminal would end up in a temporary file).
    A block's text is what was written while it ran, other threads' chatter included.
    """
    global _depth, _sink
    with _lock:
        if _depth == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            _saved[:] = [os.dup(1), os.dup(2)]
            if _sink is None:  # one file for the process, emptied after each capture
                _sink = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (lives with the process)
            os.dup2(_sink.fileno(), 1)
            os.dup2(_sink.fileno(), 2)
        _depth += 1
        assert _sink is not None
        sink = _sink
        start = os.lseek(sink.fileno(), 0, os.SEEK_CUR)
    captured: list[str] = []
    try:
        yield captured
    finally:
        with _lock:
            sys.stdout.flush()
            sys.stderr.flush()
            end = os.lseek(sink.fileno(), 0, os.SEEK_CUR)
            captured.append(os.pread(sink.fileno(), end - start, start).decode(errors="replace"))
            _depth -= 1
            if _depth == 0:
                os.dup2(_saved[0], 1)
                os.dup2(_saved[1], 2)
                for fd in _saved:
                    os.close(fd)
                os.ftruncate(sink.fileno(), 0)  # a capture's text is not kept beyond it
                os.lseek(sink.fileno(), 0, os.SEEK_SET)
