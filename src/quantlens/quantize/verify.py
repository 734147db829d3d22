"""Did a quantizer do what its mode says? Each variant is compared with its source by the
dtypes of its weights and activations, so a file that only looks quantized (the quantizer
could not read the graph, or could not reach its weights) is an error, never a result."""

from __future__ import annotations

from dataclasses import dataclass

from quantlens.models.quantization import INTEGER_WEIGHTS, count_of
from quantlens.results import ModelInfo


@dataclass(frozen=True)
class Expectation:
    """What a mode must change: ``weights`` or ``activations`` into one of ``dtypes``.
    Activations are counted in the model's ``counted_in`` (its activation dtypes, or for a
    runtime whose quantization shows as ops, its op counts); ``unreachable`` names ops whose
    bodies the quantizer does not enter, and ``hint`` says so when the source has them."""

    what: str
    dtypes: tuple[str, ...]
    counted_in: str = "activation_dtypes"
    unreachable: tuple[str, ...] = ()
    hint: str = ""


def weights(*dtypes: str) -> Expectation:
    """The variant holds more weights of one of ``dtypes`` than its source."""
    return Expectation("weights", dtypes or INTEGER_WEIGHTS)


def activations(*dtypes: str) -> Expectation:
    """The variant has more activations of one of ``dtypes`` than its source."""
    return Expectation("activations", dtypes)


def not_quantized_reason(
    expected: Expectation | None, mode: str, source: ModelInfo, variant: ModelInfo
) -> str | None:
    """Why the variant is not what ``mode`` promises (None when it is, or when the mode
    promises nothing checkable: ``expected`` None)."""
    if expected is None:
        return None
    if expected.what == "weights":
        before = count_of(source.weight_dtypes, expected.dtypes)
        after = count_of(variant.weight_dtypes, expected.dtypes)
        if after > before:
            return None
        floats = variant.weight_dtypes.get("float32", 0)
        return (
            f"mode '{mode}' quantized no weight: the variant holds no more "
            f"{'/'.join(expected.dtypes)} weight elements than the source ({after:,}; "
            f"{floats:,} float32 weight elements remain)"
        )
    counted = getattr(variant, expected.counted_in)
    if count_of(counted, expected.dtypes) > count_of(getattr(source, expected.counted_in),
                                                     expected.dtypes):  # fmt: skip
        return None
    what = ("quantization op" if expected.counted_in == "op_counts"
            else f"{'/'.join(expected.dtypes)} activation")  # fmt: skip
    reason = f"mode '{mode}' quantized no activation: the variant has no {what}"
    if expected.unreachable and count_of(source.op_counts, expected.unreachable):
        reason += f" ({expected.hint})"
    return reason
