"""Run an unknown ``.tflite`` once where a crash cannot take quantlens down.

The flatbuffer verifier accepts files the runtime then crashes on (an op that writes into the
graph's input, tensors that alias, a fuzzed header that XNNPACK trips over while preparing):
a SIGSEGV in the process that holds the user's run loses the run, the reports and, with fd 2
redirected at that moment, even the message. So the first load, allocation and invoke of each
model happen in a child process; a child that dies by a signal, or hangs, makes the model a
one-line error that names it and quotes what the child said. A model that passed is
remembered by the digest of its bytes, in this process and in the workers it starts.
"""

from __future__ import annotations

import functools
import hashlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from quantlens._process import ONE_BLAS_THREAD, die_with_parent
from quantlens.errors import ModelLoadError

#: Longest a model may take to load, allocate and run once in the child.
VERIFY_TIMEOUT_S = 120.0
#: Set to 1 to skip the child (the model is trusted not to crash the runtime).
SKIP_ENV = "QUANTLENS_NO_CONTAINMENT"

_CHILD = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter


def check(path):
    interp = Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    inputs = interp.get_input_details()
    for d in inputs:
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interp.invoke()
    sig = [d["shape_signature"] for d in inputs]
    if sig and all(len(s) and s[0] == -1 for s in sig):
        for d in inputs:  # the resize quantlens will do
            interp.resize_tensor_input(d["index"], [2, *d["shape"][1:]], strict=False)
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()


for line in sys.stdin:
    try:
        check(line.rstrip("\n"))
        print("ok", flush=True)
    except Exception:  # a refusal in words: the caller reports it with the runtime's message
        print("refused", flush=True)
"""


def _lasting_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
    """``subprocess.Popen`` from a thread that lasts as long as this process: the main
    thread, or one kept for it. On Linux a child that asks to die with its parent
    (die_with_parent) dies with the thread that started it, and the early checks' thread
    ends early in a run: a child it restarted after a crash was killed then, mid-check of
    the next model, which was reported as crashing (SIGKILL)."""
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(*args, **kwargs)
    return _spawner().submit(subprocess.Popen, *args, **kwargs).result()


@functools.cache
def _spawner() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(1, thread_name_prefix="quantlens-spawner")


class _Verifier:
    """One long-lived child that loads and runs models one after another (its start-up is
    paid once); a crash ends it, and the next model gets a new one. One question at a time:
    threads loading models take turns (an answer read by the wrong thread would be another
    model's)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._log: Any = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            # die_with_parent runs in the forked child before exec, while this process
            # waits: ctypes imported here (NumPy imports it anyway), not there (3-6 ms)
            import ctypes  # noqa: F401

            self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives with the child)
            self._proc = _lasting_popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._log, text=True, preexec_fn=die_with_parent,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **ONE_BLAS_THREAD},
            )  # fmt: skip
        return self._proc

    def prestart(self) -> None:
        with self._lock:
            self._start()

    def check(self, path: str, key: str) -> str:
        """'ok', 'refused', 'timeout', or the name of the signal that killed the child, with
        the last line it wrote to stderr. A model checked while this thread waited for its
        turn (an early check of the same bytes) is not checked again."""
        with self._lock:
            if key in _VERIFIED:
                return "ok"
            if key in _OUTCOMES:
                return _OUTCOMES[key]
            outcome = self._check(path)
            if outcome == "ok":
                _VERIFIED.add(key)
            elif outcome != "refused":  # 'refused': the runtime said why, the load reports it
                _OUTCOMES[key] = outcome
            return outcome

    def _check(self, path: str) -> str:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(os.path.abspath(path) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([proc.stdout], [], [], VERIFY_TIMEOUT_S)
        if not ready:
            proc.kill()
            proc.wait()
            return "timeout"
        answer = proc.stdout.readline().strip()
        if answer:
            return answer
        code = proc.wait()
        self._log.seek(0)
        said = [line for line in self._log.read().splitlines()
                if line.strip() and not line.startswith("INFO:")]  # fmt: skip
        name = signal.Signals(-code).name if code < 0 else f"exit {code}"
        return f"crash {name}" + (f": {said[-1].strip()[:200]}" if said else "")


_VERIFIER = _Verifier()


def prestart(paths: Sequence[str] = ()) -> None:
    """Start the child now, so its start-up overlaps the caller's own (it is otherwise
    started by the first model to check), and have it check ``paths`` (.tflite files) as
    soon as it is up, from a thread of this process: their loads later find them checked."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    _VERIFIER.prestart()
    if paths:
        threading.Thread(target=_check_early, args=(tuple(paths),), daemon=True,
                         name="quantlens-containment").start()  # fmt: skip


def _check_early(paths: tuple[str, ...]) -> None:
    for path in paths:
        sha = hashlib.sha256()
        try:
            with open(path, "rb") as f:  # in pieces: a large model is not held twice
                before = os.fstat(f.fileno())
                head = f.read(8)
                sha.update(head)
                while piece := f.read(2**20):
                    sha.update(piece)
                after = os.fstat(f.fileno())
        except OSError:
            continue  # the load reports it
        if head[4:8] == b"TFL3":
            if _identity(before) == _identity(after):
                _HASHED[os.path.abspath(path)] = (_identity(after), sha.hexdigest())
            _VERIFIER.check(path, sha.hexdigest())


_VERIFIED: set[str] = set()
#: Models the child crashed or hung on, by digest: a later load says so without a rerun.
_OUTCOMES: dict[str, str] = {}
#: Files hashed by the early check, by absolute path: what identified their bytes, and the
#: digest. A load that reads the file while it still has that identity need not hash the
#: bytes again (MobileNetV2 float and int8: 8 ms of the command's serial start).
_HASHED: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes whenever a file's bytes do: its ctime moves with any write or rename,
    and no user can set it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def digest(data: bytes) -> str:
    """The key a verified model is remembered by."""
    return hashlib.sha256(data).hexdigest()


def _digest_of_read(path: str, data: bytes) -> str:
    """:func:`digest` of ``data``, just read from ``path``: the early check's, when the file
    is as it was then (unchanged since, so before the read too)."""
    known = _HASHED.get(os.path.abspath(path))
    if known is not None:
        try:
            now = _identity(os.stat(path))
        except OSError:
            now = None
        if now == known[0] and now[2] == len(data):
            return known[1]
    return digest(data)


def mark_verified(digests: set[str] | tuple[str, ...]) -> None:
    """Remember models another process has verified (a worker, told by its parent)."""
    _VERIFIED.update(digests)


def verified() -> tuple[str, ...]:
    """The digests of every model verified in this process."""
    return tuple(sorted(_VERIFIED))


def ensure_contained(path: str, data: bytes) -> None:
    """Load, allocate and invoke the model once in a child process, unless already done.

    Raises:
        ModelLoadError: the child died by a signal (the runtime crashed) or timed out.
    """
    if os.environ.get(SKIP_ENV) == "1":
        return
    key = _digest_of_read(path, data)
    if key in _VERIFIED:
        return
    outcome = _VERIFIER.check(path, key)
    if outcome == "timeout":
        raise ModelLoadError(f"{path} did not load and run once within {VERIFY_TIMEOUT_S:.0f} "
                             "s; it is malformed or far too large")  # fmt: skip
    if outcome.startswith("crash"):
        raise ModelLoadError(
            f"{path} crashes the TFLite runtime ({outcome.removeprefix('crash ')}) when loaded or "
            "run; the file is malformed (re-export it)"
        )
