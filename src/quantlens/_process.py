"""Process-wide settings: child processes that end with the process that started them, an
allocator that keeps the memory a batch's temporaries free for the next batch, and NumPy's
BLAS on one thread."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import MutableMapping


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


#: glibc keeps up to this much free memory at the top of its heap...
KEPT_FREE_BYTES = 64 * 2**20
#: ...and serves blocks up to this size from the heap rather than mapping each afresh.
HEAP_BLOCK_BYTES = 16 * 2**20


@functools.cache
def reuse_freed_memory() -> None:
    """Let freed memory be reused rather than handed back to the kernel (glibc on Linux; a
    no-op elsewhere; once per process).

    NumPy frees each temporary of a batch before the next batch makes one of the same size.
    By default glibc maps any block over 128 KiB afresh, and trims the heap as soon as its
    free top passes twice that, so every such temporary costs page faults: 45% of the
    fidelity update of a 4,096×10 block of outputs (2.8 -> 1.5 ms). What this keeps is
    bounded (KEPT_FREE_BYTES), so memory stays flat in the data's size.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(m_trim_threshold, KEPT_FREE_BYTES)
        libc.mallopt(m_mmap_threshold, HEAP_BLOCK_BYTES)
    except (OSError, AttributeError):  # not glibc
        return


#: NumPy's OpenBLAS starts a thread per core as NumPy is imported: 35 ms of every command
#: here, and 60-90 ms when another process imports NumPy at the same moment (the
#: crash-containment child does, while the command imports its own modules). quantlens
#: multiplies no matrices large enough for those threads to help, and runs its own.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}


def one_blas_thread(env: MutableMapping[str, str] = os.environ) -> None:
    """Ask for one BLAS thread in ``env`` (this process's: before NumPy is imported),
    unless the user chose a number."""
    for name, value in ONE_BLAS_THREAD.items():
        env.setdefault(name, value)
