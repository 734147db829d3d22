"""diagnose(): where the quantization error comes from, tensor by tensor and op by op, and
which ops to keep at a higher precision to bring it back.

``core`` runs both models with every intermediate tensor kept, matches their tensors and
ranks the ops by the error they add; ``tflite_side`` and ``onnx_side`` open a model of each
runtime for that; ``suggest`` repairs: ``search`` finds which ops to keep at which precision
(float, int16 activations, float activations), measuring every plan, and ``explain`` says
why when no small enough model meets the budget.
"""

from quantlens.diagnose.core import (
    DEFAULT_SAMPLES,
    DEFAULT_TOP,
    diagnose,
    diagnose_source,
    infer_mode,
)

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_TOP", "diagnose", "diagnose_source", "infer_mode"]
