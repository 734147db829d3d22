"""Installed packages' versions, read without importing them or importlib.metadata."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence


def _key(name: str) -> str:
    """A distribution's name as installers spell it in metadata directories (PEP 503
    normalised, with ``_`` for the separators)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_versions(names: Sequence[str]) -> dict[str, str]:
    """The installed version of each of ``names`` that is installed, as
    ``importlib.metadata.version`` finds it: the first ``NAME-VERSION.dist-info`` (or
    ``.egg-info``) directory on ``sys.path``. Read from the directories' names:
    importlib.metadata parses each package's METADATA with the email parser, 25 ms for these
    ten at the end of every run that writes a report."""
    wanted = {_key(n): n for n in names}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            stem, dot, suffix = item.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            name, dash, rest = stem.partition("-")
            name = wanted.get(_key(name), "")
            if dash and name and name not in found:
                found[name] = rest.split("-", 1)[0]  # an egg-info's ``-py3.11`` dropped
    return {n: found[n] for n in names if n in found}


def version_of(name: str) -> str | None:
    """One installed distribution's version (None when it is not installed)."""
    return installed_versions([name]).get(name)
