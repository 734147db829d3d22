"""Per-op precisions a repair search can ask a quantizer for, and the rebuilder that makes them.

A *plan* maps the name an op is known by to the quantizer (see
:attr:`quantlens.backends.Backend.op_name`) to the precision it is kept at; every op not in
the plan stays as the mode quantizes it. What each runtime can express differs, so each
rebuilder says which precisions it offers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantlens.results import PRECISIONS, boundary_key

#: The op's weights and activations in float.
FLOAT = "float"
#: int16 activations with int8 weights (the 16x8 scheme) for this op only.
INT16 = "int16-act"
#: int8 weights dequantized to float before the op; its activations in float.
WEIGHTS_ONLY = "int8-weights"

#: Cheapest first: the order in which a search prefers precisions that help equally.
BY_COST = (WEIGHTS_ONLY, INT16, FLOAT)

Plan = Mapping[str, str]

#: The manifest written beside a repaired model (``<model>.json``).
MANIFEST_SCHEMA = "quantlens.repair/1"
#: A manifest larger than this is not one quantlens wrote.
MANIFEST_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Boundary:
    """A model input or output the quantizer turns to integers, which a plan can keep float
    under its ``key`` (:func:`quantlens.results.boundary_key`)."""

    kind: str  # "INPUT" | "OUTPUT"
    tensor: str

    @property
    def key(self) -> str:
        return boundary_key(self.kind, self.tensor)


@dataclass
class Rebuilder:
    """Rebuilds one quantized mode of a source model with a plan applied.

    ``build(plan)`` returns the model's bytes and the quantizer settings used (for the
    manifest); it may be called from several threads.
    """

    mode: str
    precisions: tuple[str, ...]
    build: Callable[[Plan], tuple[bytes, dict[str, Any]]]
    boundaries: tuple[Boundary, ...] = field(default=())
    #: What the builds need for as long as the rebuilder lives (a cache directory).
    resources: Any = None

    def __call__(self, plan: Plan) -> bytes:
        return self.build(plan)[0]


def float_only(plan: Plan, tool: str) -> list[str]:
    """The names in a plan for a quantizer that can only keep ops in float.

    Raises:
        ValueError: the plan asks for another precision (a caller's bug: the rebuilder
            declares ``precisions=(FLOAT,)``).
    """
    other = sorted({p for p in plan.values() if p != FLOAT})
    if other:
        raise ValueError(f"{tool} keeps ops in float only, not {', '.join(other)}")
    return list(plan)


def read_manifest(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The repair manifest beside ``model`` (``<model>.json``): its mode and exactly what it
    keeps at which precision; None when there is none, or the file is not one (too large,
    not JSON, another schema, or fields of the wrong type: a file can be crafted)."""
    path = Path(model).with_suffix(".json")
    try:
        if not path.is_file() or path.stat().st_size > MANIFEST_MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        return None
    kept = data.get("kept")
    if not isinstance(data.get("mode"), str) or not isinstance(kept, list):
        return None
    if not all(isinstance(k, dict) and isinstance(k.get("name"), str)
               and k.get("precision") in PRECISIONS for k in kept):  # fmt: skip
        return None
    return data
