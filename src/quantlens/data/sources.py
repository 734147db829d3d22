"""Where samples come from: arrays, memory-mapped .npy/.npz, image folders, CSV, iterables.

Each source yields chunks of ``(inputs, labels)`` and, when it knows its size, can be cut into
shards that other processes open by themselves (sources are small and picklable: they hold
paths and ranges, never the data of a file). Memory does not grow with the size of the set.
"""

from __future__ import annotations

import csv
import math
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from quantlens.errors import DataError, require

Inputs = list[np.ndarray] | dict[str, np.ndarray]
Chunk = tuple[Inputs, np.ndarray | None]


class Source(Protocol):
    """A reader of one kind of data. Picklable (a worker re-opens it), it reads lazily: its
    samples come in chunks of inputs (a list, or a dict by input name) and labels."""

    @property
    def num_samples(self) -> int | None:
        """How many samples (None: unknown until read, as for an iterable)."""
        ...

    def chunks(self) -> Iterable[Chunk]:
        """The samples, a chunk at a time, from the start."""
        ...


@runtime_checkable
class ShardableSource(Source, Protocol):
    """A source that can hand out a contiguous range of its samples as a source of its own."""

    def shard(self, start: int, stop: int) -> Source:
        """Samples ``start`` to ``stop`` (exclusive)."""
        ...


LABEL_KEYS = ("y", "label", "labels")
CHUNK = 256  # samples decoded at a time for images and CSV
ROWS_PER_READ = 4096  # samples read at a time from .npy/.npz files...
BYTES_PER_READ = 8 * 2**20  # ...and at most this many bytes
#: Longest side of an image, decoded or resized to (Pillow's bomb guard refuses more pixels).
MAX_IMAGE_SIDE = 16384
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# What NumPy and zipfile raise on a file that is not what its name says.
UNREADABLE = (OSError, ValueError, OverflowError, EOFError, KeyError, zipfile.BadZipFile,
              zlib.error, csv.Error)  # fmt: skip


def split_labels(mapping: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Inputs by name, and the labels array when one of LABEL_KEYS holds it."""
    inputs = {k: v for k, v in mapping.items() if k not in LABEL_KEYS}
    label_keys = [k for k in LABEL_KEYS if k in mapping]
    return inputs, (mapping[label_keys[0]] if label_keys else None)


def rows_per_read(arrays: Iterable[np.ndarray]) -> int:
    """How many samples one read takes: ROWS_PER_READ, fewer for large samples; a power of
    two, so that reads hold whole batches of the sizes chosen for the user (a batch across
    two reads is a copy)."""
    widest = max(int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize for a in arrays)
    rows = max(1, min(ROWS_PER_READ, BYTES_PER_READ // max(widest, 1)))
    return 1 << (rows.bit_length() - 1)


def npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read a .npy header from ``f`` (left at the first byte of data): shape, Fortran order,
    dtype.

    Raises:
        ValueError: not a .npy header, or an array of Python objects (a pickle).
    """
    major, _ = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                   else np.lib.format.read_array_header_2_0)  # fmt: skip
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError("object arrays (pickles) are not loaded")
    return tuple(shape), bool(fortran), dtype


#: A compressed member read whole (an array given once, not per sample) may inflate to this.
MAX_WHOLE_MEMBER_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ZippedArray:
    """A compressed .npy member of an .npz (numpy.savez_compressed), read front to back in
    bounded pieces: never inflated whole, so a zip bomb costs time, not memory, and
    ``--limit`` stops the reading."""

    path: Path
    member: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _open(self) -> Any:
        zf = zipfile.ZipFile(self.path)
        stream = zf.open(self.member)
        npy_header(stream)
        return zf, stream

    def _read(self, stream: Any, count: int) -> np.ndarray:
        want = count * self.dtype.itemsize
        data = stream.read(want)
        if len(data) != want:
            raise DataError(f"{self.path}: member {self.member} ends before the "
                            f"{self.shape} its header declares; save it again")  # fmt: skip
        return np.frombuffer(data, dtype=self.dtype)

    def rows(self, start: int, stop: int, rows: int) -> Iterator[np.ndarray]:
        """Rows ``start:stop`` in pieces of ``rows`` (the rows before ``start`` are inflated
        and dropped a piece at a time)."""
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        zf, stream = self._open()
        with zf, stream:
            for a in range(0, start, rows):  # skip, in bounded pieces
                self._read(stream, (min(a + rows, start) - a) * row_items)
            for a in range(start, stop, rows):
                b = min(a + rows, stop)
                yield self._read(stream, (b - a) * row_items).reshape(b - a, *self.shape[1:])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole array, for one given once for every sample (a small constant).

        Raises:
            DataError: it would inflate past MAX_WHOLE_MEMBER_BYTES.
        """
        size = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if size > MAX_WHOLE_MEMBER_BYTES:
            raise DataError(f"{self.path}: member {self.member} would inflate to "
                            f"{size / 2**20:.0f} MiB as one value; save per-sample arrays "
                            "with a sample axis, or the file uncompressed")  # fmt: skip
        zf, stream = self._open()
        with zf, stream:
            array = self._read(stream, int(np.prod(self.shape, dtype=np.int64)))
        out = array.reshape(self.shape)
        return out if dtype is None else out.astype(dtype)


#: A batch of inputs larger than this is refused: with its copies (quantized, laid out) and
#: the models' activations it would not fit in a machine's memory.
MAX_BATCH_BYTES = 256 * 2**20


def check_batch_memory(batch_size: int, sample_bytes: int) -> None:
    """Refuse a batch whose inputs alone would take more than MAX_BATCH_BYTES.

    Raises:
        DataError: the batch is too large; the message gives the largest that fits, or says
            that one sample is already too large.
    """
    if sample_bytes > MAX_BATCH_BYTES:
        raise DataError(
            f"one sample takes {sample_bytes / 2**30:,.1f} GiB of inputs, more than a batch "
            f"may hold ({MAX_BATCH_BYTES // 2**20} MiB); the data's header declares it so"
        )
    if batch_size * sample_bytes > MAX_BATCH_BYTES:
        fits = max(1, MAX_BATCH_BYTES // max(sample_bytes, 1))
        raise DataError(
            f"a batch of {batch_size:,} samples would take {batch_size * sample_bytes / 2**30:.1f}"
            f" GiB of inputs; use a batch size of at most {fits:,}"
        )


def read_rows(
    array: np.ndarray | ZippedArray, start: int, stop: int, rows: int
) -> Iterator[np.ndarray]:
    """Rows ``start:stop`` of an array, in copies of ``rows`` rows (the last may be fewer).

    For a memory-mapped C-order array the rows are read with plain file reads, so the pages
    read do not stay resident in the process (a mapping's pages would: memory would grow with
    the size of the set), into buffers used again once nothing holds them (a fresh buffer
    per read let the heap fragment: peak memory grew by a read's size over a long run, 1.12×
    at 10× the samples); a compressed member is inflated piece by piece.
    """
    row_bytes = math.prod(int(d) for d in array.shape[1:]) * np.dtype(array.dtype).itemsize
    check_batch_memory(1, row_bytes)  # a header may declare rows no machine could hold
    if isinstance(array, ZippedArray):
        yield from array.rows(start, stop, rows)
        return
    filename = getattr(array, "filename", None) if array.flags.c_contiguous else None
    if not filename:
        for a in range(start, stop, rows):
            yield np.asarray(array[a : min(a + rows, stop)])
        return
    offset = int(getattr(array, "offset", 0))
    buffers = _ReadBuffers(array.dtype, array.shape[1:], min(rows, max(stop - start, 1)))
    with open(filename, "rb", buffering=0) as f:
        f.seek(offset + start * row_bytes)
        for a in range(start, stop, rows):
            piece = buffers.take(min(a + rows, stop) - a)
            _read_into(f, piece, filename)
            yield piece
            del piece  # the next take may find this buffer free


class _ReadBuffers:
    """Buffers of ``rows`` rows, handed out again once nothing else refers to them. A run
    holds three at a time: the piece being cut into batches, the one before it (a batch may
    span both), and one that the data check and the models let go a step later. A buffer
    something still refers to (a caller's list of pieces, a batch kept) is never written to:
    a new one takes its place."""

    KEPT = 3

    def __init__(self, dtype: np.dtype, row_shape: tuple[int, ...], rows: int) -> None:
        self._dtype, self._row_shape, self._rows = dtype, row_shape, rows
        self._free: list[np.ndarray] = []

    def take(self, n: int) -> np.ndarray:
        """A buffer of ``n`` rows (at most ``rows``) that nothing else refers to."""
        for i in range(len(self._free)):
            if sys.getrefcount(self._free[i]) <= 2:  # this list's and getrefcount's argument
                buf = self._free.pop(i)
                self._free.append(buf)  # the most recently handed out last
                return buf[:n]
        buf = np.empty((self._rows, *self._row_shape), self._dtype)
        self._free.append(buf)
        if len(self._free) > self.KEPT:
            self._free.pop(0)  # still held elsewhere; freed when its holder lets it go
        return buf[:n]


def _read_into(f: Any, out: np.ndarray, filename: str) -> None:
    """Fill ``out`` (C-contiguous) from the file's current position; a short read is
    retried, and the file's end before ``out`` is full is an error (the file shrank)."""
    view = out.reshape(-1).view(np.uint8).data
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise DataError(f"{filename} ended {len(view) - done} bytes early; it changed "
                            "while it was being read")  # fmt: skip
        done += got


def check_label_count(arrays: list[np.ndarray], labels: np.ndarray | None, source: str) -> None:
    """Labels must count the samples of at least one input array (one label per sample)."""
    if labels is None:
        return
    got = int(np.shape(labels)[0]) if np.ndim(labels) else 0
    leading = [int(a.shape[0]) for a in arrays if a.ndim]
    if got == 0 or got not in leading:
        n = leading[0] if leading else 0
        raise DataError(f"{source} has {got} labels for {n} samples; give one label per sample")


def sample_count(arrays: Iterable[np.ndarray], labels: np.ndarray | None) -> int:
    """How many samples a set of arrays holds: the labels' count when there are labels,
    else the leading dimension most arrays share (the largest on a tie). Arrays without it
    are given once for every sample (a sample-rate scalar, a fixed state)."""
    if labels is not None:
        return int(np.shape(labels)[0]) if np.ndim(labels) else 0
    leading = [int(a.shape[0]) for a in arrays if a.ndim]
    if not leading:
        return 0
    return max(set(leading), key=lambda d: (leading.count(d), d))


@dataclass(frozen=True)
class ArraySource:
    """Arrays already in memory (or memory-mapped), one per input, plus optional labels.

    An array whose leading dimension is not the set's sample count is given once: every
    chunk holds it whole, and binding to the model decides what it means.
    """

    inputs: Inputs
    labels: np.ndarray | None
    start: int = 0
    stop: int | None = None
    #: The batch the samples are read for: a read holds at least that many (a batch across
    #: two reads would be a copy).
    batch: int = 1

    def _arrays(self) -> list[np.ndarray]:
        return list(self.inputs.values()) if isinstance(self.inputs, dict) else list(self.inputs)

    @property
    def num_samples(self) -> int:
        total = sample_count(self._arrays(), self.labels)
        return (total if self.stop is None else self.stop) - self.start

    def chunks(self) -> Iterator[Chunk]:
        arrays = self._arrays()
        total = sample_count(arrays, self.labels)
        stop = self.start + self.num_samples
        names = list(self.inputs) if isinstance(self.inputs, dict) else None
        per_sample = [a.ndim > 0 and a.shape[0] == total for a in arrays]
        sliced = [a for a, p in zip(arrays, per_sample, strict=True) if p]
        rows = rows_per_read(sliced) if sliced else ROWS_PER_READ
        rows = max(rows, 1 << (max(self.batch, 1) - 1).bit_length())
        readers = [read_rows(a, self.start, stop, rows) for a in sliced]
        if self.labels is not None:
            labels = (
                self.labels if isinstance(self.labels, ZippedArray) else np.asarray(self.labels)
            )
            readers.append(read_rows(labels, self.start, stop, rows))
        whole = [np.asarray(a) for a, p in zip(arrays, per_sample, strict=True) if not p]
        for parts in zip(*readers, strict=True):
            got, once = iter(parts[: len(sliced)]), iter(whole)
            inputs = [next(got) if p else next(once) for p in per_sample]
            y = parts[-1] if self.labels is not None else None
            yield (dict(zip(names, inputs, strict=True)) if names else inputs), y

    def shard(self, start: int, stop: int) -> ArraySource:
        return replace(self, start=self.start + start, stop=self.start + stop)


def mapped_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """A .npy member stored uncompressed in a zip, memory-mapped (never read whole).

    Raises:
        ValueError: not a .npy member, an object array, or data that overruns the member.
    """
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        shape, fortran, dtype = npy_header(f)
        offset = f.tell()
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + size > info.file_size:
        raise ValueError(f"member {info.filename} is shorter than the {shape} {dtype} array "
                         "its header declares")  # fmt: skip
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")  # fmt: skip


def _npz_member(path: Path, name: str) -> np.ndarray:
    """One array of an .npz: memory-mapped when stored uncompressed (numpy.savez), read
    whole when compressed (numpy.savez_compressed: a zip member cannot be mapped)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name + ".npy")
        if info.compress_type == zipfile.ZIP_STORED:
            return mapped_member(path, info)
        with zf.open(info) as member:
            shape, fortran, dtype = npy_header(member)
        if fortran and len(shape) > 1:
            raise ValueError("a compressed array in Fortran order cannot be read a sample at "
                             "a time; save it in C order (numpy's default)")  # fmt: skip
        return ZippedArray(path, info.filename, tuple(shape), dtype)  # type: ignore[return-value]


@dataclass(frozen=True)
class FileRange:
    """A file of ``total`` samples, of which this source reads ``start:stop``."""

    path: Path
    start: int = 0
    stop: int | None = None
    total: int = 0

    @property
    def num_samples(self) -> int:
        return (self.total if self.stop is None else self.stop) - self.start

    def shard(self, start: int, stop: int) -> Any:
        """Samples ``start:stop`` of this source, as a source of the same kind."""
        return replace(self, start=self.start + start, stop=self.start + stop)


@dataclass(frozen=True)
class NpzSource(FileRange):
    """An .npz file: arrays ``x`` and optional ``y``, or one array per input name plus ``y``."""

    batch: int = 1  # as ArraySource's

    @classmethod
    def open(cls, path: Path) -> NpzSource:
        source = cls(path)
        inputs, labels = source._arrays()
        arrays = list(inputs.values())
        if not arrays:
            raise DataError(f"{path} holds no input arrays; save at least one (x=...)")
        check_label_count(arrays, labels, str(path))
        return replace(source, total=sample_count(arrays, labels))

    def _arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]
            arrays = {n: _npz_member(self.path, n) for n in names}
        except UNREADABLE as exc:
            raise DataError(
                f"cannot read {self.path} as .npz ({exc}); save it with numpy.savez"
            ) from exc
        return split_labels(arrays)

    def chunks(self) -> Iterator[Chunk]:
        inputs, labels = self._arrays()
        yield from ArraySource(inputs, labels, self.start, self.start + self.num_samples,
                               self.batch).chunks()  # fmt: skip


@dataclass(frozen=True)
class NpySource(FileRange):
    """An .npy file of inputs, opened by its header and read in bounded pieces."""

    batch: int = 1  # as ArraySource's

    @classmethod
    def open(cls, path: Path) -> NpySource:
        return replace(cls(path), total=int(cls(path)._array().shape[0]))

    def _array(self) -> np.ndarray:
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except UNREADABLE as exc:
            raise DataError(
                f"cannot read {self.path} as .npy ({exc}); save it with numpy.save"
            ) from exc
        if array.ndim == 0:
            raise DataError(f"{self.path} holds a scalar; save one sample per row")
        return array

    def chunks(self) -> Iterator[Chunk]:
        yield from ArraySource(
            [self._array()], None, self.start, self.start + self.num_samples, self.batch
        ).chunks()


def reading_batches(source: Source, batch: int) -> Source:
    """``source``, reading at least ``batch`` samples at a time where it reads arrays in
    pieces (so that no batch spans two reads: a copy of the batch); other sources as they
    are."""
    if isinstance(source, (ArraySource, NpzSource, NpySource)):
        return replace(source, batch=batch)
    return source


@dataclass(frozen=True)
class ImageSpec:
    """How images become model inputs: ``size`` (width, height), ``scale`` applied to 0..255
    pixel values, then ``(x − mean) / std`` per channel, ``channels`` order (rgb, bgr or l),
    ``layout`` nhwc or nchw."""

    size: tuple[int, int] = (224, 224)
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: str = "rgb"
    layout: str = "nhwc"

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        """Read ``size=224x224,scale=0.00392,mean=0.485:0.456:0.406,std=...,channels=rgb,
        layout=nchw`` (any subset; the rest keeps its default)."""
        spec: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            try:
                if key == "size":
                    w, _, h = value.lower().partition("x")
                    spec["size"] = (int(w), int(h or w))
                elif key == "scale":
                    num, _, den = value.partition("/")
                    spec["scale"] = float(num) / float(den or 1)
                elif key in ("mean", "std"):
                    spec[key] = tuple(float(v) for v in value.split(":"))
                elif value in {"channels": ("rgb", "bgr", "l"), "layout": ("nhwc", "nchw")}.get(
                    key, ()
                ):
                    spec[key] = value
                else:
                    raise ValueError(key)
            except ValueError:
                raise DataError(
                    f"cannot read '{part}' in the preprocessing spec; use size=WxH, scale=1/255, "
                    "mean=a:b:c, std=a:b:c, channels=rgb|bgr|l, layout=nhwc|nchw"
                ) from None
        made = cls(**spec)
        made.check()
        return made

    def check(self) -> None:
        """Refuse sizes no image can have and statistics that do not fit the channels.

        Raises:
            DataError: a size outside 1..MAX_IMAGE_SIDE, a non-finite or zero scale or std,
                or a mean/std with another number of values than channels (or one).
        """
        w, h = self.size
        if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
            raise DataError(f"size={w}x{h} in the preprocessing spec: each side must be 1 to "
                            f"{MAX_IMAGE_SIDE} pixels")  # fmt: skip
        channels = 1 if self.channels == "l" else 3
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels) or not all(np.isfinite(values)):
                raise DataError(f"{key} in the preprocessing spec needs 1 or {channels} finite "
                                f"values (for {self.channels}), got {len(values)}")  # fmt: skip
        if not np.isfinite(self.scale) or self.scale == 0 or any(v == 0 for v in self.std):
            raise DataError("scale and std in the preprocessing spec must be finite and non-zero")

    def apply(self, image: Any) -> np.ndarray:
        """One PIL image to a float32 (H, W, C) or (C, H, W) array."""
        image = image.convert("L" if self.channels == "l" else "RGB").resize(self.size)
        x: np.ndarray = np.asarray(image, dtype=np.float32)
        x = x[..., None] if x.ndim == 2 else x
        if self.channels == "bgr":
            x = x[..., ::-1]
        x = (x * self.scale - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1) if self.layout == "nchw" else x)


@dataclass(frozen=True)
class ImageFolderSource:
    """A folder with one subfolder of images per class (sorted names give class indices)."""

    root: Path
    spec: ImageSpec
    files: tuple[tuple[str, int], ...] = field(repr=False, default=())
    classes: tuple[str, ...] = ()
    start: int = 0  # this shard's first image in the whole folder

    @classmethod
    def open(cls, root: Path, spec: ImageSpec) -> ImageFolderSource:
        classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
        files = tuple(
            (str(f), k)
            for k, c in enumerate(classes)
            for f in sorted((root / c).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        )
        if not classes:
            raise DataError(f"{root} has no class subfolders; put each class's images in one")
        return cls(root, spec, files, classes)

    @property
    def num_samples(self) -> int:
        return len(self.files)

    def chunks(self) -> Iterator[Chunk]:
        pil = require("PIL.Image", "datasets", "reading image folders")
        for start in range(0, len(self.files), CHUNK):
            part = self.files[start : start + CHUNK]
            images = []
            for path, _ in part:
                try:
                    if not Path(path).is_file():
                        raise OSError("not a regular file")
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", pil.DecompressionBombWarning)
                        with pil.open(path) as im:
                            w, h = im.size
                            if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
                                raise OSError(f"{w}x{h} pixels, more than {MAX_IMAGE_SIDE} a side")
                            images.append(self.spec.apply(im))
                except (OSError, ValueError, pil.DecompressionBombError,
                        pil.DecompressionBombWarning) as exc:  # fmt: skip
                    raise DataError(f"cannot read image {path} ({exc}); remove or fix it") from exc
            yield [np.stack(images)], np.array([k for _, k in part], dtype=np.int64)

    def shard(self, start: int, stop: int) -> ImageFolderSource:
        return replace(self, files=self.files[start:stop], start=self.start + start)


@dataclass(frozen=True)
class CsvSource(FileRange):
    """A CSV file with a header: every numeric column but the label column is a feature."""

    label_column: str | None = None

    @classmethod
    def open(cls, path: Path, label_column: str | None = None) -> CsvSource:
        try:
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
                total = sum(1 for _ in f)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"cannot read {path} as CSV ({exc})") from exc
        if not header:
            raise DataError(f"{path} has no header row; name the columns in the first line")
        if label_column is None:
            label_column = next((c for c in ("label", "y", "target") if c in header), None)
        elif label_column not in header:
            shown = ", ".join(header[:20]) + (f", … ({len(header)} in all)" if len(header) > 20
                                               else "")  # fmt: skip
            raise DataError(f"{path} has no column '{label_column}' (columns: {shown})")
        return cls(path, total=total, label_column=label_column)

    def chunks(self) -> Iterator[Chunk]:
        try:
            yield from self._chunks()
        except csv.Error as exc:
            raise DataError(f"cannot read {self.path} as CSV ({exc})") from exc

    def _chunks(self) -> Iterator[Chunk]:
        with self.path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            label_at = header.index(self.label_column) if self.label_column else None
            features = [i for i in range(len(header)) if i != label_at]
            rows: list[list[str]] = []
            for n, row in enumerate(reader):
                if n < self.start:
                    continue
                if n >= self.start + self.num_samples:
                    break
                rows.append(row)
                if len(rows) == CHUNK:
                    yield self._chunk(rows, features, label_at, n)
                    rows = []
            if rows:
                yield self._chunk(rows, features, label_at, self.start + self.num_samples)

    def _chunk(self, rows: list[list[str]], features: list[int], label_at: int | None,
               line: int) -> Chunk:  # fmt: skip
        try:
            x = np.array([[float(r[i]) for i in features] for r in rows], dtype=np.float32)
            y = None if label_at is None else np.array([float(r[label_at]) for r in rows])
        except (ValueError, IndexError) as exc:
            raise DataError(
                f"{self.path} near line {line + 2}: {exc}; every feature must be a number"
            ) from exc
        if y is not None and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        return [x], y


@dataclass(frozen=True)
class IterableSource:
    """Any iterable of samples or batches (or a tf.data.Dataset): read once, never sharded."""

    make: Callable[[], Iterable[Chunk]]
    num_samples: None = None

    def chunks(self) -> Iterable[Chunk]:
        return self.make()
