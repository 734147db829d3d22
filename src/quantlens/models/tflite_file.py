"""Reading a .tflite flatbuffer directly: op counts and weight dtypes, without a runtime."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from quantlens.errors import ModelLoadError


@dataclass(frozen=True)
class TfliteContents:
    """What the flatbuffer says about a model's graph."""

    op_counts: dict[str, int]
    weight_dtypes: dict[str, int]  # dtype name -> number of constant elements
    activation_dtypes: dict[str, int]  # dtype name -> number of non-constant tensors
    custom_ops: tuple[str, ...]
    #: The main subgraph's non-constant tensors: (shape as the file declares it, dtype).
    main_activations: tuple[tuple[tuple[int, ...], str], ...] = ()
    #: The main subgraph: a tensor read by a QUANTIZE op -> the first such op's output.
    quantized_by: dict[int, int] = field(default_factory=dict)


@cache
def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _opcode_names(model: Any) -> list[str]:
    """The op type of each operator code: a builtin's name, or 'CUSTOM:<name>'."""
    from ai_edge_litert import schema_py_generated as schema

    ops = _enum_names(schema.BuiltinOperator)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append("CUSTOM:" + (custom.decode(errors="replace") if custom else "?"))
        else:
            codes.append(ops.get(code, f"OP_{code}"))
    return codes


def _open(data: bytes, path: str) -> tuple[Any, list[str], dict[int, str]]:
    """The flatbuffer's root, its op type names, and the tensor type names."""
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(
            f"{path} is not a TFLite model (no TFL3 identifier); give a .tflite file"
        )
    try:
        model = schema.Model.GetRootAs(data, 0)
        return model, _opcode_names(model), _enum_names(schema.TensorType)
    except (IndexError, ValueError, TypeError, struct.error) as exc:
        raise ModelLoadError(f"{path} is a corrupt TFLite model ({exc}); re-export it") from exc


def _is_constant(model: Any, tensor: Any) -> bool:
    """The tensor holds data in the file (a weight, a bias, a shape)."""
    b = tensor.Buffer()
    buf = model.Buffers(b) if 0 < b < model.BuffersLength() else None
    return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)


def read_tflite_contents(data: bytes, path: str) -> TfliteContents:
    """Count ops by type and weight elements by dtype in a .tflite flatbuffer.

    Raises:
        ModelLoadError: the bytes are not a TFLite flatbuffer.
    """
    model, codes, types = _open(data, path)
    try:
        op_counts: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        activations: Counter[str] = Counter()
        main: list[tuple[tuple[int, ...], str]] = []
        quantized_by: dict[int, int] = {}
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for o in range(sg.OperatorsLength()):
                op = sg.Operators(o)
                code = codes[op.OpcodeIndex()]
                op_counts[code] += 1
                if s == 0 and code == "QUANTIZE" and op.InputsLength() and op.OutputsLength():
                    quantized_by.setdefault(int(op.Inputs(0)), int(op.Outputs(0)))
            for t in range(sg.TensorsLength()):
                tensor = sg.Tensors(t)
                dtype = types.get(tensor.Type(), f"TYPE_{tensor.Type()}").lower()
                if not _is_constant(model, tensor):
                    activations[dtype] += 1
                    if s == 0:
                        shape = tuple(int(tensor.Shape(d)) for d in range(tensor.ShapeLength()))
                        main.append((shape, dtype))
                    continue
                n = 1
                for d in range(tensor.ShapeLength()):
                    n *= max(tensor.Shape(d), 1)
                weights[dtype] += n
    except (IndexError, ValueError, TypeError, struct.error) as exc:
        raise ModelLoadError(f"{path} is a corrupt TFLite model ({exc}); re-export it") from exc
    custom_ops = tuple(sorted(c.split(":", 1)[1] for c in set(codes) if c.startswith("CUSTOM:")))
    return TfliteContents(dict(op_counts), dict(weights), dict(activations), custom_ops,
                          tuple(main), quantized_by)  # fmt: skip


@dataclass(frozen=True)
class GraphOp:
    """One operator of the main subgraph, in execution order."""

    index: int
    op_type: str
    inputs: tuple[int, ...]  # tensor indices (-1: an optional input left out)
    outputs: tuple[int, ...]
    name: str = ""  # ONNX nodes have names; TFLite operators do not


@dataclass(frozen=True)
class GraphTensor:
    """One tensor of the main subgraph."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    constant: bool  # holds data in the file (a weight, a bias, a shape)


@dataclass(frozen=True)
class Graph:
    """The main subgraph: operators in execution order and every tensor."""

    ops: tuple[GraphOp, ...]
    tensors: tuple[GraphTensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str = ""  # the subgraph's (or ONNX graph's) own name


def read_graph(data: bytes, path: str) -> Graph:
    """The operators and tensors of a .tflite's main subgraph, from the flatbuffer.

    Raises:
        ModelLoadError: the bytes are not a readable TFLite model.
    """
    model, codes, types = _open(data, path)
    try:
        sg = model.Subgraphs(0)
        tensors = []
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            constant = _is_constant(model, tensor)
            name = tensor.Name().decode(errors="replace") if tensor.Name() else ""
            shape = tuple(int(tensor.Shape(d)) for d in range(tensor.ShapeLength()))
            dtype = types.get(tensor.Type(), f"TYPE_{tensor.Type()}").lower()
            tensors.append(GraphTensor(t, name, dtype, shape, constant))
        graph_ops = []
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            graph_ops.append(
                GraphOp(
                    o,
                    codes[op.OpcodeIndex()],
                    tuple(int(op.Inputs(i)) for i in range(op.InputsLength())),
                    tuple(int(op.Outputs(i)) for i in range(op.OutputsLength())),
                )
            )
        inputs = tuple(int(sg.Inputs(i)) for i in range(sg.InputsLength()))
        outputs = tuple(int(sg.Outputs(i)) for i in range(sg.OutputsLength()))
        name = sg.Name().decode(errors="replace") if sg.Name() else ""
    except (IndexError, ValueError, TypeError, struct.error) as exc:
        raise ModelLoadError(f"{path} is a corrupt TFLite model ({exc}); re-export it") from exc
    return Graph(tuple(graph_ops), tuple(tensors), inputs, outputs, name)
