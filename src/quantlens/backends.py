"""Every runtime quantlens knows, declared once: the files it reads, how a model is loaded,
what a memory probe must import first, how its quantized variants are made and in which
modes, how a layer is kept in float, how a diagnosis sees its intermediate tensors, and how
the quantization mode of a made file is told.

The rest of the code asks :func:`backend_for` (never ``if suffix == ...``). Entries name
their code as ``"module:attribute"``, imported only when used, so this table sits below
everything it points to and loading one runtime never imports another. Adding a runtime is
a module (or a few) with that code and one :func:`register` call here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlens.errors import ModelLoadError


@dataclass(frozen=True)
class Backend:
    """One runtime. Each ``"module:attribute"`` is described at :func:`resolve`'s callers:

    - ``model``: the :class:`~quantlens.models.base.Model` class, ``cls(path, num_threads=)``;
    - ``quantizer``: ``f(source, mode, calibration, input_names, reference) -> (bytes,
      settings)``; ``modes``: a dict mode -> (description, needs calibration);
    - ``keep_in_float``: ``f(source, mode, calibration, input_names) ->``
      :class:`~quantlens.quantize.precision.Rebuilder` (a plan of per-op precisions -> bytes);
    - ``inspection``: a class whose ``open(path)`` exposes every intermediate tensor;
    - ``mode_of``: ``f(path) -> mode`` of a quantized file;
    - ``kernel_paths``: a dict name -> description of the CPU kernel paths a model can run
      on, the reference first; ``model`` takes the name as ``kernels=``.
    """

    name: str
    title: str  # "a .tflite", for messages: "... a .tflite source", "... a .tflite model"
    extensions: tuple[str, ...]
    model: str
    runtime_imports: tuple[str, ...]  # what loading imports, for a memory probe's baseline
    quantizer: str
    modes: str
    variant_suffix: str  # the file type quantized variants are written as
    keep_in_float: str
    #: How the keep-in-float rebuilder knows an op: "float_tensor" (the float model's output
    #: tensor name), "node" (the graph node's name) or "output_tensor" (the quantized one's).
    op_name: str
    #: mode -> :class:`~quantlens.quantize.verify.Expectation` its variants are checked against
    expectations: str | None = None
    inspection: str | None = None  # None: diagnose needs files of another runtime
    mode_of: str | None = None
    saved_model_dirs: bool = False  # a directory holding saved_model.pb is this runtime's
    kernel_paths: str | None = None
    #: Its runs release the GIL (an interpreter's invoke, a session's run): an evaluation's
    #: workers may be threads of one process. A runtime whose import takes seconds and whose
    #: runs hold the GIL (TensorFlow's Keras) gets worker processes, started first.
    releases_gil: bool = False

    @property
    def is_own_baseline(self) -> bool:
        """Its quantized variants are files of its own kind, so a source model of it is the
        float baseline itself (a Keras source needs a float .tflite made to compare with)."""
        return self.variant_suffix in self.extensions

    def load(
        self, path: str | os.PathLike[str], num_threads: int | None = None,
        kernels: str | None = None,
    ) -> Any:  # fmt: skip
        """The model at ``path``, loaded by this runtime (on the kernel path ``kernels``, one
        of ``kernel_paths``; default: as deployed)."""
        if kernels is None:
            return resolve(self.model)(Path(path), num_threads=num_threads)
        return resolve(self.model)(Path(path), num_threads=num_threads, kernels=kernels)

    def import_runtime(self) -> None:
        """Import what loading a model of this runtime imports."""
        for name in self.runtime_imports:
            if ":" in name:
                resolve(name)("benchmarking a model")
            else:
                importlib.import_module(name)


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add a runtime."""
    BACKENDS[backend.name] = backend
    return backend


def resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` names, imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


register(Backend(
    name="tflite", title="a .tflite", extensions=(".tflite",),
    model="quantlens.models.litert:LiteRTModel",
    runtime_imports=("ai_edge_litert.interpreter", "ai_edge_litert.schema_py_generated",
                     "quantlens.models.litert"),
    quantizer="quantlens.quantize.aeq:quantize_source", modes="quantlens.quantize.aeq:MODES",
    variant_suffix=".tflite", keep_in_float="quantlens.quantize.aeq:keep_in_float_builder",
    op_name="float_tensor", expectations="quantlens.quantize.aeq:EXPECTED",
    inspection="quantlens.diagnose.tflite_side:TFLiteSide",
    mode_of="quantlens.diagnose.tflite_side:quantized_mode",
    kernel_paths="quantlens.models.litert:KERNEL_PATHS", releases_gil=True,
))  # fmt: skip
register(Backend(
    name="onnx", title="an .onnx", extensions=(".onnx",),
    model="quantlens.models.onnx:OnnxModel",
    runtime_imports=("onnx", "onnxruntime", "quantlens.models.onnx"),
    quantizer="quantlens.quantize.ort:quantize_source", modes="quantlens.quantize.ort:ONNX_MODES",
    variant_suffix=".onnx", keep_in_float="quantlens.quantize.ort:keep_in_float_builder",
    op_name="node", expectations="quantlens.quantize.ort:EXPECTED",
    inspection="quantlens.diagnose.onnx_side:OnnxSide",
    mode_of="quantlens.diagnose.onnx_side:quantized_mode",
    kernel_paths="quantlens.models.onnx:KERNEL_PATHS", releases_gil=True,
))  # fmt: skip
register(Backend(
    name="tf", title="a Keras", extensions=(".keras", ".h5", ".hdf5"),
    model="quantlens.models.keras:load_tf_model",
    runtime_imports=("quantlens.models.keras:import_tensorflow",),
    quantizer="quantlens.quantize.tf_converter:quantize_source",
    modes="quantlens.quantize.tf_converter:TF_MODES", variant_suffix=".tflite",
    keep_in_float="quantlens.quantize.tf_converter:keep_in_float_builder",
    op_name="output_tensor", expectations="quantlens.quantize.tf_converter:EXPECTED",
    saved_model_dirs=True,
))  # fmt: skip


def supported() -> str:
    """Every model file type, for messages."""
    exts = [e for b in BACKENDS.values() for e in b.extensions]
    dirs = any(b.saved_model_dirs for b in BACKENDS.values())
    return ", ".join(exts) + (" or a SavedModel directory" if dirs else "")


def is_saved_model(path: Path) -> bool:
    """A directory holding a SavedModel."""
    names = ("saved_model.pb", "saved_model.pbtxt")
    return path.is_dir() and any((path / n).exists() for n in names)


def backend_for(path: str | os.PathLike[str]) -> Backend:
    """The runtime of a model file or SavedModel directory.

    Raises:
        ModelLoadError: no runtime reads this kind of file.
    """
    p = Path(path)
    if p.is_dir():
        owner = next((b for b in BACKENDS.values() if b.saved_model_dirs), None)
        if owner is not None and is_saved_model(p):
            return owner
        raise ModelLoadError(
            f"{p} is a directory but not a SavedModel (no saved_model.pb); give a {supported()}"
        )
    suffix = p.suffix.lower()
    found = next((b for b in BACKENDS.values() if suffix in b.extensions), None)
    if found is None:
        raise ModelLoadError(f"unknown model type '{p.suffix or p.name}' for {p}; give a "
                             f"{supported()}")  # fmt: skip
    return found
