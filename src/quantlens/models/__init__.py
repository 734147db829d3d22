"""Model backends behind one Protocol; ``load_model`` picks one by file type."""

from quantlens.models.base import Model
from quantlens.models.loading import load_model
from quantlens.results import ModelInfo, QuantParams, TensorSpec

__all__ = ["Model", "ModelInfo", "QuantParams", "TensorSpec", "load_model"]
