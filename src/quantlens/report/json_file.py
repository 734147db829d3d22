"""Writing and reading JSON reports, atomically so that no half-written report is left."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from quantlens.errors import ConfigError


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON to ``path`` via a temporary file and a rename."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path for the JSON report")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
