"""Per-op precisions a repair search can ask a quantizer for, and the rebuilder that makes them.

A *plan* maps the name an op is known by to the quantizer (see
:attr:`quantlens.backends.Backend.op_name`) to the precision it is kept at; every op not in
the plan stays as the mode quantizes it. What each runtime can express differs, so each
rebuilder says which precisions it offers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The op's weights and activations in float.
FLOAT = "float"
#: int16 activations with int8 weights (the 16x8 scheme) for this op only.
INT16 = "int16-act"
#: int8 weights dequantized to float before the op; its activations in float.
WEIGHTS_ONLY = "int8-weights"

DESCRIPTIONS: dict[str, str] = {
    FLOAT: "weights and activations in float",
    INT16: "int16 activations, int8 weights",
    WEIGHTS_ONLY: "int8 weights, float activations",
}
#: Cheapest first: the order in which a search prefers precisions that help equally.
BY_COST = (WEIGHTS_ONLY, INT16, FLOAT)

Plan = Mapping[str, str]


@dataclass(frozen=True)
class Boundary:
    """A model input or output the quantizer turns to integers, which a plan can keep float
    under ``key`` (``"INPUT name"`` / ``"OUTPUT name"``)."""

    key: str
    kind: str  # "INPUT" | "OUTPUT"
    tensor: str


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
