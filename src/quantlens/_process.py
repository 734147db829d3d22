"""Child processes that end with the process that started them."""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux ``PR_SET_PDEATHSIG``),
    so a killed quantlens leaves no worker behind. A no-op elsewhere.

    Used as a worker pool's initializer and a subprocess's ``preexec_fn``.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)
