"""Task metrics against labels (classification and regression) as mergeable accumulators."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from quantlens.errors import DataError
from quantlens.metrics.kernels import flat, row_argmax, row_counts

CLASSIFICATION_METRICS = ("accuracy", "top5_accuracy", "macro_f1")
REGRESSION_METRICS = ("mse", "mae", "rmse", "r2")


def class_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer class indices from (N,), (N, 1) or one-hot (N, C) labels, checked for range.

    Raises:
        DataError: labels are not integers, or fall outside [0, num_classes).
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        return y.argmax(axis=1).astype(np.int64)
    y = y.reshape(y.shape[0], -1)
    if y.shape[1] != 1:
        raise DataError(
            f"labels have shape {labels.shape[1:]} per sample but the model has {num_classes} "
            "classes; give one class index or a one-hot row per sample"
        )
    y = y[:, 0]
    if not np.issubdtype(y.dtype, np.integer) and not (
        np.all(np.isfinite(y)) and np.all(y == np.round(y))
    ):
        raise DataError("classification labels must be whole class indices; got fractions")
    yi = y.astype(np.int64)
    bad = (yi < 0) | (yi >= max(num_classes, 2))
    if bad.any():
        raise DataError(
            f"label {yi[bad][0]} is outside the model's classes 0..{max(num_classes, 2) - 1}; "
            "check that the labels belong to this model"
        )
    return yi


def predicted_classes(
    outputs: np.ndarray, top: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(class index per sample, (N, C) scores). A single-unit output is read as P(class 1).
    ``top``: each row's top class, when the caller has it already."""
    scores = flat(outputs)
    if scores.shape[1] == 1:
        p1 = scores[:, 0]
        return (p1 >= 0.5).astype(np.int64), np.stack([1.0 - p1, p1], axis=1)
    return row_argmax(scores) if top is None else top, scores


@dataclass(frozen=True)
class ClassificationState:
    """A confusion matrix and top-5 hits: enough for accuracy, top-5 accuracy and macro F1.

    ``correct`` keeps one flag per sample (1, 0, or NaN when left out) in the order seen, for
    paired statistics.
    """

    num_classes: int
    confusion: np.ndarray = field(repr=False)  # [true, predicted] counts
    top5_hits: int = 0
    correct: tuple[np.ndarray, ...] = field(default=(), repr=False)

    @classmethod
    def empty(cls, num_classes: int) -> ClassificationState:
        k = max(num_classes, 2)
        return cls(num_classes, np.zeros((k, k), dtype=np.int64))

    def update(
        self, labels: np.ndarray, outputs: np.ndarray, valid: np.ndarray | None = None, *,
        top: np.ndarray | None = None,
    ) -> ClassificationState:  # fmt: skip
        """Add one batch of labels and (N, C) scores; returns the new state.

        Rows where ``valid`` is False (a non-finite output) are left out of the metrics and
        recorded as NaN in ``correct``. ``top``: each row's top class, when the caller has it.
        """
        y = class_labels(labels, self.num_classes)
        pred, scores = predicted_classes(outputs, top)
        ok = np.ones(len(y), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        k = self.confusion.shape[0]
        cells = y[ok] * k + pred[ok]
        confusion = self.confusion + np.bincount(cells, minlength=k * k).reshape(k, k)
        top5 = 0
        if self.num_classes >= 5:
            # A label is in the top 5 when fewer than 5 classes score strictly higher.
            label_scores = scores[np.arange(len(y)), y]
            hits = row_counts(scores > label_scores[:, None]) < 5
            top5 = int(hits[ok].sum())
        correct = np.where(ok, (pred == y).astype(np.float32), np.float32(np.nan))
        return replace(
            self,
            confusion=confusion,
            top5_hits=self.top5_hits + top5,
            correct=(*self.correct, correct),
        )

    def merge(self, other: ClassificationState) -> ClassificationState:
        """Combine two disjoint sets of samples (``correct`` keeps self's samples first)."""
        return ClassificationState(
            self.num_classes,
            self.confusion + other.confusion,
            self.top5_hits + other.top5_hits,
            self.correct + other.correct,
        )

    def result(self) -> dict[str, float]:
        """accuracy, macro_f1 (scikit-learn's definition) and top5_accuracy (≥ 5 classes)."""
        cm = self.confusion
        n = int(cm.sum())
        if n == 0:
            raise ValueError("no samples were accumulated")
        tp = np.diag(cm).astype(np.float64)
        support = cm.sum(axis=1)
        predicted = cm.sum(axis=0)
        present = (support + predicted) > 0  # scikit-learn averages over labels seen in either
        f1 = 2 * tp[present] / (support[present] + predicted[present])
        out = {"accuracy": float(tp.sum() / n), "macro_f1": float(f1.mean())}
        if self.num_classes >= 5:
            out["top5_accuracy"] = self.top5_hits / n
        return out


@dataclass(frozen=True)
class RegressionState:
    """Per-target sums for mse/mae/rmse and r2, merged with Chan's parallel variance formula."""

    count: int = 0
    sum_sq_err: np.ndarray | None = field(default=None, repr=False)  # per target column
    sum_abs_err: np.ndarray | None = field(default=None, repr=False)
    mean_y: np.ndarray | None = field(default=None, repr=False)
    m2_y: np.ndarray | None = field(default=None, repr=False)  # Σ(y − mean)²
    # Mean absolute error of each sample (over its targets), in the order seen, for paired tests.
    abs_err: tuple[np.ndarray, ...] = field(default=(), repr=False)

    def update(
        self, labels: np.ndarray, outputs: np.ndarray, valid: np.ndarray | None = None
    ) -> RegressionState:
        """Add one batch of targets and predictions; returns the new state.

        Rows where ``valid`` is False (a non-finite output) are left out of the metrics and
        recorded as NaN in ``abs_err``.
        """
        pred = flat(outputs)
        y = flat(labels)
        if y.shape[1] != pred.shape[1]:
            raise DataError(
                f"labels have {y.shape[1]} value(s) per sample but the model predicts "
                f"{pred.shape[1]}; give one target per model output value"
            )
        ok = np.ones(len(y), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        per_sample = np.full(len(y), np.nan)
        per_sample[ok] = np.abs(pred[ok] - y[ok]).mean(axis=1)
        if not ok.any():
            return replace(self, abs_err=(*self.abs_err, per_sample))
        pred, y = pred[ok], y[ok]
        err = pred - y
        mean = y.mean(axis=0)
        batch = RegressionState(
            count=y.shape[0],
            sum_sq_err=(err * err).sum(axis=0),
            sum_abs_err=np.abs(err).sum(axis=0),
            mean_y=mean,
            m2_y=((y - mean) ** 2).sum(axis=0),
            abs_err=(per_sample,),
        )
        return self.merge(batch)

    def merge(self, other: RegressionState) -> RegressionState:
        """Combine two disjoint sets of samples (``abs_err`` keeps self's samples first)."""
        if self.count == 0:
            return replace(other, abs_err=self.abs_err + other.abs_err)
        if other.count == 0:
            return replace(self, abs_err=self.abs_err + other.abs_err)
        assert self.mean_y is not None and other.mean_y is not None
        assert self.m2_y is not None and other.m2_y is not None
        assert self.sum_sq_err is not None and other.sum_sq_err is not None
        assert self.sum_abs_err is not None and other.sum_abs_err is not None
        n = self.count + other.count
        delta = other.mean_y - self.mean_y
        return RegressionState(
            count=n,
            sum_sq_err=self.sum_sq_err + other.sum_sq_err,
            sum_abs_err=self.sum_abs_err + other.sum_abs_err,
            mean_y=self.mean_y + delta * other.count / n,
            m2_y=self.m2_y + other.m2_y + delta**2 * self.count * other.count / n,
            abs_err=self.abs_err + other.abs_err,
        )

    def result(self) -> dict[str, float]:
        """mse, mae, rmse and r2, each averaged uniformly over targets as scikit-learn does."""
        if self.count == 0 or self.sum_sq_err is None or self.m2_y is None:
            raise ValueError("no samples were accumulated")
        assert self.sum_abs_err is not None
        mse = self.sum_sq_err / self.count
        sst = self.m2_y
        sse = self.sum_sq_err
        # scikit-learn's force_finite: a constant target scores 1 when predicted exactly, else 0.
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(
                sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse == 0, 1.0, 0.0)
            )
        return {
            "mse": float(mse.mean()),
            "mae": float((self.sum_abs_err / self.count).mean()),
            "rmse": float(np.sqrt(mse).mean()),
            "r2": float(r2.mean()),
        }
