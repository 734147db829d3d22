"""Data sources: files, built-in samples, arrays, iterables and tf.data, as batches of arrays.

Every source becomes a :class:`Dataset`. :meth:`Dataset.bind` checks it against a model's
inputs before anything runs and yields :class:`Batch` es whose inputs are in the model's order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from quantlens.data.builtin import BUILTINS
from quantlens.data.sources import (
    ArraySource,
    CsvSource,
    ImageFolderSource,
    ImageSpec,
    Inputs,
    IterableSource,
    NpySource,
    NpzSource,
    ShardableSource,
    Source,
    check_batch_memory,
    check_label_count,
    reading_batches,
    sample_count,
    split_labels,
)
from quantlens.errors import DataError
from quantlens.results import TensorSpec, plain_name


@dataclass(frozen=True)
class Batch:
    """One batch: inputs in the bound model's input order, and labels when the data has them."""

    inputs: list[np.ndarray]
    labels: np.ndarray | None
    #: Per input, its smallest and largest value when the batch was checked for NaN and inf
    #: (None for an input that is not floating point; no ranges when it was not checked).
    ranges: tuple[tuple[float, float] | None, ...] | None = None

    def __len__(self) -> int:
        return int(self.inputs[0].shape[0])


class Dataset:
    """A source of samples with optional labels, read in batches.

    Build one with :func:`load_dataset`. ``num_samples`` is ``None`` when the source cannot
    tell without reading it (an iterable).
    """

    def __init__(self, source: str, reader: Source) -> None:
        self.source = source
        self.reader = reader

    @property
    def num_samples(self) -> int | None:
        return self.reader.num_samples

    @property
    def rereadable(self) -> bool:
        """The data can be read again, and cut into shards: a file or arrays, not an
        iterable (read once)."""
        return self._shardable() is not None

    def _shardable(self) -> ShardableSource | None:
        reader = self.reader
        if self.num_samples is None or not isinstance(reader, ShardableSource):
            return None
        return reader

    def samples_read(self, limit: int | None = None) -> int | None:
        """How many samples a run with ``limit`` reads (None: not known before it reads)."""
        total = self.num_samples
        if total is None:
            return None
        return min(total, limit) if limit is not None else total

    def shards(self, n: int, limit: int | None = None) -> list[Dataset] | None:
        """Up to ``n`` contiguous shards of the first ``limit`` samples (None: cannot shard)."""
        total, reader = self.samples_read(limit), self._shardable()
        if total is None or reader is None:
            return None
        n = max(1, min(n, total))
        bounds = [round(k * total / n) for k in range(n + 1)]
        return [Dataset(self.source, reader.shard(a, b))
                for a, b in pairwise(bounds) if b > a]  # fmt: skip

    def sample_shapes(
        self, specs: Sequence[TensorSpec], constants: Mapping[str, Any] | None = None
    ) -> list[tuple[int, ...]] | None:
        """The first sample's shape of each input, in ``specs``' order and the data's layout,
        without its batch axis; None when the data cannot be read again (an iterable is
        read once: its first sample belongs to the run).

        Raises:
            DataError: the data does not fit ``specs``, as :meth:`bind` says.
        """
        if not self.rereadable:
            return None
        first = self.head(specs, 1, allow_nonfinite=True, constants=constants)
        return [tuple(x.shape[1:]) for x in first.inputs]

    def head(
        self, specs: Sequence[TensorSpec], n: int, *, allow_nonfinite: bool = False,
        constants: Mapping[str, Any] | None = None,
    ) -> Batch:  # fmt: skip
        """The first ``n`` samples (fewer when the data has fewer) as one batch, checked as
        :meth:`bind` checks them.

        Raises:
            DataError: the data does not fit ``specs`` or is empty.
        """
        return next(self.bind(specs, batch_size=n, limit=n, allow_nonfinite=allow_nonfinite,
                              constants=constants))  # fmt: skip

    def guided_shards(
        self, workers: int, limit: int | None = None, unit: int = 1
    ) -> list[Dataset] | None:
        """Contiguous shards that shrink as they go: each takes 1/(2·workers) of the samples
        left, in whole multiples of ``unit`` (a batch). The large ones first keep the cost
        paid per shard low; the small ones last let the workers finish together, whichever
        started late (None: cannot shard)."""
        total, reader = self.samples_read(limit), self._shardable()
        if total is None or reader is None:
            return None
        unit = max(1, unit)
        bounds = [0]
        while bounds[-1] < total:
            size = -(-(total - bounds[-1]) // (2 * max(1, workers)))
            bounds.append(min(total, bounds[-1] + -(-size // unit) * unit))
        return [Dataset(self.source, reader.shard(a, b)) for a, b in pairwise(bounds)]

    def bind(
        self,
        specs: Sequence[TensorSpec],
        *,
        batch_size: int = 32,
        limit: int | None = None,
        allow_nonfinite: bool = False,
        constants: Mapping[str, Any] | None = None,
    ) -> Iterator[Batch]:
        """Check the data against a model's inputs, then yield batches in the model's order.

        Every input is sample-first in the batches, whatever axis the model batches it on.
        ``constants`` fixes inputs by name (one value for every sample; the data need not
        hold them).

        The first chunk is read and checked before this returns, so a mismatch is reported
        before any model runs.

        Raises:
            DataError: the data is empty or does not fit ``specs`` (the message says how).
        """
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if limit is not None and limit < 1:
            raise DataError(f"limit must be at least 1, got {limit}")
        stream = iter(reading_batches(self.reader, batch_size).chunks())
        first = next(stream, None)
        if first is None:
            raise DataError(f"the data set {self.source} is empty; give at least one sample")
        order = _input_order(first[0], specs, self.source, constants or {})
        first_batch = _arrange(first, order, specs, self.source)
        _check_fits(first_batch, specs, self.source)
        most = min(batch_size, limit or batch_size, self.num_samples or batch_size)
        check_batch_memory(most, sum(x[:1].nbytes for x in first_batch.inputs))
        rest = (_arrange(c, order, specs, self.source) for c in stream)
        offset = int(getattr(self.reader, "start", 0))  # a shard's first sample in the set
        return _rebatch(_first_then(first_batch, rest), batch_size, limit, self.source,
                        allow_nonfinite, offset)  # fmt: skip

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}, num_samples={self.num_samples})"


@dataclass(frozen=True)
class _Given:
    """An input the user fixed (``--const NAME=VALUE``): the same value for every sample."""

    value: np.ndarray


def _input_order(
    inputs: Inputs, specs: Sequence[TensorSpec], source: str,
    constants: Mapping[str, np.ndarray],
) -> list[Any]:  # fmt: skip
    """Keys (names or positions) of the data inputs in the order of the model's inputs, or
    the value the user fixed for an input."""
    fixed = {plain_name(k): np.asarray(v) for k, v in constants.items()}
    unknown = set(fixed) - {plain_name(s.name) for s in specs}
    if unknown:
        names = ", ".join(s.name for s in specs)
        raise DataError(f"no model input is named {', '.join(sorted(unknown))} (it has {names})")
    free = [s for s in specs if plain_name(s.name) not in fixed]
    if isinstance(inputs, list):
        if len(inputs) != len(free):
            raise DataError(
                f"the model takes {len(free)} input(s) from the data but {source} gives "
                f"{len(inputs)}; give one array per model input"
            )
        positions = iter(range(len(free)))
        return [_Given(fixed[plain_name(s.name)]) if plain_name(s.name) in fixed
                else next(positions) for s in specs]  # fmt: skip
    keys = list(inputs)
    by_name = {plain_name(k): k for k in keys}
    order: list[Any] = []
    for s in specs:
        name = plain_name(s.name)
        if name in fixed:
            order.append(_Given(fixed[name]))
        elif len(keys) == 1 and len(free) == 1:
            order.append(keys[0])
        elif name in by_name:
            order.append(by_name[name])
        else:
            raise DataError(
                f"model input '{s.name}' not found in {source} (it has {', '.join(keys)}); "
                "name the arrays after the model's inputs, or fix it with --const NAME=VALUE"
            )
    return order


def _sample_rank(spec: TensorSpec) -> int:
    """Dimensions of one sample of this input (its shape without the batch axis)."""
    return len(spec.sample_shape)


def _arrange(
    chunk: tuple[Inputs, np.ndarray | None],
    order: list[Any],
    specs: Sequence[TensorSpec],
    source: str,
) -> Batch:
    """One chunk as a batch: every input sample-first, in the model's order.

    An array with one dimension fewer than a sample-first one is given once and repeated for
    every sample (a broadcast view, no copy); when every array is so, the chunk is a single
    sample (an iterable of samples). An input the model does not batch (a scalar) takes one
    value, repeated likewise.
    """
    inputs, labels = chunk
    try:
        arrays = [k.value if isinstance(k, _Given) else np.asarray(inputs[k]) for k in order]
    except (KeyError, IndexError) as exc:
        raise DataError(
            f"{source}: a batch lacks input {exc}; every batch needs every input"
        ) from exc
    given = [isinstance(k, _Given) for k in order]
    once = [g or a.ndim == _sample_rank(s)
            for a, s, g in zip(arrays, specs, given, strict=True)]  # fmt: skip
    counts = {a.shape[0] for a, o in zip(arrays, once, strict=True) if not o and a.ndim}
    if labels is not None:
        labels = np.asarray(labels)[None] if all(once) else np.asarray(labels)
    if labels is not None and labels.ndim:
        n = int(labels.shape[0])
    elif counts:
        n = max(counts)
    else:
        n = 1
    out = []
    for a, s, o in zip(arrays, specs, once, strict=True):
        if o:
            out.append(np.broadcast_to(a, (n, *a.shape)))
            continue
        if a.ndim == 0 or a.shape[0] != n:
            raise DataError(
                f"{source}: input '{s.name}' has {a.shape[0] if a.ndim else 0} samples where "
                f"{'the labels have' if labels is not None else 'another input has'} {n}; "
                "give every input the same number of samples (or one value for all)"
            )
        if s.batch_axis is None and n > 1 and not bool(np.all(a == a[:1])):
            raise DataError(
                f"{source}: input '{s.name}' is not batched by the model ({s.shape}) but "
                "changes from sample to sample; give it one value for all samples"
            )
        out.append(a)
    if labels is not None and (labels.ndim == 0 or labels.shape[0] != n):
        got = labels.shape[0] if labels.ndim else 0
        raise DataError(f"{source}: {got} labels for {n} samples; give one label per sample")
    if labels is not None:
        _check_labels(labels, source)
    return Batch(out, labels)


def _check_labels(labels: np.ndarray, source: str) -> None:
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{source}: labels are {labels.dtype.name}, not numbers; give class "
                        "indices (integers) or regression targets")  # fmt: skip
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        bad = int(np.argwhere(~np.isfinite(labels.reshape(len(labels), -1)))[0, 0])
        raise DataError(f"{source}: label of sample {bad} (in this chunk) is NaN or inf; "
                        "clean the labels")  # fmt: skip


def _describe(shape: Sequence[int | None], dtype: str) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims}{',' if len(shape) == 1 else ''}) {dtype}"


def _check_fits(batch: Batch, specs: Sequence[TensorSpec], source: str) -> None:
    for a, s in zip(batch.inputs, specs, strict=True):
        expected = s.sample_shape
        given = a.shape[1:]
        fits = len(expected) == len(given) and all(
            e is None or e == g for e, g in zip(expected, given, strict=True)
        )
        numeric = np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_
        if not fits or not numeric:
            want = "float32" if s.quantization else s.dtype
            raise DataError(
                f"input '{s.name}': the model expects samples of shape "
                f"{_describe(expected, want)}, {source} gives {_describe(given, a.dtype.name)}; "
                "reshape or convert the data to match"
            )


def _check_finite(batch: Batch, start: int, source: str) -> Batch:
    """The batch with each floating-point input's range, which also says it is finite: NaN
    makes the smallest and largest value NaN, inf makes one of them infinite (two quick
    reductions, which a quantized model's input saturation then reads too)."""
    ranges: list[tuple[float, float] | None] = []
    for i, a in enumerate(batch.inputs):
        if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
            ranges.append(None)
            continue
        low, high = float(a.min()), float(a.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = start + int(np.argwhere(~np.isfinite(a.reshape(a.shape[0], -1)))[0, 0])
            raise DataError(
                f"{source}: input {i} has NaN or inf at sample {bad}; clean the data "
                "(or pass allow_nonfinite to evaluate it anyway)"
            )
        ranges.append((low, high))
    return Batch(batch.inputs, batch.labels, tuple(ranges))


def _slice(b: Batch, start: int, stop: int | None) -> Batch:
    return Batch(
        [x[start:stop] for x in b.inputs], None if b.labels is None else b.labels[start:stop]
    )


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    labels = [p.labels for p in parts]
    return Batch(
        [np.concatenate(cols) for cols in zip(*(p.inputs for p in parts), strict=True)],
        None if any(lab is None for lab in labels) else np.concatenate(labels),  # type: ignore[arg-type]
    )


def _first_then(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    """``first``, then ``rest``, holding no reference to ``first`` once it is taken (a chain
    would keep it, and the whole read chunk under it, until the run ends)."""
    held = [first]
    del first
    yield held.pop()
    yield from rest


def _take(pending: list[Batch], size: int) -> tuple[Batch, list[Batch]]:
    """The first ``size`` samples of the pending pieces, and the pieces left: views where the
    batch lies in one piece, a copy of just those samples where it spans two."""
    taken: list[Batch] = []
    need = size
    rest = list(pending)
    while need:
        head = rest[0]
        if len(head) <= need:
            taken.append(head)
            rest.pop(0)
            need -= len(head)
        else:
            taken.append(_slice(head, 0, need))
            rest[0] = _slice(head, need, None)
            need = 0
    return _concat(taken), rest


def _rebatch(
    batches: Iterator[Batch], size: int, limit: int | None, source: str, allow_nonfinite: bool,
    offset: int = 0,
) -> Iterator[Batch]:  # fmt: skip
    """Cut or join incoming chunks into batches of exactly ``size`` (the last may be smaller)."""
    pending: list[Batch] = []
    have = 0  # samples in pending
    seen = 0  # samples yielded
    for chunk in batches:
        if limit is not None:
            chunk = _slice(chunk, 0, limit - seen - have)
        pending.append(chunk)
        have += len(chunk)
        while have >= size:
            out, pending = _take(pending, size)
            have -= size
            if not allow_nonfinite:
                out = _check_finite(out, offset + seen, source)
            seen += size
            yield out
        if limit is not None and seen + have >= limit:
            break
    if have:
        out = _concat(pending)
        if not allow_nonfinite:
            out = _check_finite(out, offset + seen, source)
        yield out


def _split_labels(mapping: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    inputs, labels = split_labels(dict(mapping))
    if "x" in inputs and len(inputs) == 1:
        return {"x": inputs["x"]}, labels
    return inputs, labels


def _element(item: Any) -> tuple[Inputs, np.ndarray | None]:
    """One element of an iterable: ``x``, ``(x,)``, ``(x, y)`` or a dict with ``y``; ``x`` may
    be an array, a list of arrays (several inputs) or a dict of arrays by input name."""
    if isinstance(item, Mapping):
        return _split_labels(item)
    labels = None
    if isinstance(item, tuple):
        if len(item) not in (1, 2):
            raise DataError(
                f"a data element is a tuple of {len(item)}; give (inputs,) or (inputs, labels)"
            )
        item, labels = item if len(item) == 2 else (item[0], None)
    if isinstance(item, Mapping):
        return {k: np.asarray(v) for k, v in item.items()}, labels
    if isinstance(item, list):
        return [np.asarray(v) for v in item], labels
    return [np.asarray(item)], labels


def _from_arrays(source: str, inputs: Inputs, labels: np.ndarray | None) -> Dataset:
    arrays = list(inputs.values()) if isinstance(inputs, dict) else inputs
    if not arrays:
        raise DataError(f"{source} holds no input arrays; give at least one")
    check_label_count([np.asarray(a) for a in arrays], labels, source)
    if sample_count([np.asarray(a) for a in arrays], labels) == 0:
        raise DataError(f"the data set {source} is empty; give at least one sample")
    return Dataset(source, ArraySource(inputs, labels))


def _from_file(reader: Any, source: str) -> Dataset:
    """A file source (read lazily: opening reads headers, not data)."""
    if reader.num_samples == 0:
        raise DataError(f"the data set {source} is empty; give at least one sample")
    return Dataset(source, reader)


def _from_builtin(source: str) -> Dataset:
    name, _, split = source.partition(":")
    split = split or "test"
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}' of '{name}'; use {name} or {name}:train")
    x, y = BUILTINS[name][1](split)
    return _from_arrays(source if split == "train" else name, [x], y)


def load_dataset(
    source: Any, labels: Any = None, *, preprocess: str = "", label_column: str | None = None
) -> Dataset:
    """Make a :class:`Dataset` from a file, a built-in sample, arrays or an iterable.

    Args:
        source: one of
            - a path to ``.npz`` (arrays ``x`` and optional ``y``, or one array per model
              input name plus ``y``; memory-mapped when saved uncompressed) or ``.npy``
              (inputs only, memory-mapped);
            - a ``.csv`` with a header: numeric feature columns and a label column;
            - a folder with one subfolder of images per class (decoded with Pillow);
            - ``"digits"`` or ``"diabetes"``: scikit-learn's samples, test split (25%,
              ``random_state=0``, stratified for digits); append ``:train`` for the rest;
            - a NumPy array of inputs, a list of arrays (one per input), or a dict by name;
            - a tuple ``(inputs, labels)``;
            - an iterable of batches or samples (``x``, ``(x, y)`` or dicts), or a
              ``tf.data.Dataset`` of those;
            - a :class:`Dataset` (returned as is).
        labels: labels for array inputs, when not given inside ``source``.
        preprocess: for image folders, a :class:`quantlens.data.sources.ImageSpec` string, e.g.
            ``size=224x224,scale=1/255,mean=0.485:0.456:0.406,std=0.229:0.224:0.225``.
        label_column: for CSV, the label column (default: ``label``, ``y`` or ``target``).

    Raises:
        DataError: the source does not exist, cannot be read, or is empty.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if text.partition(":")[0] in BUILTINS and not Path(text).exists():
            return _from_builtin(text)
        path = Path(text)
        if not path.exists():
            names = ", ".join(BUILTINS)
            raise DataError(f"data not found: {path} (give a .npz or .npy file, or one of {names})")
        if not path.is_dir() and not path.is_file():  # a FIFO or a device would block
            raise DataError(f"{path} is not a regular file; give a data file or folder")
        if path.is_dir():
            return _from_file(ImageFolderSource.open(path, ImageSpec.parse(preprocess)), text)
        if path.suffix == ".npz":
            return _from_file(NpzSource.open(path), text)
        if path.suffix == ".npy":
            return _from_file(NpySource.open(path), text)
        if path.suffix == ".csv":
            return _from_file(CsvSource.open(path, label_column), text)
        raise DataError(
            f"unknown data type '{path.suffix}' for {path}; give a .npz, .npy or .csv file, "
            "or a folder of class subfolders of images"
        )
    if isinstance(source, np.ndarray):
        return _from_arrays("array", [source], None if labels is None else np.asarray(labels))
    if isinstance(source, tuple) and len(source) == 2 and labels is None:
        inputs, y = _element(source)
        return _from_arrays("arrays", inputs, None if y is None else np.asarray(y))
    if isinstance(source, list | dict) and all(isinstance(v, np.ndarray) for v in _values(source)):
        inputs, _ = _element(source)
        return _from_arrays("arrays", inputs, None if labels is None else np.asarray(labels))
    if hasattr(source, "as_numpy_iterator"):  # tf.data.Dataset
        return Dataset(
            "tf.data.Dataset", IterableSource(lambda: map(_element, source.as_numpy_iterator()))
        )
    if isinstance(source, Iterable):
        return Dataset("iterable", IterableSource(lambda: map(_element, source)))
    raise DataError(f"cannot read data from a {type(source).__name__}; see load_dataset's doc")


def _values(source: list[Any] | dict[str, Any]) -> list[Any]:
    return list(source.values()) if isinstance(source, dict) else source
