"""The LiteRT side of a diagnosis: a ``.tflite`` run with every intermediate tensor kept and
the default delegates off (XNNPACK hides the tensors inside its partitions), its graph read
from the flatbuffer, quantized values dequantized with the tensor's own parameters."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.diagnose.common import _VALUE_DTYPES, match_activations
from quantlens.metrics.kernels import sqnr_db
from quantlens.models.litert import LiteRTModel, quant_params
from quantlens.models.quantization import dequantize
from quantlens.models.tflite_file import Graph, GraphTensor, read_graph
from quantlens.results import QuantParams, WeightRow


@dataclass(frozen=True)
class TFLiteSide:
    """One model opened for inspection."""

    model: LiteRTModel
    graph: Graph
    quant: dict[int, QuantParams]  # tensor index -> its quantization, when it has one

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TFLiteSide:
        p = Path(path)
        # Half the cores each: the float and the quantized model run side by side.
        model = LiteRTModel(p, use_default_delegates=False, preserve_all_tensors=True,
                            num_threads=max(1, (os.cpu_count() or 1) // 2))  # fmt: skip
        graph = read_graph(p.read_bytes(), str(p))
        quant = {}
        for d in model.tensor_details():
            qp = quant_params(d)
            if qp is not None:
                quant[d["index"]] = qp
        return cls(model, graph, quant)

    @property
    def viewer_graph(self) -> tuple[str, str]:
        """How Model Explorer knows this graph (the subgraph's name, "main" when it has none)
        and its ops (by their output tensors' names)."""
        return self.graph.name or "main", "tensor"

    def activations(self) -> list[GraphTensor]:
        """Model inputs, then every op's outputs in execution order, that hold values."""
        tensors = self.graph.tensors
        # outputs of ops fed only constants (a float16 weight's DEQUANTIZE) are weights
        computed = [
            op for op in self.graph.ops
            if not all(i < 0 or tensors[i].constant for i in op.inputs)
        ]  # fmt: skip
        order = list(self.graph.inputs) + [t for op in computed for t in op.outputs]
        seen: dict[int, GraphTensor] = {}
        for i in order:
            t = self.graph.tensors[i]
            if i not in seen and not t.constant and t.dtype in _VALUE_DTYPES:
                seen[i] = t
        return list(seen.values())

    def twin(self) -> TFLiteSide:
        """This model on a second interpreter: the runtime overwrites a model's tensors when
        it runs again, and they are read in place."""
        return replace(self, model=self.model.twin())

    def real(self, index: int, raw: np.ndarray) -> np.ndarray:
        qp = self.quant.get(index)
        if qp is not None and raw.dtype.kind in "iu":
            return dequantize(raw, qp)
        return np.asarray(raw, dtype=np.float32)  # no copy of a float32 tensor

    def match(self, flt: Any) -> dict[int, int]:
        """This (quantized) model's tensor index -> the float model's."""
        return match_activations(flt.activations(), self.activations(), self.graph)

    def weight_rows(self, flt: Any, pairs: dict[int, int]) -> list[WeightRow]:
        return _weight_rows(flt, self, pairs)


def _weight_rows(flt: TFLiteSide, qnt: TFLiteSide, pairs: dict[int, int]) -> list[WeightRow]:
    """SQNR of each quantized weight (dequantized) against the float weight it replaces."""
    f_const = {t.name: t for t in flt.graph.tensors if t.constant}
    f_ops_by_out = {out: op for op in flt.graph.ops for out in op.outputs}
    rows = []
    for op in qnt.graph.ops:
        f_op = f_ops_by_out.get(pairs.get(op.outputs[0], -1)) if op.outputs else None
        for slot, i in enumerate(op.inputs):
            if i < 0:
                continue
            t = qnt.graph.tensors[i]
            if not t.constant or (i not in qnt.quant and t.dtype != "float16"):
                continue
            f = f_const.get(t.name)
            if (f is None or f.shape != t.shape) and f_op is not None and slot < len(f_op.inputs):
                cand = flt.graph.tensors[f_op.inputs[slot]]
                f = cand if cand.constant and cand.shape == t.shape else None
            if f is None or f.dtype != "float32":
                continue
            try:
                q_raw = qnt.model.tensor_value(i)
                f_val = flt.model.tensor_value(f.index).astype(np.float64)
            except (ValueError, RuntimeError):
                continue  # e.g. int4, which the runtime does not hand out
            q_val = qnt.real(i, q_raw).astype(np.float64)
            err = q_val - f_val
            rows.append(WeightRow(
                i, t.name, op.index, op.op_type, t.dtype,
                sqnr_db(float((f_val**2).sum()), float((err**2).sum())),
                float(np.abs(err).max(initial=0.0)),
            ))  # fmt: skip
    return rows


def quantized_mode(path: str | os.PathLike[str]) -> str:
    """The ai-edge-quantizer mode closest to how a .tflite was quantized."""
    info = LiteRTModel(Path(path)).info()
    if info.activation_dtypes.get("int16"):
        return "int16x8"
    if info.activation_dtypes.get("int8"):
        return "int8"
    if info.weight_dtypes.get("int4"):
        return "dynamic-int4"
    return "dynamic"
