"""Model backends behind one Protocol; ``load_model`` picks one by file type."""

from quantlens.models.base import Model, ModelInfo, QuantParams, TensorSpec
from quantlens.models.loading import load_model

__all__ = ["Model", "ModelInfo", "QuantParams", "TensorSpec", "load_model"]
