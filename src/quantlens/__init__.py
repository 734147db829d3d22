"""quantlens: what did quantization do to this model?

The public API::

    import quantlens
    result = quantlens.evaluate("model.keras", ["model_int8.tflite"], data="digits")
    print(result.model("model_int8").fidelity["sqnr_db"])
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from quantlens._lazy import lazy_getattr

if TYPE_CHECKING:  # the names as type checkers and IDEs see them
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

#: Each public name and the module it lives in. Imported on first use, so that ``import
#: quantlens`` (and every spawned worker, which imports the package) pays only for what it
#: uses: the benchmark, quantizers and diagnosis are not needed to evaluate.
_EXPORTS: dict[str, str] = {
    "benchmark": "quantlens.bench",
    "BenchOptions": "quantlens.bench.options",
    "compare": "quantlens.compare",
    "Batch": "quantlens.data",
    "Dataset": "quantlens.data",
    "load_dataset": "quantlens.data",
    "diagnose": "quantlens.diagnose",
    "EvalOptions": "quantlens.engine.options",
    "QuantlensError": "quantlens.errors",
    "evaluate": "quantlens.evaluation",
    "check_kernels": "quantlens.kernel_check",
    "Model": "quantlens.models.base",
    "load_model": "quantlens.models.loading",
    "load_reference_outputs": "quantlens.models.stored",
    "quantize": "quantlens.quantize",
    "BenchEntry": "quantlens.results",
    "BenchResult": "quantlens.results",
    "DatasetSummary": "quantlens.results",
    "DiagnosisResult": "quantlens.results",
    "EvaluationResult": "quantlens.results",
    "KernelCheck": "quantlens.results",
    "ModelInfo": "quantlens.results",
    "ModelResult": "quantlens.results",
    "OutputFidelity": "quantlens.results",
    "Performance": "quantlens.results",
    "QuantizedVariant": "quantlens.results",
    "QuantizeResult": "quantlens.results",
    "QuantParams": "quantlens.results",
    "RankedVariant": "quantlens.results",
    "Recommendation": "quantlens.results",
    "StoredReference": "quantlens.results",
    "TensorSpec": "quantlens.results",
}


#: Public functions named as the submodule they live in (``quantlens.quantize``): importing
#: the submodule must not replace the function in the package's namespace.
_SHADOWED = frozenset(n for n, m in _EXPORTS.items() if m.split(".")[1:2] == [n])


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the function keeps the name; the submodule is in sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)


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
