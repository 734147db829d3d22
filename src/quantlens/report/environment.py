"""Where a run happened and how to repeat it: package versions, CPU, threads, the command."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from typing import Any

from quantlens.versions import installed_versions

PACKAGES = ("quantlens", "numpy", "ai-edge-litert", "litert-quantizer", "ai-edge-quantizer",
            "tensorflow",
            "tensorflow-cpu", "scipy", "onnxruntime", "matplotlib")  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions of the packages that shape the numbers, the machine, and the command line."""
    return {
        "packages": installed_versions(PACKAGES),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": (settings or {}).get("num_threads", (settings or {}).get("threads")),
        "command": "quantlens " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "",
    }
