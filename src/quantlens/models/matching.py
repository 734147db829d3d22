"""Which tensor of one model is which tensor of another: by name when both models use the
same names, by position otherwise, with compatible per-sample shapes."""

from __future__ import annotations

from collections.abc import Sequence

from quantlens.errors import ModelMismatchError
from quantlens.models.base import Model
from quantlens.results import TensorSpec, plain_name


def _compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )


def match_tensors(
    ref: Sequence[TensorSpec], cand: Sequence[TensorSpec], kind: str, cand_name: str
) -> list[int]:
    """For each reference tensor, the index of the matching candidate tensor.

    Tensors are matched by name when both models use the same set of names, otherwise by
    order; matched tensors must have compatible per-sample shapes.

    Raises:
        ModelMismatchError: the counts differ, or a matched pair has different shapes.
    """
    if len(ref) != len(cand):
        raise ModelMismatchError(
            f"{cand_name} has {len(cand)} {kind}(s) but the reference has {len(ref)}; "
            "compare models made from the same source"
        )
    ref_names = [plain_name(t.name) for t in ref]
    cand_names = [plain_name(t.name) for t in cand]
    if len(set(ref_names)) == len(ref_names) and set(ref_names) == set(cand_names):
        order = [cand_names.index(n) for n in ref_names]
    else:
        order = list(range(len(ref)))
    for r, i in zip(ref, order, strict=True):
        c = cand[i]
        if not _compatible(r.sample_shape, c.sample_shape):
            raise ModelMismatchError(
                f"{cand_name} {kind} '{c.name}' has per-sample shape {c.sample_shape} where the "
                f"reference's '{r.name}' has {r.sample_shape}; compare models of the same graph"
            )
    return order


def feed_order(ref: Sequence[TensorSpec], cand: Sequence[TensorSpec], cand_name: str) -> list[int]:
    """For each candidate input, the index of the reference input that feeds it."""
    order = match_tensors(ref, cand, "input", cand_name)
    inverse = [0] * len(order)
    for ref_i, cand_i in enumerate(order):
        inverse[cand_i] = ref_i
    return inverse


def wire(models: Sequence[Model]) -> list[tuple[list[int], list[int]]]:
    """Per model: (reference input feeding each of its inputs, its output matching each
    reference output)."""
    ref = models[0]
    wiring = [(list(range(len(ref.inputs))), list(range(len(ref.outputs))))]
    for c in models[1:]:
        wiring.append((feed_order(ref.inputs, c.inputs, c.name),
                       match_tensors(ref.outputs, c.outputs, "output", c.name)))  # fmt: skip
    return wiring
