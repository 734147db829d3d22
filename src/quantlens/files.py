"""Writing reports atomically (a temporary file, then a rename): none is ever half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from quantlens.errors import ConfigError
from quantlens.results import BenchResult, EvaluationResult, KernelCheck


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Where no report belongs: the kernel's and devices' file systems, and the system's own files.
SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/bin", "/sbin", "/lib",
               "/lib32", "/lib64", "/usr", "/var/lib", "/var/run")  # fmt: skip
#: How a previous quantlens report starts (JSON, HTML, Markdown, Model Explorer node data):
#: these may be replaced.
_REPORT_MARKS = ('"schema": "quantlens.', '<meta name="generator" content="quantlens"',
                 "### quantlens ", '"name": "quantlens: ')  # fmt: skip


def _is_quantlens_report(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return any(mark in head for mark in _REPORT_MARKS)


def check_report_paths(
    paths: dict[str, str | os.PathLike[str]], *, force: bool = False, mkdir: bool = False
) -> None:
    """Refuse, before any work, report paths that would write where nobody asked.

    Args:
        paths: report kind (``json``, ``report``, ``markdown``) -> path.
        force: replace an existing file that is not a quantlens report.
        mkdir: create a missing directory.

    Raises:
        ConfigError: two kinds share a path; the path is a symlink, a directory or another
            non-regular file, lies in a system location, is an existing file that is not a
            previous quantlens report (without ``force``), or its directory is missing
            (without ``mkdir``) or not writable.
    """
    seen: dict[str, str] = {}
    for kind, raw in paths.items():
        target = Path(raw)
        key = os.path.realpath(target)
        if key in seen:
            raise ConfigError(f"--{seen[key]} and --{kind} both write {target}; give each "
                              "report its own path")  # fmt: skip
        seen[key] = kind
        if target.is_symlink():
            raise ConfigError(f"{target} is a symbolic link; give the path of a regular file "
                              "(reports never follow links)")  # fmt: skip
        if any(key == d or key.startswith(d + "/") for d in SYSTEM_DIRS):
            raise ConfigError(f"{target} is in a system location ({key}); write reports "
                              "elsewhere")  # fmt: skip
        if target.exists():
            if target.is_dir():
                raise ConfigError(f"{target} is a directory; give a file path for the report")
            if not target.is_file():
                raise ConfigError(f"{target} is not a regular file; give a file path")
            if not force and not _is_quantlens_report(target):
                raise ConfigError(f"{target} exists and is not a quantlens report; pass --force "
                                  "to replace it, or give another path")  # fmt: skip
        parent = target.parent
        if not parent.exists():
            if not mkdir:
                raise ConfigError(f"cannot write {target}: the directory {parent} does not "
                                  "exist; create it or pass --mkdir")  # fmt: skip
            while not parent.exists():
                parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"cannot write {target}: {parent} is not a writable directory")


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """A file opened for writing that appears at ``path`` whole when the block ends, or not
    at all (a temporary file in the same directory, then a rename).

    Raises:
        ConfigError: the path is a directory or cannot be written (permissions, full disk).
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory.

    Raises:
        ConfigError: the path is a directory or cannot be written (permissions, full disk).
    """
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON (strict: no NaN or infinity literals)."""
    return write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", path)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a saved report.

    Raises:
        ConfigError: the file is missing or is not JSON.
    """
    p = Path(path)
    try:
        if not p.is_file():
            raise FileNotFoundError(p) if not p.exists() else OSError("not a regular file")
        if p.stat().st_size > MAX_REPORT_BYTES:
            raise OSError(f"larger than {MAX_REPORT_BYTES // 2**20} MiB")
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"report not found: {p}") from None
    except RecursionError:
        raise ConfigError(f"{p} is nested too deeply to be a quantlens report") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p} is not a JSON report ({exc}); give a --json file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} is not a quantlens report; give a file written by --json")
    return data


#: A saved report larger than this is not one quantlens wrote.
MAX_REPORT_BYTES = 256 * 2**20


def read_report(path: str | os.PathLike[str]) -> EvaluationResult | BenchResult | KernelCheck:
    """Read a saved evaluate, compare or bench report through its ``from_dict``, which checks
    that it is well formed (every field of its schema present and of its type), so that gates
    and diffs read no garbage.

    Raises:
        ConfigError: the file is not a well-formed quantlens report.
    """
    from quantlens.errors import QuantlensError
    from quantlens.results import report_from_dict

    data = read_json(path)
    try:
        return report_from_dict(data)
    except QuantlensError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)[:200]
        raise ConfigError(f"{path} is not a well-formed quantlens report ({what}); give a file "
                          "written by --json") from None  # fmt: skip
