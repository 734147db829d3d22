"""Models whose image inputs are laid out differently from the data (NCHW against NHWC).

An ONNX model exported from PyTorch takes NCHW images; the same model converted to TFLite
from Keras takes NHWC. :func:`adapt` wraps a model so that it takes the data's layout: its
4-D image inputs are transposed on the way in; everything else (outputs, names) is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from quantlens.errors import ConfigError
from quantlens.models.base import Model
from quantlens.results import BatchingDecision, ModelInfo, TensorSpec

LAYOUTS = ("nhwc", "nchw")
_CHANNELS = (1, 2, 3, 4)  # what a channel axis of an image input looks like
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)


def layout_of(spec: TensorSpec) -> str | None:
    """'nhwc' or 'nchw' for a 4-D image input whose channel axis is clear, else None."""
    if len(spec.shape) != 4:
        return None
    _, a, _, c = spec.shape
    if c in _CHANNELS and (a is None or a > 4):
        return "nhwc"
    if a in _CHANNELS and (c is None or c > 4):
        return "nchw"
    return None


def _permuted(spec: TensorSpec, perm: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(spec.name, tuple(spec.shape[i] for i in perm), spec.dtype, spec.quantization)


class Relayout:
    """A model that takes its image inputs in another layout than its own."""

    def __init__(self, model: Model, data_layout: str) -> None:
        self._model = model
        self.name, self.path, self.format = model.name, model.path, model.format
        # data -> model: NHWC data into an NCHW model is transposed with _TO_NCHW
        self._perms = [
            (_TO_NCHW if data_layout == "nhwc" else _TO_NHWC)
            if (own := layout_of(s)) is not None and own != data_layout else None
            for s in model.inputs
        ]  # fmt: skip
        back = {_TO_NCHW: _TO_NHWC, _TO_NHWC: _TO_NCHW}
        self.inputs = tuple(
            s if p is None else _permuted(s, back[p])
            for s, p in zip(model.inputs, self._perms, strict=True)
        )
        self.outputs = model.outputs

    def own_layout(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Inputs in the data's layout, transposed to the model's own."""
        return self._to_model(inputs)

    def _to_model(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [x if p is None else np.ascontiguousarray(np.transpose(x, p))
                for x, p in zip(inputs, self._perms, strict=True)]  # fmt: skip

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch given in the data's layout."""
        return self._model.predict(self._to_model(inputs))

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        """The model's own invoker, on inputs transposed once."""
        return self._model.invoker(self._to_model(inputs))

    def info(self) -> ModelInfo:
        return self._model.info()

    def working_bytes_per_sample(self, shapes: Sequence[Sequence[int]] | None = None) -> Any:
        """The wrapped model's, given the data's sample shapes in its own layout (None when
        its runtime does not say)."""
        own = getattr(self._model, "working_bytes_per_sample", None)
        if own is None:
            return None
        if shapes is not None:
            shapes = [
                tuple(given) if p is None else tuple((1, *given)[i] for i in p)[1:]
                for given, p in zip(shapes, self._perms, strict=True)
            ]
        return own(shapes)

    @property
    def batching(self) -> str:
        return self._model.batching

    def input_quantization(self) -> list[Any]:
        """The wrapped model's (a transposed input keeps its parameters)."""
        own = getattr(self._model, "input_quantization", None)
        return own() if own is not None else [None] * len(self.inputs)

    def set_batching(self, mode: str) -> None:
        self._model.set_batching(mode)

    @property
    def set_invoke_size(self) -> Callable[..., None] | None:
        """The wrapped model's (it is handed each batch whole, laid out), when it has one."""
        return getattr(self._model, "set_invoke_size", None)

    @property
    def invoke_size(self) -> int | None:
        """The wrapped model's samples per invoke (None when it has no such setting)."""
        return getattr(self._model, "invoke_size", None)

    @property
    def follow_invoke_size(self) -> Callable[[Any], None] | None:
        """The wrapped model's, when it has one."""
        return getattr(self._model, "follow_invoke_size", None)

    @property
    def batch_runner(self) -> Any:
        """The wrapped model's (it is handed each batch whole, laid out)."""
        return getattr(self._model, "batch_runner", None)

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        """The wrapped model's probe, on the sample in its own layout."""
        return self._model.probe_batching(self._to_model(sample))


def adapt(model: Model, data_layout: str | None) -> Model:
    """``model`` as it takes data laid out as ``data_layout`` (None: as it is).

    Raises:
        ConfigError: an unknown layout name.
    """
    if data_layout is None:
        return model
    if data_layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{data_layout}'; use nhwc or nchw")
    own = [layout_of(s) for s in model.inputs]
    if all(o is None or o == data_layout for o in own):
        return model
    return Relayout(model, data_layout)
