"""Did a quantizer do what its mode says? Each variant is compared with its source by the
dtypes of its weights and activations, so a file that only looks quantized (the quantizer
could not read the graph, or could not reach its weights) is an error, never a result."""

from __future__ import annotations

from dataclasses import dataclass

from quantlens.models.quantization import (
    INTEGER_WEIGHTS,
    ONNX_QUANTIZED_OPS,
    count_of,
)
from quantlens.results import ModelInfo


@dataclass(frozen=True)
class Expectation:
    """What a mode must change: ``weights`` or ``activations``, into one of ``dtypes``."""

    what: str
    dtypes: tuple[str, ...]


#: (source kind, mode) -> what the variant must hold; modes not listed are not checked
#: (float32 is the source itself).
EXPECTED: dict[tuple[str, str], Expectation] = {
    **{("tf", m): Expectation("weights", INTEGER_WEIGHTS) for m in ("dynamic",)},
    ("tf", "float16"): Expectation("weights", ("float16",)),
    **{("tf", m): Expectation("activations", ("int8",)) for m in ("int8", "int8-io")},
    ("tf", "int16x8"): Expectation("activations", ("int16",)),
    **{("tflite", m): Expectation("weights", INTEGER_WEIGHTS) for m in (
        "dynamic", "weight-only-int8", "weight-only-int4", "dynamic-int4",
        "dynamic-int4-block32", "dynamic-int4-block64")},
    ("tflite", "int8"): Expectation("activations", ("int8",)),
    ("tflite", "int16x8"): Expectation("activations", ("int16",)),
    ("onnx", "float16"): Expectation("weights", ("float16",)),
    ("onnx", "dynamic"): Expectation("weights", INTEGER_WEIGHTS),
    **{("onnx", m): Expectation("activations", ONNX_QUANTIZED_OPS) for m in (
        "int8", "int8-percentile", "int8-entropy", "int8-qoperator")},
}  # fmt: skip


def not_quantized_reason(kind: str, mode: str, source: ModelInfo, variant: ModelInfo) -> str | None:
    """Why the variant is not what ``mode`` promises (None when it is)."""
    expected = EXPECTED.get((kind, mode))
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
    counts = variant.op_counts if kind == "onnx" else variant.activation_dtypes
    if count_of(counts, expected.dtypes) > count_of(
        source.op_counts if kind == "onnx" else source.activation_dtypes, expected.dtypes
    ):
        return None
    what = "quantization op" if kind == "onnx" else f"{'/'.join(expected.dtypes)} activation"
    reason = f"mode '{mode}' quantized no activation: the variant has no {what}"
    if kind == "onnx" and count_of(source.op_counts, ("If", "Loop", "Scan")):
        reason += (" (the model computes inside If/Loop branches, which onnxruntime's static "
                   "quantizer does not enter; 'dynamic' does)")  # fmt: skip
    return reason
