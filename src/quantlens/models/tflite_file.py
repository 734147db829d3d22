"""Reading a .tflite flatbuffer directly: op counts and weight dtypes, without a runtime."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache

from quantlens.errors import ModelLoadError


@dataclass(frozen=True)
class TfliteContents:
    """What the flatbuffer says about a model's graph."""

    op_counts: dict[str, int]
    weight_dtypes: dict[str, int]  # dtype name -> number of constant elements
    activation_dtypes: dict[str, int]  # dtype name -> number of non-constant tensors
    custom_ops: tuple[str, ...]


@cache
def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite_contents(data: bytes, path: str) -> TfliteContents:
    """Count ops by type and weight elements by dtype in a .tflite flatbuffer.

    Raises:
        ModelLoadError: the bytes are not a TFLite flatbuffer.
    """
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(
            f"{path} is not a TFLite model (no TFL3 identifier); give a .tflite file"
        )
    ops = _enum_names(schema.BuiltinOperator)
    types = _enum_names(schema.TensorType)
    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code == schema.BuiltinOperator.CUSTOM:
                custom = oc.CustomCode()
                codes.append("CUSTOM:" + (custom.decode() if custom else "?"))
            else:
                codes.append(ops.get(code, f"OP_{code}"))
        op_counts: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        activations: Counter[str] = Counter()
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for o in range(sg.OperatorsLength()):
                op_counts[codes[sg.Operators(o).OpcodeIndex()]] += 1
            for t in range(sg.TensorsLength()):
                tensor = sg.Tensors(t)
                dtype = types.get(tensor.Type(), f"TYPE_{tensor.Type()}").lower()
                b = tensor.Buffer()
                buf = model.Buffers(b) if 0 < b < model.BuffersLength() else None
                if buf is None or (buf.DataLength() == 0 and buf.Size() == 0):
                    activations[dtype] += 1
                    continue
                n = 1
                for d in range(tensor.ShapeLength()):
                    n *= max(tensor.Shape(d), 1)
                weights[dtype] += n
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is a corrupt TFLite model ({exc}); re-export it") from exc
    custom_ops = tuple(sorted(c.split(":", 1)[1] for c in set(codes) if c.startswith("CUSTOM:")))
    return TfliteContents(dict(op_counts), dict(weights), dict(activations), custom_ops)
