"""``.tflite`` models through ai_edge_litert, with I/O (de)quantization and batch resizing."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import DataError, ModelLoadError, ModelRunError, brief
from quantlens.models.base import natural_key, path_size
from quantlens.models.batching import BatchRunner, RunnerBatching, tensor_bytes
from quantlens.models.containment import ensure_contained
from quantlens.models.quantization import INTEGER_IO_DTYPES, dequantize, integer_io, quantize
from quantlens.models.tflite_file import Graph, read_graph, read_tflite_contents
from quantlens.results import ModelInfo, QuantParams, TensorSpec, plain_name

_STATEFUL_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}

#: The CPU kernel paths a .tflite can run on (name -> what runs), the reference first.
KERNEL_PATHS = {
    "reference": "reference kernels (BUILTIN_REF): the plain implementation of each op",
    "builtin": "optimized builtin kernels, no delegate (BUILTIN_WITHOUT_DEFAULT_DELEGATES)",
    "xnnpack": "as deployed by default: XNNPACK delegate where it applies (AUTO)",
}


def quant_params(detail: dict[str, Any]) -> QuantParams | None:
    """A tensor's quantization from the runtime's tensor details, or None when it has none."""
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    if scales.size == 0 or not np.any(scales):
        return None
    zps = np.asarray(qp.get("zero_points", []), dtype=np.int64)
    if zps.size == 0:
        zps = np.zeros_like(scales, dtype=np.int64)
    return QuantParams(
        tuple(float(s) for s in scales),
        tuple(int(z) for z in zps),
        int(qp.get("quantized_dimension", 0)),
    )


def _spec(detail: dict[str, Any], name: str) -> TensorSpec:
    sig = detail.get("shape_signature")
    dims = sig if sig is not None and len(sig) else detail["shape"]
    shape = tuple(None if int(d) < 0 else int(d) for d in dims)
    return TensorSpec(name, shape, np.dtype(detail["dtype"]).name, quant_params(detail))


def _custom_op_error(path: str, exc: BaseException) -> ModelLoadError | None:
    """The error for a model that needs custom ops the runtime lacks (None: it does not)."""
    custom = sorted(set(re.findall(r"unresolved custom op: ([^\s.]+)", " ".join(str(exc).split()))))
    if not custom:
        return None
    return ModelLoadError(
        f"{path} needs custom op(s) {', '.join(custom)} that ai_edge_litert does not "
        "provide; re-convert the model with builtin ops only"
    )


def _load_error(path: str, exc: Exception) -> ModelLoadError:
    """A one-line, actionable error from what the runtime said about a model it refused."""
    custom = _custom_op_error(path, exc)
    if custom is not None:
        return custom
    first = brief(exc, first_line=True)
    return ModelLoadError(
        f"cannot load {path}: {first} (the file may be truncated or corrupt; re-export it)"
    )


class LiteRTModel(RunnerBatching):
    """A ``.tflite`` model run by ai_edge_litert's Interpreter.

    Inputs and outputs are named and ordered by the model's signature when it has one (the
    converter's tensor order for outputs is not the Keras order; the signature's is).
    """

    format = "tflite"

    def __init__(
        self,
        path: str | Path,
        *,
        num_threads: int | None = None,
        use_default_delegates: bool = True,
        preserve_all_tensors: bool = False,
        kernels: str | None = None,
    ) -> None:
        """``kernels`` picks one of :data:`KERNEL_PATHS` (default: XNNPACK, or the builtin
        kernels without ``use_default_delegates``)."""
        from ai_edge_litert import interpreter as litert

        self.path = str(path)
        self.name = Path(path).stem
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ModelLoadError(
                f"{self.path} is not a TFLite model (no TFL3 identifier); give a .tflite file"
            )
        ensure_contained(self.path, data)  # a crash of the runtime stays in a child process
        kernels = kernels or ("xnnpack" if use_default_delegates else "builtin")
        resolver = {
            "xnnpack": litert.OpResolverType.AUTO,
            "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": litert.OpResolverType.BUILTIN_REF,
        }[kernels]

        def new_interpreter(allocate: bool = True) -> Any:
            with captured_output():  # the runtime logs its delegate choice to fd 2
                interp = litert.Interpreter(
                    model_content=data,
                    num_threads=num_threads,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve_all_tensors,
                )
                if allocate:
                    interp.allocate_tensors()
            return interp

        try:
            self._interp = new_interpreter(allocate=False)
        except (RuntimeError, ValueError) as exc:
            raise _load_error(self.path, exc) from exc
        self._new_interpreter = new_interpreter
        # The runtime has verified the flatbuffer above; only now is it safe to walk it here.
        self._contents = read_tflite_contents(data, self.path)
        self._input_quantization: list[tuple[QuantParams, str] | None] | None = None
        # A resource variable keeps the shape it was made with: resizing the batch of a
        # stateful model would write a larger batch into it (heap corruption in the runtime).
        self._stateful = bool(_STATEFUL_OPS & set(self._contents.op_counts))
        try:
            self._describe()
        except (RuntimeError, ValueError) as exc:  # e.g. tensor names that are not UTF-8
            raise _load_error(self.path, exc) from exc
        self._shapes: list[tuple[int, ...]] | None = None  # the allocated input shapes
        try:
            self._allocate(self._base_shapes)
        except ModelRunError as exc:
            # An input left open (``[-1, -1]`` audio, ``[?, ?, ?, 3]`` images) may not
            # prepare at its placeholder shape; it is allocated at the data's shape instead.
            if not any(None in spec.shape for spec in self.inputs):
                raise ModelLoadError(str(exc)) from exc
        self._runner = BatchRunner(self.inputs, self.outputs)
        if self._stateful:
            self._runner.set_mode("per-sample" if self._runner.chunk == 1 else "chunks")

    def twin(self) -> LiteRTModel:
        """The same model on an interpreter of its own, to run while this one's tensors are
        still being read; it shares this model's batching (decided once, for both)."""
        other = copy.copy(self)
        other._interp = self._new_interpreter(allocate=False)
        other._shapes = None  # allocated at the first batch's shapes
        return other

    def _describe(self) -> None:
        """Inputs and outputs, named and ordered by the signature when there is one."""
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        in_names = {d["index"]: plain_name(d["name"]) for d in in_details}
        out_order = list(out_details)
        out_names = {d["index"]: plain_name(d["name"]) for d in out_details}
        signatures = self._interp.get_signature_list()
        #: The signature the model is run and named by (None when it has none).
        self.signature: str | None = None
        if len(signatures) == 1 or "serving_default" in signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self.signature = key
            runner = self._interp.get_signature_runner(key)
            sig_in = runner.get_input_details()
            sig_out = runner.get_output_details()
            if len(sig_in) == len(in_details) and len(sig_out) == len(out_details):
                in_names = {d["index"]: n for n, d in sig_in.items()}
                by_index = {d["index"]: d for d in out_details}
                out_order = [
                    by_index[sig_out[n]["index"]] for n in sorted(sig_out, key=natural_key)
                ]
                out_names = {d["index"]: n for n, d in sig_out.items()}
        self._in_idx = [d["index"] for d in in_details]
        self._out_idx = [d["index"] for d in out_order]
        self.inputs = tuple(_spec(d, in_names[d["index"]]) for d in in_details)
        self.outputs = tuple(_spec(d, out_names[d["index"]]) for d in out_order)
        self._base_shapes = [tuple(int(s) for s in d["shape"]) for d in in_details]
        # What each invoke needs of the specs, looked up once: (index, the quantization of an
        # integer tensor or None, the dtype of a real-valued input).
        self._in_plan = [(idx, integer_io(s), _numpy_dtype(s.dtype))
                         for idx, s in zip(self._in_idx, self.inputs, strict=True)]  # fmt: skip
        self._out_plan = [(idx, integer_io(s)) for idx, s in zip(self._out_idx, self.outputs,
                                                                 strict=True)]  # fmt: skip

    # -- running ---------------------------------------------------------------------------

    def _allocate(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """Resize the inputs to ``shapes`` and allocate.

        Raises:
            ModelRunError: the runtime cannot prepare the graph at these shapes.
        """
        self._shapes = None
        try:
            for idx, shape in zip(self._in_idx, shapes, strict=True):
                self._interp.resize_tensor_input(idx, list(shape), strict=False)
            with captured_output():
                self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            custom = _custom_op_error(self.path, exc)
            if custom is not None:
                raise custom from exc
            given = ", ".join(str(tuple(s)) for s in shapes)
            raise ModelRunError(
                f"the runtime cannot prepare {self.path} for input shape(s) {given}: {brief(exc)}"
            ) from exc
        self._shapes = [tuple(s) for s in shapes]

    def _invoke(
        self, arrays: Sequence[np.ndarray], extra: Sequence[int], views: bool = False,
        ranges: Sequence[tuple[float, float] | None] | None = None,
    ) -> list[np.ndarray]:  # fmt: skip
        """Set inputs (laid out as the model takes them; ``ranges``, each one's smallest and
        largest value when known), invoke, and read the outputs (real-valued) then the
        ``extra`` tensors (raw, as the runtime holds them; in place with ``views``)."""
        shapes = [a.shape for a in arrays]
        if self._stateful:
            # Independent samples must not share state, and reset_all_variables() does not
            # reset resource variables (their CALL_ONCE initialiser runs once per interpreter).
            self._interp = self._new_interpreter(allocate=False)
            self._shapes = None
        if shapes != self._shapes:
            self._allocate(shapes)
        interp = self._interp
        known = ranges or [None] * len(arrays)
        for (idx, qp, dtype), x, span in zip(self._in_plan, arrays, known, strict=True):
            if qp is not None:
                # Quantized straight into the runtime's input buffer (no set_tensor copy); the
                # view is gone before invoke, which refuses to run while one lives.
                buffer = interp.tensor(idx)()
                fits = buffer.shape == x.shape  # else set_tensor says what does not fit
                if fits:
                    quantize(x, qp, buffer.dtype, value_range=span, out=buffer)
                del buffer
                if fits:
                    continue
            interp.set_tensor(idx, _to_runtime(x, qp, dtype, span))
        interp.invoke()
        outs = [interp.get_tensor(idx) if qp is None else dequantize(interp.get_tensor(idx), qp)
                for idx, qp in self._out_plan]  # fmt: skip
        if views:
            return outs + [interp.tensor(i)() for i in extra]
        return outs + [interp.get_tensor(i) for i in extra]

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run a batch of real-valued inputs (sample-first); returns real-valued outputs.

        The batch runs as :attr:`batching` says: resized to the batch's size, in chunks of
        the model's declared batch (the last padded, the padding dropped), or one sample at a
        time. Every other open dimension is resized to the data's.
        """
        return self._run(inputs, ())

    def predict_in_range(
        self, inputs: Sequence[np.ndarray], ranges: Sequence[tuple[float, float] | None]
    ) -> list[np.ndarray]:
        """:meth:`predict`, told each input's smallest and largest value (None where not
        known): an integer input whose values all land inside its range is quantized without
        the clip (a whole pass over the batch on a model of a few µs per sample)."""
        # Chunks are padded with zeros, outside the range perhaps: only a resized batch.
        return self._run(inputs, (), ranges=ranges if self._runner.per_invoke is None else None)

    def predict_tensors(
        self, inputs: Sequence[np.ndarray], indices: Sequence[int], *, views: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run a batch; return the real-valued outputs and the raw values of the tensors
        ``indices`` (batch first).

        Intermediate tensors are only kept when the model was loaded with
        ``preserve_all_tensors=True``. With ``views``, tensors of a batch that runs in one
        invoke are read in place, without a copy: the caller must drop every one of them
        before this model runs again (the runtime refuses to run while they live).
        """
        n = int(inputs[0].shape[0]) if len(inputs) else 1
        in_place = views and not self._stateful and self._runner.invokes(n) == 1
        got = self._run(inputs, indices, in_place)
        return got[: len(self.outputs)], got[len(self.outputs) :]

    def _run(
        self, inputs: Sequence[np.ndarray], extra: Sequence[int], views: bool = False,
        ranges: Sequence[tuple[float, float] | None] | None = None,
    ) -> list[np.ndarray]:  # fmt: skip
        if len(inputs) != len(self.inputs):
            raise DataError(f"{self.name} takes {len(self.inputs)} input(s), got {len(inputs)}")
        try:
            return self._runner.predict(
                inputs, lambda own: self._invoke(own, extra, views, ranges), len(self.outputs)
            )
        except (RuntimeError, ValueError) as exc:  # raised by the runtime, not by us
            raise ModelRunError(f"{self.path} failed to run: {brief(exc)}") from exc

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """Set the batch's inputs once and return the bare ``invoke`` to time.

        Raises:
            ConfigError: the model runs fewer samples at a time than the batch holds.
        """
        own = self._runner.one_invoke(inputs, self.name)
        shapes = [a.shape for a in own]
        if shapes != self._shapes:
            self._allocate(shapes)
        for (idx, qp, dtype), x in zip(self._in_plan, own, strict=True):
            self._interp.set_tensor(idx, _to_runtime(x, qp, dtype))
        return self._interp.invoke

    def input_quantization(self) -> list[tuple[QuantParams, str] | None]:
        """Per input, how the model quantizes it: an integer input's own parameters, or those
        of the QUANTIZE op that reads a float input (None: the input stays float)."""
        if self._input_quantization is None:
            self._input_quantization = self._find_input_quantization()
        return list(self._input_quantization)

    def _find_input_quantization(self) -> list[tuple[QuantParams, str] | None]:
        quantized_by = self._contents.quantized_by
        # Every tensor's details only when a float input is read by a QUANTIZE op.
        readers = [quantized_by.get(idx, -1) for idx in self._in_idx]
        details = {}
        if any(r >= 0 for r in readers):
            details = {d["index"]: d for d in self._interp.get_tensor_details()}
        out: list[tuple[QuantParams, str] | None] = []
        for spec, reader in zip(self.inputs, readers, strict=True):
            if (own := integer_io(spec)) is not None:
                out.append((own, spec.dtype))
                continue
            q = details.get(reader)
            qp = quant_params(q) if q is not None else None
            dtype = np.dtype(q["dtype"]).name if q is not None else ""
            out.append((qp, dtype) if qp is not None and dtype in INTEGER_IO_DTYPES else None)
        return out

    @functools.cached_property
    def _graph(self) -> Graph:
        """The main subgraph's ops and tensors, read from the file once, when first needed."""
        return read_graph(Path(self.path).read_bytes(), self.path)

    def working_bytes_per_sample(self, shapes: Sequence[Sequence[int]] | None = None) -> int:
        """Bytes of the main subgraph's non-constant tensors for one sample (as the file
        declares their shapes; an open dimension counts 1, whatever the data's ``shapes``):
        an upper bound of what the runtime's arena holds per sample, since the arena reuses
        memory."""
        return self._working_bytes

    @functools.cached_property
    def _working_bytes(self) -> int:
        return sum(tensor_bytes([max(d, 1) for d in shape], dtype)
                   for shape, dtype in self._contents.main_activations)  # fmt: skip

    def tensor_value(self, index: int) -> np.ndarray:
        """A copy of one tensor's current (raw) value: a weight, or an intermediate kept by
        ``preserve_all_tensors``."""
        return self._interp.get_tensor(index)

    def tensor_details(self) -> list[dict[str, Any]]:
        """The runtime's description of every tensor (name, index, shape, dtype, quantization)."""
        return list(self._interp.get_tensor_details())

    def info(self) -> ModelInfo:
        """Format, size, I/O specs, op counts by type and weight elements by dtype."""
        return ModelInfo(
            name=self.name,
            path=self.path,
            format=self.format,
            size_bytes=path_size(self.path),
            inputs=self.inputs,
            outputs=self.outputs,
            op_counts=dict(sorted(self._contents.op_counts.items())),
            weight_dtypes=dict(sorted(self._contents.weight_dtypes.items())),
            activation_dtypes=dict(sorted(self._contents.activation_dtypes.items())),
        )


def _numpy_dtype(name: str) -> Any:
    """NumPy's dtype of a tensor type name (the name itself when NumPy has none)."""
    try:
        return np.dtype(name)
    except TypeError:
        return name


def _to_runtime(
    x: np.ndarray, qp: QuantParams | None, dtype: Any, span: tuple[float, float] | None = None
) -> np.ndarray:
    """An input as the runtime takes it: quantized with ``qp`` (when it takes integers), or
    contiguous in ``dtype``."""
    if qp is not None:
        return quantize(x, qp, dtype, value_range=span)
    return np.ascontiguousarray(x, dtype=dtype)
