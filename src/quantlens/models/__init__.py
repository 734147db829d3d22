"""Model backends behind one Protocol; ``load_model`` picks one by file type.

The names below load on first use, so that a submodule with no heavy imports (the crash
containment, started before anything else) is importable without NumPy and the runtimes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantlens._lazy import lazy_getattr

if TYPE_CHECKING:
    from quantlens.models.base import Model
    from quantlens.models.loading import load_model
    from quantlens.results import ModelInfo, QuantParams, TensorSpec

__all__ = ["Model", "ModelInfo", "QuantParams", "TensorSpec", "load_model"]

_EXPORTS = {
    "Model": "quantlens.models.base",
    "load_model": "quantlens.models.loading",
    "ModelInfo": "quantlens.results",
    "QuantParams": "quantlens.results",
    "TensorSpec": "quantlens.results",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
