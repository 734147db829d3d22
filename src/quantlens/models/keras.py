"""Keras files (.keras, .h5) and SavedModel directories through TensorFlow, imported lazily."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.errors import ModelLoadError, brief, require
from quantlens.models.base import models_trusted, natural_key, path_size
from quantlens.results import BatchingDecision, ModelInfo, TensorSpec

#: TensorFlow runs a batch as one graph call; its kernels treat samples independently.
_TF_BATCHING = BatchingDecision("resize", "TensorFlow runs the batch as given")


class _TensorFlowBatching:
    """Batching of a TensorFlow model: always the batch as given."""

    batching = "resize"

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        return _TF_BATCHING

    def set_batching(self, mode: str) -> None:
        """TensorFlow runs every batch as given; nothing to set."""


def import_tensorflow(purpose: str) -> Any:
    """Import TensorFlow quietly, or say which extra installs it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with captured_output():  # TensorFlow announces its CPU features on import
        return require("tensorflow", "tf", purpose)


def _set_threads(tf: Any, num_threads: int | None) -> None:
    if num_threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow was already initialised in this process; its threads are fixed


def _shape(shape: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


def refuse_untrusted_saved_model(path: str) -> None:
    """A SavedModel carries a TensorFlow graph that loading and running execute, file and
    process operations included: refuse it unless models are trusted.

    Raises:
        ModelLoadError: models are not trusted.
    """
    if not models_trusted():
        raise ModelLoadError(
            f"{path} is a SavedModel: loading it runs the TensorFlow graph it carries, which "
            "can read and write files; pass --trust-model only if you trust where it came from"
        )


#: A model config larger than this is not one Keras wrote.
MAX_CONFIG_BYTES = 64 * 2**20


def _keras_config_text(path: str) -> str:
    """The model config a .keras or .h5 file holds, as text ('' when it cannot be read; Keras
    then reports the file itself).

    Raises:
        ModelLoadError: the config is too large to be a model's.
    """
    import zipfile
    import zlib

    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                info = zf.getinfo("config.json") if "config.json" in names else None
                if info is not None and info.file_size > MAX_CONFIG_BYTES:
                    size = info.file_size / 2**20
                    raise ModelLoadError(f"{path} holds a {size:.0f} MiB model config; a Keras "
                                         "model's is far smaller")  # fmt: skip
                return zf.read(info).decode("utf-8", errors="replace") if info else ""
        except (OSError, zipfile.BadZipFile, zlib.error):
            return ""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config", "")
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except Exception:  # not our business: Keras says what is wrong with the file
        return ""


def load_keras(tf: Any, path: str) -> Any:
    """Load a .keras/.h5 file in Keras' safe mode unless models are trusted.

    Safe mode stops Lambda layers and custom objects, not a ``TFSMLayer``, which loads and
    runs a SavedModel's graph: a file that holds one is refused unless models are trusted.

    Raises:
        ModelLoadError: the file cannot be loaded, or needs code execution and is not trusted.
    """
    if not models_trusted() and "TFSMLayer" in _keras_config_text(path):
        raise ModelLoadError(
            f"{path} wraps a SavedModel (a TFSMLayer), whose TensorFlow graph can read and "
            "write files; pass --trust-model only if you trust where it came from"
        )
    try:
        return tf.keras.models.load_model(path, compile=False, safe_mode=not models_trusted())
    except Exception as exc:  # Keras raises many types for a bad file
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "arbitrary code" in text:
            raise ModelLoadError(
                f"{path} runs code to load (a Lambda layer or a custom object); pass "
                "--trust-model only if you trust where it came from"
            ) from exc
        raise ModelLoadError(
            f"cannot load Keras model {path}: {brief(exc, first_line=True)}"
        ) from exc


class KerasModel(_TensorFlowBatching):
    """A ``.keras`` or ``.h5`` model run in TensorFlow."""

    format = "keras"

    def __init__(self, path: str | Path, *, num_threads: int | None = None) -> None:
        tf = import_tensorflow("loading a Keras model")
        _set_threads(tf, num_threads)
        self.path = str(path)
        self.name = Path(path).stem
        self._model = load_keras(tf, self.path)
        model = self._model
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(model.outputs):
            names = [f"output_{i}" for i in range(len(model.outputs))]
        self.inputs = tuple(
            TensorSpec(t.name.split(":")[0], _shape(t.shape), np.dtype(t.dtype).name)
            for t in model.inputs
        )
        self.outputs = tuple(
            TensorSpec(n, _shape(t.shape), np.dtype(t.dtype).name)
            for n, t in zip(names, model.outputs, strict=True)
        )

    def _feed(self, inputs: Sequence[np.ndarray]) -> Any:
        x = [np.asarray(a, dtype=s.dtype) for a, s in zip(inputs, self.inputs, strict=True)]
        return x[0] if len(x) == 1 else x

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch; returns one float array per output."""
        out = self._model.predict_on_batch(self._feed(inputs))
        outs = list(out) if isinstance(out, list | tuple) else [out]
        return [np.asarray(o) for o in outs]

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A function running ``predict_on_batch`` on prepared inputs."""
        x = self._feed(inputs)
        return lambda: self._model.predict_on_batch(x)

    def info(self) -> ModelInfo:
        """Format, size and I/O specs."""
        weights: dict[str, int] = {}
        for w in self._model.weights:
            dt = np.dtype(w.dtype).name
            weights[dt] = weights.get(dt, 0) + int(np.prod(w.shape))
        return ModelInfo(
            self.name,
            self.path,
            self.format,
            path_size(self.path),
            self.inputs,
            self.outputs,
            weight_dtypes=weights,
        )


class SavedModelModel(_TensorFlowBatching):
    """A SavedModel directory run through its ``serving_default`` signature."""

    format = "saved_model"

    def __init__(self, path: str | Path, *, num_threads: int | None = None) -> None:
        tf = import_tensorflow("loading a SavedModel")
        _set_threads(tf, num_threads)
        self._tf = tf
        self.path = str(path)
        self.name = Path(path).name
        refuse_untrusted_saved_model(self.path)
        try:
            loaded = tf.saved_model.load(self.path)
        except Exception as exc:  # TensorFlow raises many types for a bad directory
            raise ModelLoadError(
                f"cannot load SavedModel {self.path}: {brief(exc, first_line=True)}"
            ) from exc
        signatures = dict(loaded.signatures)
        if not signatures:
            raise ModelLoadError(f"SavedModel {self.path} has no signatures; export one to serve")
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        self._loaded = loaded  # keeps the functions' variables alive
        self._fn = signatures[key]
        in_specs = self._fn.structured_input_signature[1]
        out_specs = self._fn.structured_outputs
        self._in_names = list(in_specs)
        self._out_names = sorted(out_specs, key=natural_key)
        self.inputs = tuple(
            TensorSpec(
                n, _shape(in_specs[n].shape), np.dtype(in_specs[n].dtype.as_numpy_dtype).name
            )
            for n in self._in_names
        )
        self.outputs = tuple(
            TensorSpec(
                n, _shape(out_specs[n].shape), np.dtype(out_specs[n].dtype.as_numpy_dtype).name
            )
            for n in self._out_names
        )

    def _feed(self, inputs: Sequence[np.ndarray]) -> dict[str, Any]:
        return {
            n: self._tf.constant(np.asarray(a, dtype=s.dtype))
            for n, a, s in zip(self._in_names, inputs, self.inputs, strict=True)
        }

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch through the signature; returns one array per output."""
        out = self._fn(**self._feed(inputs))
        return [np.asarray(out[n]) for n in self._out_names]

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """A function calling the signature on prepared input tensors."""
        feed = self._feed(inputs)
        return lambda: self._fn(**feed)

    def info(self) -> ModelInfo:
        """Format, size and I/O specs."""
        return ModelInfo(
            self.name, self.path, self.format, path_size(self.path), self.inputs, self.outputs
        )


def load_tf_model(path: Path, *, num_threads: int | None = None) -> KerasModel | SavedModelModel:
    """A Keras file, or a SavedModel directory."""
    if path.is_dir():
        return SavedModelModel(path, num_threads=num_threads)
    return KerasModel(path, num_threads=num_threads)
