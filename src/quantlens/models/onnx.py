"""``.onnx`` models through onnxruntime (float, QDQ and QOperator), imported lazily."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.errors import ModelLoadError, ModelRunError, QuantlensError, brief, require
from quantlens.models.base import path_size
from quantlens.models.batching import (
    BatchRunner,
    RunnerBatching,
    filled_sample_shape,
    tensor_bytes,
)
from quantlens.results import ModelInfo, QuantParams, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}  # fmt: skip


def load_checked(path: str) -> Any:
    """Load an ONNX file and run ``onnx.checker`` on it before any runtime sees it.

    Raises:
        ModelLoadError: the file is not a valid ONNX model.
    """
    onnx = require("onnx", "onnx", "loading an .onnx model")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises protobuf, checker and OS errors alike
        raise ModelLoadError(
            f"{path} is not a valid ONNX model ({brief(exc)}); re-export it"
        ) from exc
    return model


def _shape(dims: Sequence[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in dims)


#: The graph optimization levels an .onnx can run at (name -> what runs), the reference first.
KERNEL_PATHS = {
    "unoptimized": "graph optimizations off (ORT_DISABLE_ALL): the nodes as the file has them",
    "basic": "basic graph optimizations (ORT_ENABLE_BASIC): constant folding, node removal",
    "optimized": "as deployed by default: every graph optimization and fusion (ORT_ENABLE_ALL)",
}


def session(path: str, num_threads: int | None, *, profile_prefix: str | None = None,
            model_bytes: bytes | None = None, optimization: str = "optimized") -> Any:  # fmt: skip
    """An onnxruntime CPU session with ``num_threads`` intra-op threads and the graph
    optimizations of ``optimization`` (one of :data:`KERNEL_PATHS`)."""
    ort = require("onnxruntime", "onnx", "running an .onnx model")
    options = ort.SessionOptions()
    # Fatal only: a failed run's error comes back as the exception quantlens reports (or, in
    # the batching probe, as the reason a batch does not run); ONNX Runtime would print it
    # again on stderr first, a 400-character line in red.
    options.log_severity_level = 4
    options.graph_optimization_level = {
        "unoptimized": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "optimized": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(
            model_bytes if model_bytes is not None else path, sess_options=options,
            providers=["CPUExecutionProvider"],
        )  # fmt: skip
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelLoadError(f"onnxruntime cannot run {path}: {brief(exc)}") from exc


#: Constants up to this size keep their values for shape inference (a Reshape's target shape);
#: larger ones (weights) keep only their dimensions.
_SHAPE_CONSTANT_BYTES = 4096


def _shapes_only(model: Any) -> Any:
    """A copy of ``model`` whose large constants are dimensions without data: what shape
    inference needs, without copying the weights."""
    out = _copy_except(model, "graph")
    out.graph.CopyFrom(_copy_except(model.graph, "initializer"))
    for init in model.graph.initializer:
        kept = out.graph.initializer.add()
        if init.ByteSize() <= _SHAPE_CONSTANT_BYTES:
            kept.CopyFrom(init)
        else:
            kept.name, kept.data_type = init.name, init.data_type
            kept.dims.extend(init.dims)
    return out


def _copy_except(message: Any, skip: str) -> Any:
    """A copy of a protobuf message without its field ``skip``."""
    out = type(message)()
    for field, value in message.ListFields():
        if field.name == skip:
            continue
        repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.29; label before
        if repeated if repeated is not None else field.label == field.LABEL_REPEATED:
            getattr(out, field.name).extend(value)
        elif field.message_type is not None:
            getattr(out, field.name).CopyFrom(value)
        else:
            setattr(out, field.name, value)
    return out


class OnnxModel(RunnerBatching):
    """An ``.onnx`` model run by onnxruntime on the CPU, verified by ``onnx.checker`` first."""

    format = "onnx"

    def __init__(
        self, path: str | Path, *, num_threads: int | None = None, kernels: str | None = None
    ) -> None:
        """``kernels`` picks one of :data:`KERNEL_PATHS` (default: every optimization)."""
        self.path = str(path)
        self.name = Path(path).stem
        self._num_threads = num_threads
        self.proto = load_checked(self.path)  # the checked graph, for readers of its nodes
        self._session = session(self.path, num_threads, optimization=kernels or "optimized")
        self.inputs = tuple(
            TensorSpec(i.name, _shape(i.shape), _ORT_TYPES.get(i.type, "float32"))
            for i in self._session.get_inputs()
        )
        self.outputs = tuple(
            TensorSpec(o.name, _shape(o.shape), _ORT_TYPES.get(o.type, "float32"))
            for o in self._session.get_outputs()
        )
        self._runner = BatchRunner(self.inputs, self.outputs)
        #: working_bytes_per_sample by the inputs' sample shapes
        self._working: dict[tuple[tuple[int, ...], ...], int | None] = {}

    def _feed(self, own: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {
            s.name: np.ascontiguousarray(x, dtype=s.dtype)
            for s, x in zip(self.inputs, own, strict=True)
        }

    def run(self, inputs: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[Any]:
        """Run one batch (sample-first) and return the named tensors, batch first (every
        output when ``names`` is None; named tensors are taken to be batched on axis 0).

        The batch runs as :attr:`batching` says (resized, in chunks of a declared batch, or
        one sample at a time).
        """
        n_outputs = len(self.outputs) if names is None else 0
        try:
            return self._runner.predict(
                inputs, lambda own: list(self._session.run(names, self._feed(own))), n_outputs
            )
        except QuantlensError:
            raise
        except Exception as exc:  # onnxruntime's own error types
            raise ModelRunError(f"{self.path} failed to run: {brief(exc)}") from exc

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; returns one array per output (ONNX models take real-valued I/O)."""
        return [np.asarray(o) for o in self.run(inputs)]

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A function running the session on prepared inputs.

        Raises:
            ConfigError: the model runs fewer samples at a time than the batch holds.
        """
        feed = self._feed(self._runner.one_invoke(inputs, self.name))
        run = self._session.run
        return lambda: run(None, feed)

    def working_bytes_per_sample(self, shapes: Sequence[Sequence[int]] | None = None) -> int | None:
        """Bytes of one sample's intermediate tensors, as ONNX shape inference gives their
        shapes with the batch at one and the inputs' other open dimensions taken from the
        data's sample ``shapes`` (one per input); None when one stays open or the graph's
        shapes cannot be inferred. Tensors whose shapes stay unknown are not counted."""
        filled = []
        for k, spec in enumerate(self.inputs):
            dims = filled_sample_shape(spec, shapes[k] if shapes is not None else None)
            if dims is None:
                return None
            filled.append(dims)
        key = tuple(filled)
        if key not in self._working:
            self._working[key] = self._working_bytes(key)
        return self._working[key]

    def _working_bytes(self, sample_shapes: Sequence[tuple[int, ...]]) -> int | None:
        onnx = require("onnx", "onnx", "reading an .onnx model")
        model = _shapes_only(self.proto)
        own = {
            s.name: (s.batch_axis, shape)
            for s, shape in zip(self.inputs, sample_shapes, strict=True)
        }
        for tensor in model.graph.input:
            if tensor.name not in own:  # an initializer listed among the inputs
                continue
            axis, sample = own[tensor.name]
            full = list(sample)
            if axis is not None:
                full.insert(axis, 1)  # the batch at one, wherever it sits
            dims = tensor.type.tensor_type.shape.dim
            if len(dims) == len(full):
                for d, value in zip(dims, full, strict=True):
                    d.dim_value = value
        try:
            graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
        except Exception:  # onnx raises its own inference errors; the run does not need this
            return None
        constants = {i.name for i in graph.initializer}
        total = 0
        for info in (*graph.value_info, *graph.output):
            dims = [d.dim_value if d.HasField("dim_value") else 0
                    for d in info.type.tensor_type.shape.dim]  # fmt: skip
            if info.name in constants or not all(d > 0 for d in dims):
                continue
            try:
                elem = info.type.tensor_type.elem_type
                dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
            except (KeyError, TypeError, ValueError):  # an undefined or unknown element type
                continue
            total += tensor_bytes(dims, dtype)
        return total

    def input_quantization(self) -> list[tuple[QuantParams, str] | None]:
        """Per input, the QuantizeLinear that reads it in a QDQ model (None: none does, or its
        parameters are not constants; dynamic quantization adapts to the data and clips
        nothing)."""
        onnx = require("onnx", "onnx", "reading an .onnx model")
        graph = self.proto.graph
        consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        out: list[tuple[QuantParams, str] | None] = []
        for spec in self.inputs:
            node = next((n for n in graph.node if n.op_type == "QuantizeLinear"
                         and n.input and n.input[0] == spec.name), None)  # fmt: skip
            scale = consts.get(node.input[1]) if node is not None else None
            zp = consts.get(node.input[2]) if node is not None and len(node.input) > 2 else None
            if scale is None or scale.size != 1:
                out.append(None)
                continue
            dtype = zp.dtype.name if zp is not None else "uint8"
            zero = int(zp.reshape(-1)[0]) if zp is not None else 0
            out.append((QuantParams((float(scale.reshape(-1)[0]),), (zero,)), dtype))
        return out

    def info(self) -> ModelInfo:
        """Format, size, I/O, op counts by type and weight elements by dtype (``Constant``
        nodes and the branches of ``If``/``Loop`` included)."""
        onnx = require("onnx", "onnx", "describing an .onnx model")
        ops: Counter[str] = Counter()
        weights: Counter[str] = Counter()

        def add(tensor: Any) -> None:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).name
            weights[dtype] += int(np.prod(tensor.dims)) if tensor.dims else 1

        def walk(graph: Any) -> None:
            for init in graph.initializer:
                add(init)
            for node in graph.node:
                ops[node.op_type] += 1
                for attr in node.attribute:
                    if node.op_type == "Constant" and attr.name == "value":
                        add(attr.t)
                    for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                        walk(sub)

        walk(self.proto.graph)
        return ModelInfo(
            self.name, self.path, self.format, path_size(self.path), self.inputs, self.outputs,
            op_counts=dict(sorted(ops.items())), weight_dtypes=dict(sorted(weights.items())),
        )  # fmt: skip
