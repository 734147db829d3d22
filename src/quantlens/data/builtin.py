"""The built-in samples, scikit-learn's digits and diabetes, each with a fixed test split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from quantlens.errors import require

#: The share of each built-in sample held out as its test split, and the split's seed.
BUILTIN_TEST_FRACTION = 0.25


BUILTIN_SPLIT_SEED = 0


def _sklearn_split(x: np.ndarray, y: np.ndarray, split: str, stratify: bool) -> tuple[Any, Any]:
    model_selection = require("sklearn.model_selection", "datasets", "the built-in data sets")
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x,
        y,
        test_size=BUILTIN_TEST_FRACTION,
        random_state=BUILTIN_SPLIT_SEED,
        stratify=y if stratify else None,
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "datasets", "the built-in data set 'digits'")
    d = datasets.load_digits()
    x = (d.images[..., None] / 16.0).astype(np.float32)  # (N, 8, 8, 1) in [0, 1]
    return _sklearn_split(x, d.target.astype(np.int64), split, stratify=True)


def diabetes(split: str) -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "datasets", "the built-in data set 'diabetes'")
    d = datasets.load_diabetes()
    x = d.data.astype(np.float32)  # (N, 10), features already centred and scaled by sklearn
    return _sklearn_split(x, d.target.astype(np.float32), split, stratify=False)


#: The built-in samples: name -> (description, loader of a split).
BUILTINS: dict[str, tuple[str, Callable[[str], tuple[np.ndarray, np.ndarray]]]] = {
    "digits": ("scikit-learn digits: (N, 8, 8, 1) float32 in [0, 1], 10 classes", digits),
    "diabetes": ("scikit-learn diabetes: (N, 10) float32 features, float target", diabetes),
}
