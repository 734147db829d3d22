"""quantlens: what did quantization do to this model?

The public API::

    import quantlens
    result = quantlens.evaluate("model.keras", ["model_int8.tflite"], data="digits")
    print(result.model("model_int8").fidelity["sqnr_db"])
"""

from quantlens.bench import benchmark
from quantlens.bench.options import BenchOptions
from quantlens.compare import compare
from quantlens.data import Batch, Dataset, load_dataset
from quantlens.diagnose import diagnose
from quantlens.engine.options import EvalOptions
from quantlens.errors import QuantlensError
from quantlens.evaluation import evaluate
from quantlens.kernel_check import check_kernels
from quantlens.models.base import Model
from quantlens.models.loading import load_model
from quantlens.models.stored import load_reference_outputs
from quantlens.quantize import quantize
from quantlens.results import (
    BenchEntry,
    BenchResult,
    DatasetSummary,
    DiagnosisResult,
    EvaluationResult,
    KernelCheck,
    ModelInfo,
    ModelResult,
    OutputFidelity,
    Performance,
    QuantizedVariant,
    QuantizeResult,
    QuantParams,
    RankedVariant,
    Recommendation,
    StoredReference,
    TensorSpec,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "BenchEntry",
    "BenchOptions",
    "BenchResult",
    "Dataset",
    "DatasetSummary",
    "DiagnosisResult",
    "EvalOptions",
    "EvaluationResult",
    "KernelCheck",
    "Model",
    "ModelInfo",
    "ModelResult",
    "OutputFidelity",
    "Performance",
    "QuantParams",
    "QuantizeResult",
    "QuantizedVariant",
    "QuantlensError",
    "RankedVariant",
    "Recommendation",
    "StoredReference",
    "TensorSpec",
    "__version__",
    "benchmark",
    "check_kernels",
    "compare",
    "diagnose",
    "evaluate",
    "load_dataset",
    "load_model",
    "load_reference_outputs",
    "quantize",
]
