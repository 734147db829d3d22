"""Writing reports atomically (a temporary file, then a rename): none is ever half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from quantlens.errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early, before any work, when a report could not be written to ``path``.

    Raises:
        ConfigError: the path is a directory, or its nearest existing ancestor is not a
            writable directory.
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path for the report")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {target}: {parent} is not a writable directory")


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory.

    Raises:
        ConfigError: the path is a directory or cannot be written (permissions, full disk).
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path for the report")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"report not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p} is not a JSON report ({exc}); give a --json file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} is not a quantlens report; give a file written by --json")
    return data
