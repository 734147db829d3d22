"""``.tflite`` models through ai_edge_litert, with I/O (de)quantization and batch resizing."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ConfigError, DataError, ModelLoadError, ModelRunError
from quantlens.models.base import (
    ModelInfo,
    QuantParams,
    TensorSpec,
    natural_key,
    path_size,
    plain_name,
)
from quantlens.models.quantization import INTEGER_IO_DTYPES, dequantize, quantize
from quantlens.models.tflite_file import read_tflite_contents

_STATEFUL_OPS = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}


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


def _load_error(path: str, exc: Exception) -> ModelLoadError:
    """A one-line, actionable error from what the runtime said about a model it refused."""
    text = " ".join(str(exc).split())
    custom = sorted(set(re.findall(r"unresolved custom op: ([^\s.]+)", text)))
    if custom:
        return ModelLoadError(
            f"{path} needs custom op(s) {', '.join(custom)} that ai_edge_litert does not "
            "provide; re-convert the model with builtin ops only"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"cannot load {path}: {first} (the file may be truncated or corrupt; re-export it)"
    )


class LiteRTModel:
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
    ) -> None:
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
        resolver = (
            litert.OpResolverType.AUTO
            if use_default_delegates
            else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )

        def new_interpreter() -> Any:
            with captured_output():  # the runtime logs its delegate choice to fd 2
                interp = litert.Interpreter(
                    model_content=data,
                    num_threads=num_threads,
                    experimental_op_resolver_type=resolver,
                    experimental_preserve_all_tensors=preserve_all_tensors,
                )
                interp.allocate_tensors()
            return interp

        try:
            self._interp = new_interpreter()
        except (RuntimeError, ValueError) as exc:
            raise _load_error(self.path, exc) from exc
        self._new_interpreter = new_interpreter
        # The runtime has verified the flatbuffer above; only now is it safe to walk it here.
        self._contents = read_tflite_contents(data, self.path)
        self._stateful = bool(_STATEFUL_OPS & set(self._contents.op_counts))
        # A resource variable keeps the shape it was made with: resizing the batch of a
        # stateful model would write a larger batch into it (heap corruption in the runtime).
        try:
            self._describe()
        except (RuntimeError, ValueError) as exc:  # e.g. tensor names that are not UTF-8
            raise _load_error(self.path, exc) from exc

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
        self._alloc_batch = self._base_shapes[0][0] if self._base_shapes[0] else 1
        self._can_resize: bool | None = False if self._stateful else None  # None: not tried

    @property
    def batching(self) -> str:
        """How batches run: 'resize' (batch dimension resized), 'chunks' (the model's own
        batch size, padded) or 'unknown' (no batch of another size has run yet)."""
        return {None: "unknown", True: "resize", False: "chunks"}[self._can_resize]

    # -- running ---------------------------------------------------------------------------

    def _resize(self, batch: int) -> bool:
        """Resize every input's batch dimension; False (and the original shapes) on failure."""
        try:
            for idx, shape in zip(self._in_idx, self._base_shapes, strict=True):
                self._interp.resize_tensor_input(idx, [batch, *shape[1:]], strict=False)
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError):
            for idx, shape in zip(self._in_idx, self._base_shapes, strict=True):
                self._interp.resize_tensor_input(idx, list(shape), strict=False)
            self._interp.allocate_tensors()
            self._alloc_batch = self._base_shapes[0][0]
            return False
        self._alloc_batch = batch
        return True

    def _invoke(self, arrays: Sequence[np.ndarray], extra: Sequence[int]) -> list[np.ndarray]:
        """Set inputs, invoke, and read the outputs (real-valued) then the ``extra`` tensors
        (raw, as the runtime holds them)."""
        if self._stateful:
            # Independent samples must not share state, and reset_all_variables() does not
            # reset resource variables (their CALL_ONCE initialiser runs once per interpreter).
            self._interp = self._new_interpreter()
        interp = self._interp
        for idx, spec, x in zip(self._in_idx, self.inputs, arrays, strict=True):
            interp.set_tensor(idx, self._to_runtime(x, spec))
        interp.invoke()
        outs = [
            self._to_real(interp.get_tensor(idx), spec)
            for idx, spec in zip(self._out_idx, self.outputs, strict=True)
        ]
        return outs + [interp.get_tensor(i) for i in extra]

    @staticmethod
    def _to_runtime(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if spec.quantization is not None and spec.dtype in INTEGER_IO_DTYPES:
            return quantize(x, spec.quantization, spec.dtype)
        return np.ascontiguousarray(x, dtype=spec.dtype)

    @staticmethod
    def _to_real(y: np.ndarray, spec: TensorSpec) -> np.ndarray:
        if spec.quantization is not None and spec.dtype in INTEGER_IO_DTYPES:
            return dequantize(y, spec.quantization)
        return y

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run a batch of real-valued inputs; returns real-valued outputs.

        The batch dimension is resized to the batch's size when the model allows it; a model
        whose batch is baked in (e.g. a RESHAPE to a fixed shape) is run in chunks of its own
        batch size instead, the last chunk padded and the padding dropped.
        """
        return self._run(inputs, ())

    def predict_tensors(
        self, inputs: Sequence[np.ndarray], indices: Sequence[int]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run a batch; return the real-valued outputs and the raw values of the tensors
        ``indices`` (batch first).

        Intermediate tensors are only kept when the model was loaded with
        ``preserve_all_tensors=True``.
        """
        got = self._run(inputs, indices)
        return got[: len(self.outputs)], got[len(self.outputs) :]

    def _run(self, inputs: Sequence[np.ndarray], extra: Sequence[int]) -> list[np.ndarray]:
        try:
            return self._run_batch(inputs, extra)
        except (RuntimeError, ValueError) as exc:  # raised by the runtime, not by us
            first = " ".join(str(exc).split())[:300]
            raise ModelRunError(
                f"{self.path} failed to run: {first} (the file may be corrupt; re-export it)"
            ) from exc

    def _run_batch(self, inputs: Sequence[np.ndarray], extra: Sequence[int]) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise DataError(f"{self.name} takes {len(self.inputs)} input(s), got {len(inputs)}")
        n = int(inputs[0].shape[0])
        if n == 0:
            raise DataError("empty batch: the data set has no samples")
        if n != self._alloc_batch and self._can_resize is not False and not self._resize(n):
            self._can_resize = False
        if n == self._alloc_batch:
            got = self._invoke(inputs, extra)
            if all(o.shape[:1] == (n,) for o in got[: len(self.outputs)]):
                if n != self._base_shapes[0][0]:
                    self._can_resize = True
                return got
            self._can_resize = False  # the graph ignored the new batch size
            self._resize(self._base_shapes[0][0])
        return self._run_in_chunks(inputs, n, extra)

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """Set the batch's inputs once and return the bare ``invoke`` to time.

        Raises:
            ConfigError: the model's batch dimension is fixed and differs from the batch's.
        """
        n = int(inputs[0].shape[0])
        if n != self._alloc_batch and (self._can_resize is False or not self._resize(n)):
            self._can_resize = False
            base = self._base_shapes[0][0]
            raise ConfigError(f"{self.name} has a fixed batch of {base}; use batch size {base}")
        for idx, spec, x in zip(self._in_idx, self.inputs, inputs, strict=True):
            self._interp.set_tensor(idx, self._to_runtime(x, spec))
        return self._interp.invoke

    def _run_in_chunks(
        self, inputs: Sequence[np.ndarray], n: int, extra: Sequence[int]
    ) -> list[np.ndarray]:
        chunk = max(self._alloc_batch, 1)
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, chunk):
            piece = [x[start : start + chunk] for x in inputs]
            got = piece[0].shape[0]
            if got < chunk:
                piece = [
                    np.concatenate([p, np.zeros((chunk - got, *p.shape[1:]), p.dtype)])
                    for p in piece
                ]
            parts.append([o[:got] for o in self._invoke(piece, extra)])
        return [np.concatenate(col) for col in zip(*parts, strict=True)]

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
