"""What both sides of a diagnosis share: the notes a report carries, the op sets, and how a
quantized model's activations are matched to the float model's."""

from __future__ import annotations

from collections.abc import Sequence

from quantlens.models.tflite_file import Graph, GraphTensor

INSPECTION_NOTE = (
    "inspection runs keep every intermediate tensor (.tflite: the built-in kernels, no "
    "delegate): their numbers can differ from the deployed kernels' (quantlens kernels "
    "shows by how much) and their speed is not the deployed speed"
)


ONNX_NOTE = (
    "every intermediate tensor is added to the ONNX graph's outputs, which can change how "
    "onnxruntime fuses nodes; matched by name as onnxruntime's qdq_loss_debug does"
)


_VALUE_DTYPES = {"float32", "float16", "int8", "uint8", "int16"}


#: TFLite ops whose input and output stand for the same value.
CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
#: Ops a quantizer inserts (TFLite and ONNX): they have no counterpart in the float model.
QUANTIZER_OPS = CONVERSION_OPS | {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


DATA_MOVEMENT_OPS = {  # TFLite and ONNX ops that only rearrange values
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "Reshape", "Squeeze", "Unsqueeze",
    "Transpose", "Flatten",
}  # fmt: skip


def match_activations(
    flt: Sequence[GraphTensor], qnt: Sequence[GraphTensor], qgraph: Graph
) -> dict[int, int]:
    """Quantized tensor index -> float tensor index.

    By name where both have the tensor; then, in graph order, the next unmatched float tensor
    of the same per-sample shape; a QUANTIZE/DEQUANTIZE output takes its input's match.
    """
    by_name: dict[str, list[GraphTensor]] = {}
    for f in flt:
        by_name.setdefault(f.name, []).append(f)
    pos = {f.index: k for k, f in enumerate(flt)}
    matched: dict[int, int] = {}
    used: set[int] = set()
    for q in qnt:
        cands = [f for f in by_name.get(q.name, []) if f.shape[1:] == q.shape[1:]] if q.name else []
        if len(cands) == 1 and cands[0].index not in used:
            matched[q.index] = cands[0].index
            used.add(cands[0].index)
    conversions = [
        op for op in qgraph.ops
        if op.op_type in CONVERSION_OPS and op.inputs and op.outputs
        and qgraph.tensors[op.inputs[0]].shape[1:] == qgraph.tensors[op.outputs[0]].shape[1:]
    ]  # fmt: skip

    def propagate() -> None:  # a conversion's input and output stand for the same value
        for op in conversions:
            src, dst = op.inputs[0], op.outputs[0]
            if src in matched and dst not in matched:
                matched[dst] = matched[src]
            elif dst in matched and src not in matched and not qgraph.tensors[src].constant:
                matched[src] = matched[dst]

    propagate()
    converted = {op.outputs[0] for op in conversions}
    last = -1
    for q in qnt:
        if q.index in matched:
            last = max(last, pos.get(matched[q.index], last))
            continue
        if q.index in converted:
            continue  # matched through its input below, never by position
        for f in flt[last + 1 :]:
            if f.index not in used and f.shape[1:] == q.shape[1:] and len(f.shape) == len(q.shape):
                matched[q.index] = f.index
                used.add(f.index)
                last = pos[f.index]
                break
    propagate()
    return matched
