"""Copies of source models that the quantizers read as the runtimes do.

ai-edge-quantizer reads an operator's type only from ``builtin_code``; flatbuffers written
before that field existed (mediapipe's, among many) keep it in ``deprecated_builtin_code``
and leave ``builtin_code`` at 0, which is ADD: to the quantizer every op is an ADD and
nothing gets quantized. Its static modes also need a signature to calibrate through, which
older files do not have. onnxruntime's quantizer only quantizes weights held as initializers
of the main graph (not ``Constant`` nodes, nor the branches of ``If``/``Loop``), and writes
per-channel QDQ only from opset 13.

Each function returns the normalised bytes and what it changed, for the manifest.
"""

from __future__ import annotations

from typing import Any

from quantlens.models.base import unique_names
from quantlens.results import plain_name

SIGNATURE_KEY = "serving_default"
#: Per-channel QuantizeLinear/DequantizeLinear (their ``axis`` attribute) need opset 13.
MIN_PER_CHANNEL_OPSET = 13


def normalize_tflite(data: bytes) -> tuple[bytes, list[str]]:
    """A copy of a ``.tflite`` with every op code in the field ai-edge-quantizer reads and a
    ``serving_default`` signature when the file has none (inputs and outputs named as
    quantlens names them). Returns the bytes unchanged when nothing needed doing."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    changes: list[str] = []
    moved = 0
    for code in model.operatorCodes or []:
        if code.builtinCode < code.deprecatedBuiltinCode:
            code.builtinCode = code.deprecatedBuiltinCode
            moved += 1
    if moved:
        changes.append(f"op codes of {moved} op type(s) copied from deprecated_builtin_code "
                       "to builtin_code")  # fmt: skip
    folded = sum(_fold_float16_weights(model, sg, schema) for sg in model.subgraphs or [])
    if folded:
        changes.append(f"{folded} float16 weight(s) behind DEQUANTIZE stored as float32 "
                       "(the values the runtime computes)")  # fmt: skip
    renamed = _unique_tensor_names(model.subgraphs or [])
    if renamed:
        changes.append(f"{renamed} repeated tensor name(s) made unique (ai-edge-quantizer "
                       "keys tensors by name)")  # fmt: skip
    if not model.signatureDefs and model.subgraphs:
        model.signatureDefs = [_signature(model.subgraphs[0], schema)]
        changes.append(f"a '{SIGNATURE_KEY}' signature added over subgraph 0")
    if not changes:
        return data, []
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), changes


def _fold_float16_weights(model: Any, subgraph: Any, schema: Any) -> int:
    """Replace each DEQUANTIZE of a constant float16 weight (how float16 models store their
    weights: ai-edge-quantizer sees no float weight to quantize behind it) by the float32
    constant it computes; drop the ops and the float16 tensors. Returns how many."""
    import numpy as np

    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    tensors = subgraph.tensors or []
    users: dict[int, int] = {}
    for op in subgraph.operators or []:
        for t in op.inputs if op.inputs is not None else []:
            users[int(t)] = users.get(int(t), 0) + 1
    dropped_ops, dropped_tensors = [], set()
    for op in subgraph.operators or []:
        if codes[op.opcodeIndex] != schema.BuiltinOperator.DEQUANTIZE:
            continue
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        weight = tensors[src]
        buffer = model.buffers[weight.buffer] if 0 < weight.buffer < len(model.buffers) else None
        if (
            buffer is None
            or buffer.data is None
            or len(buffer.data) == 0
            or weight.type != schema.TensorType.FLOAT16
            or tensors[dst].type != schema.TensorType.FLOAT32
            or users.get(src) != 1
        ):
            continue  # fmt: skip
        values = np.frombuffer(bytes(bytearray(buffer.data)), dtype="<f2").astype("<f4")
        new = schema.BufferT()
        new.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
        model.buffers.append(new)
        tensors[dst].buffer = len(model.buffers) - 1
        buffer.data = None  # the float16 copy is no longer read
        dropped_ops.append(op)
        dropped_tensors.add(src)
    if not dropped_ops:
        return 0
    subgraph.operators = [op for op in subgraph.operators if op not in dropped_ops]
    keep = [i for i in range(len(tensors)) if i not in dropped_tensors]
    new_index = {old: new for new, old in enumerate(keep)}
    subgraph.tensors = [tensors[i] for i in keep]

    def remap(indices: Any) -> Any:
        if indices is None:
            return None
        return [new_index[int(i)] if int(i) >= 0 else int(i) for i in indices]

    for op in subgraph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        op.intermediates = remap(op.intermediates)
    subgraph.inputs, subgraph.outputs = remap(subgraph.inputs), remap(subgraph.outputs)
    index = model.subgraphs.index(subgraph)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == index:
            for m in [*(sig.inputs or []), *(sig.outputs or [])]:
                m.tensorIndex = new_index[int(m.tensorIndex)]
    return len(dropped_ops)


def _unique_tensor_names(subgraphs: list[Any]) -> int:
    """Give every tensor of the model its own name across all subgraphs ('x', 'x#2', ...);
    returns how many were renamed."""
    tensors = [t for sg in subgraphs for t in sg.tensors or []]
    names = unique_names([_name(t) for t in tensors])
    renamed = 0
    for tensor, name in zip(tensors, names, strict=True):
        if name != _name(tensor):
            tensor.name = name.encode()
            renamed += 1
    return renamed


def _signature(subgraph: Any, schema: Any) -> Any:
    def maps(indices: Any) -> list[Any]:
        names = unique_names([plain_name(_name(subgraph.tensors[i])) for i in indices])
        out = []
        for name, index in zip(names, indices, strict=True):
            m = schema.TensorMapT()
            m.name, m.tensorIndex = name, int(index)
            out.append(m)
        return out

    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = maps(list(subgraph.inputs))
    sig.outputs = maps(list(subgraph.outputs))
    return sig


def _name(tensor: Any) -> str:
    raw = tensor.name
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")


def normalize_onnx(model: Any) -> tuple[Any, list[str]]:
    """An ONNX model whose weights onnxruntime's quantizer can reach: ``Constant`` nodes
    turned into initializers (in ``If``/``Loop`` branches too), and the opset raised to 13
    when lower."""
    changes: list[str] = []
    moved = _constants_to_initializers(model.graph)
    if moved:
        changes.append(f"{moved} Constant node(s) made initializers (subgraphs included)")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset < MIN_PER_CHANNEL_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, MIN_PER_CHANNEL_OPSET)
        changes.append(f"opset {opset} raised to {MIN_PER_CHANNEL_OPSET} (per-channel QDQ)")
    return model, changes


def _constants_to_initializers(graph: Any) -> int:
    """Turn every ``Constant`` node holding a tensor into an initializer of its graph, in
    ``graph`` and every subgraph under it; returns how many."""
    import onnx

    moved = 0
    for node in list(graph.node):
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                moved += _constants_to_initializers(sub)
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            graph.node.remove(node)
            moved += 1
    return moved
