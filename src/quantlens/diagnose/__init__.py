"""diagnose(): where the quantization error comes from, tensor by tensor and op by op, and
which layers to keep in float to bring it back.

``core`` runs both models with every intermediate tensor kept, matches their tensors and
ranks the ops by the error they add; ``tflite_side`` and ``onnx_side`` open a model of each
runtime for that; ``suggest`` searches for the layers to keep in float, measuring each step.
"""

from quantlens.diagnose.core import (
    DEFAULT_SAMPLES,
    DEFAULT_TOP,
    diagnose,
    diagnose_source,
    infer_mode,
)

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_TOP", "diagnose", "diagnose_source", "infer_mode"]
