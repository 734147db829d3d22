"""The ONNX side of a diagnosis: every intermediate tensor exposed as a graph output, tensors
matched by name as onnxruntime's ``qdq_loss_debug`` does (a QDQ model's dequantized value of
``x`` is ``x_DequantizeLinear_Output``, or ``x`` itself when ``x_QuantizeLinear_Input`` holds
the value before quantization)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.diagnose.common import ONNX_NOTE
from quantlens.metrics.kernels import sqnr_db
from quantlens.models.onnx import OnnxModel, session
from quantlens.models.tflite_file import Graph, GraphOp, GraphTensor
from quantlens.results import WeightRow

DEQUANT_SUFFIXES = ("_DequantizeLinear_Output", "_DequantizeLinear_Output_1")
_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64"}


class _Runner:
    """The model's own inputs/outputs, and a session that also returns every node output."""

    def __init__(self, model: OnnxModel, names: list[str]) -> None:
        import onnx

        self.inputs, self.outputs, self.name = model.inputs, model.outputs, model.name
        self.path, self.proto = model.path, model.proto
        extended = onnx.ModelProto()
        extended.CopyFrom(model.proto)
        existing = {o.name for o in extended.graph.output}
        for n in names:
            if n not in existing:
                extended.graph.output.append(onnx.ValueInfoProto(name=n))
        self._session = session(model.path, None, model_bytes=extended.SerializeToString())
        self._names = names
        self._model = model
        self.info = model.info
        self.probe_batching = model.probe_batching  # decides for the session here too

    def predict_tensors(
        self, inputs: Sequence[np.ndarray], indices: Sequence[int], *, views: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The outputs and the tensors ``indices`` (onnxruntime hands over its own arrays, so
        ``views`` changes nothing)."""
        wanted = [o.name for o in self.outputs] + [self._names[i] for i in indices]

        def run(own: list[np.ndarray]) -> list[np.ndarray]:
            feed = {s.name: np.ascontiguousarray(x, dtype=s.dtype)
                    for s, x in zip(self.inputs, own, strict=True)}  # fmt: skip
            return [np.asarray(g) for g in self._session.run(wanted, feed)]

        got = self._model.batch_runner.predict(inputs, run, len(self.outputs))
        n = len(self.outputs)
        return got[:n], got[n:]


@dataclass
class OnnxSide:
    """One .onnx model opened for inspection."""

    model: Any
    graph: Graph
    quant: dict[int, Any]
    note: str
    aliases: dict[int, int]  # an op's float output -> its QuantizeLinear→DequantizeLinear value
    skip_ops: tuple[str, ...] = ("QuantizeLinear", "DequantizeLinear")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> OnnxSide:

        model = OnnxModel(Path(path))
        g = model.proto.graph
        consts = {i.name for i in g.initializer}
        types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
        names: list[str] = []
        index: dict[str, int] = {}

        def idx(name: str) -> int:
            if not name:
                return -1
            if name not in index:
                index[name] = len(names)
                names.append(name)
            return index[name]

        ops = []
        for k, node in enumerate(g.node):
            ins = tuple(idx(n) for n in node.input)
            outs = tuple(idx(n) for n in node.output)
            ops.append(GraphOp(k, node.op_type, ins, outs, node.name))
        inputs = tuple(idx(i.name) for i in g.input if i.name not in consts)
        outputs = tuple(idx(o.name) for o in g.output)
        produced_by = {o: op for op in ops for o in op.outputs}
        tensors = []
        for i, n in enumerate(names):
            op = produced_by.get(i)
            dtype = _FLOAT_TYPES.get(types.get(n, 1), "int8")
            if op is not None and op.op_type == "QuantizeLinear":
                dtype = "int8"
            tensors.append(GraphTensor(i, n, dtype, (), n in consts))
        graph = Graph(tuple(ops), tuple(tensors), inputs, outputs, g.name)
        readers: dict[int, list[GraphOp]] = {}
        for op in ops:
            for i in op.inputs:
                readers.setdefault(i, []).append(op)
        aliases = {}
        for op in ops:
            for out in op.outputs:
                q = [r for r in readers.get(out, []) if r.op_type == "QuantizeLinear"]
                dq = (
                    [r for r in readers.get(q[0].outputs[0], []) if r.op_type == "DequantizeLinear"]
                    if q
                    else []
                )
                if dq:
                    aliases[out] = dq[0].outputs[0]
        return cls(_Runner(model, names), graph, {}, ONNX_NOTE, aliases)

    @property
    def viewer_graph(self) -> tuple[str, str]:
        """How Model Explorer's ONNX adapter (model-explorer-onnx) knows this graph (its name,
        "<main>" when it has none) and its ops (by node name)."""
        return self.graph.name or "<main>", "node"

    def activations(self) -> list[GraphTensor]:
        """Model inputs and node outputs holding float values, in graph order."""
        order = list(self.graph.inputs) + [t for op in self.graph.ops for t in op.outputs]
        seen: dict[int, GraphTensor] = {}
        for i in order:
            t = self.graph.tensors[i]
            if i not in seen and not t.constant and t.dtype.startswith("float"):
                seen[i] = t
        return list(seen.values())

    def twin(self) -> OnnxSide:
        """This side itself: onnxruntime hands over arrays of its own, which a next run does
        not overwrite."""
        return self

    def real(self, index: int, raw: np.ndarray) -> np.ndarray:
        return raw.astype(np.float32)

    def match(self, flt: OnnxSide) -> dict[int, int]:
        """By name: the dequantized value of each float tensor in this (QDQ) model."""
        mine = {t.name: t.index for t in self.activations()}
        pairs: dict[int, int] = {}
        for f in flt.activations():
            # the dequantized value first; else the tensor of the same name, which in a QDQ
            # model is the value after quantization when x_QuantizeLinear_Input exists
            candidates = [f.name + s for s in DEQUANT_SUFFIXES] + [f.name]
            for name in candidates:
                if name in mine and mine[name] not in pairs:
                    pairs[mine[name]] = f.index
                    break
        return pairs

    def weight_rows(self, flt: OnnxSide, pairs: dict[int, int]) -> list[WeightRow]:
        """SQNR of each quantized weight, as the graph dequantizes it, against the float one.

        The dequantized weights are read from the running graph (onnxruntime's
        create_weight_matching misreads per-channel biases).
        """
        import onnx

        floats = {i.name: onnx.numpy_helper.to_array(i)
                  for i in flt.model.proto.graph.initializer}  # fmt: skip
        dq = {
            t.index: t.name[: -len(DEQUANT_SUFFIXES[0])]
            for t in self.graph.tensors
            if t.name.endswith(DEQUANT_SUFFIXES[0])
            and t.name[: -len(DEQUANT_SUFFIXES[0])] in floats
        }
        if not dq:
            return []
        dummy = [
            np.zeros((1, *(d or 1 for d in s.sample_shape)), s.dtype) for s in self.model.inputs
        ]
        _, values = self.model.predict_tensors(dummy, list(dq))
        consumers = {i: op for op in self.graph.ops for i in op.inputs}
        rows = []
        for (i, name), q in zip(dq.items(), values, strict=True):
            f = np.asarray(floats[name], dtype=np.float64)
            err = np.asarray(q, dtype=np.float64) - f
            if err.shape != f.shape:
                continue
            op = consumers.get(i)
            rows.append(WeightRow(
                i, name, op.index if op else -1, op.op_type if op else "", "int",
                sqnr_db(float((f**2).sum()), float((err**2).sum())),
                float(np.abs(err).max(initial=0.0)),
            ))  # fmt: skip
        return rows


def quantized_mode(path: str | os.PathLike[str]) -> str:
    """The onnxruntime mode closest to how an .onnx was quantized."""
    ops = OnnxModel(Path(path)).info().op_counts
    if "QLinearMatMul" in ops or "QLinearConv" in ops:
        return "int8-qoperator"
    return "int8" if "QuantizeLinear" in ops else "dynamic"
