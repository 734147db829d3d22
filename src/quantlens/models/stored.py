"""Golden outputs: a reference model's outputs stored in a file, so that candidates can be
evaluated against them later without the reference (``evaluate --save-reference-outputs``,
then ``evaluate --reference-outputs``).

The file is an uncompressed ``.npz`` (``numpy.load`` reads it):

- ``quantlens.json`` first: the schema, the reference (its :class:`ModelInfo` and SHA-256),
  the inputs as bound, the outputs, the data's source, sample count and digest;
- ``digests.npy``: per sample, the BLAKE2b-128 digest of its inputs as bound (dtype, shape
  and bytes of each input, in the model's input order);
- ``output_K.npy``: output K for every sample, as the reference gave it.

Members are stored, not deflated, so they are memory-mapped: neither writing nor reading
holds the outputs in memory, and a worker process maps the same pages.

:class:`Recorder` wraps the reference during an evaluation and streams what it gives to
temporary files; :class:`StoredOutputs` is a :class:`~quantlens.models.base.Model` that
serves the stored rows back for the samples it is given, found by their digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from quantlens.data import Dataset
from quantlens.data.sources import mapped_member
from quantlens.errors import ConfigError, DataError, ModelLoadError
from quantlens.files import atomic_write
from quantlens.models.base import Model
from quantlens.results import BatchingDecision, ModelInfo, StoredReference, TensorSpec

SCHEMA = "quantlens.reference-outputs/1"
META = "quantlens.json"
DIGESTS = "digests.npy"
DIGEST_BYTES = 16
FORMAT = "stored"
#: A metadata member larger than this was not written by quantlens.
MAX_META_BYTES = 4 * 2**20
#: More outputs than this was not written by quantlens (a crafted file).
MAX_OUTPUTS = 4096
#: A path or a name longer than this was not written by quantlens.
MAX_TEXT = 4096
NUMERIC_KINDS = "biufc"


def sample_digests(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per sample of a bound batch (every input sample-first), the BLAKE2b-128 digest of
    its inputs: each one's dtype, shape and bytes, in order. ``(n, 16)`` uint8."""
    n = int(inputs[0].shape[0])
    heads = [f"{x.dtype.str}{x.shape[1:]}".encode() for x in inputs]
    out = np.empty((n, DIGEST_BYTES), dtype=np.uint8)
    for i in range(n):
        h = hashlib.blake2b(digest_size=DIGEST_BYTES)
        for head, x in zip(heads, inputs, strict=True):
            h.update(head)
            h.update(np.ascontiguousarray(x[i]).data)
        out[i] = np.frombuffer(h.digest(), dtype=np.uint8)
    return out


def data_digest(digests: np.ndarray) -> str:
    """The digest of a data set: SHA-256 over its per-sample digests, in order."""
    h = hashlib.sha256()
    for start in range(0, len(digests), 65536):
        h.update(np.ascontiguousarray(digests[start : start + 65536]).data)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a model file, or of a directory's files (relative names and contents, in
    sorted order); None when the path is not on disk (a model built in memory)."""
    p = Path(path)
    if p.is_file():
        files = [(p.name, p)]
    elif p.is_dir():
        files = sorted((str(f.relative_to(p)), f) for f in p.rglob("*") if f.is_file())
    else:
        return None
    h = hashlib.sha256()
    for name, f in files:
        if p.is_dir():
            h.update(name.encode() + b"\0")
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                h.update(block)
    return h.hexdigest()


def _version() -> str:
    from quantlens.versions import version_of

    return f"quantlens {version_of('quantlens') or '(unknown version)'}"


class Recorder:
    """A model that runs as the one it wraps and keeps what it gives: each sample's input
    digest and outputs, streamed to temporary files (unnamed: they vanish with the process
    whatever happens) until :meth:`save` writes them to ``target``."""

    def __init__(self, model: Model, target: str | os.PathLike[str]) -> None:
        self._model = model
        self.name, self.path, self.format = model.name, model.path, model.format
        self.inputs, self.outputs = model.inputs, model.outputs
        self.target = Path(target)
        # Beside the target when its directory exists: the same disk as the file to come.
        self._dir = self.target.parent if self.target.parent.is_dir() else None
        self._digests: IO[bytes] = tempfile.TemporaryFile(dir=self._dir)  # noqa: SIM115 (closed by save or close)
        self._files: list[IO[bytes]] = []
        self._rows: list[tuple[tuple[int, ...], np.dtype]] = []
        self.samples = 0

    def __getattr__(self, name: str) -> Any:  # input_quantization, own_layout, ...
        return getattr(self._model, name)

    #: Not the wrapped model's: their outputs would bypass the recording. The probe runs on
    #: the first samples and the batch runs here (probe_all's fallback); every batch runs
    #: through predict.
    probe_on_batch = None
    predict_in_range = None

    @property
    def batching(self) -> str:
        return self._model.batching

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the wrapped model on one batch and keep its outputs."""
        outs = self._model.predict(inputs)
        if not self._files:
            self._files = [tempfile.TemporaryFile(dir=self._dir) for _ in outs]  # noqa: SIM115
            self._rows = [(tuple(o.shape[1:]), o.dtype) for o in outs]
        for spec, (shape, dtype), o, f in zip(self.outputs, self._rows, outs, self._files,
                                               strict=True):  # fmt: skip
            if tuple(o.shape[1:]) != shape or o.dtype != dtype:
                raise ConfigError(
                    f"output '{spec.name}' of {self.name} is {o.dtype}{list(o.shape[1:])} per "
                    f"sample in one batch and {dtype}{list(shape)} in another; outputs whose "
                    "shape varies cannot be stored"
                )  # fmt: skip
            f.write(np.ascontiguousarray(o).data)
        self._digests.write(sample_digests(inputs).data)
        self.samples += int(outs[0].shape[0])
        return outs

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        return self._model.invoker(inputs)

    def info(self) -> ModelInfo:
        return self._model.info()

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        return self._model.probe_batching(sample)

    def set_batching(self, mode: str) -> None:
        self._model.set_batching(mode)

    def save(self, *, data_source: str) -> StoredReference:
        """Write what was recorded to the target (a temporary file, then a rename).

        Raises:
            ConfigError: nothing was recorded, or the file cannot be written.
        """
        if not self.samples:
            raise ConfigError("no reference outputs to store: the reference ran on no sample")
        target = self.target
        digests = self._read_digests()
        info = self.info()
        stored = StoredReference(
            path=str(target), role="saved", model_path=str(self.path),
            model_sha256=file_sha256(self.path), data_source=data_source,
            data_digest=data_digest(digests), samples=self.samples, saved_by=_version(),
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )  # fmt: skip
        meta = {
            "schema": SCHEMA,
            "stored": stored.to_dict(),
            "reference": info.to_dict(),
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [
                {"name": spec.name, "shape": list(shape), "dtype": dtype.str}
                for spec, (shape, dtype) in zip(self.outputs, self._rows, strict=True)
            ],
        }
        try:
            with (
                atomic_write(target, binary=True) as raw,
                zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf,
            ):
                zf.writestr(META, json.dumps(meta, indent=1, allow_nan=False))
                _write_npy(zf, DIGESTS, self._digests, (self.samples, DIGEST_BYTES),
                           np.dtype(np.uint8))  # fmt: skip
                for k, (f, (shape, dtype)) in enumerate(zip(self._files, self._rows,
                                                            strict=True)):  # fmt: skip
                    _write_npy(zf, f"output_{k}.npy", f, (self.samples, *shape), dtype)
        finally:
            self.close()
        return stored

    def _read_digests(self) -> np.ndarray:
        self._digests.seek(0)
        data = self._digests.read()
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, DIGEST_BYTES)

    def close(self) -> None:
        """Drop the temporary files."""
        for f in (self._digests, *self._files):
            f.close()


def _write_npy(zf: zipfile.ZipFile, name: str, source: IO[bytes], shape: tuple[int, ...],
               dtype: np.dtype) -> None:  # fmt: skip
    """A .npy member from a header and the raw C-order bytes in ``source``, streamed."""
    source.seek(0)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}  # fmt: skip
    with zf.open(name, "w", force_zip64=True) as out:
        np.lib.format.write_array_header_2_0(out, header)
        shutil.copyfileobj(source, out, 2**20)


class StoredOutputs:
    """The reference, served from a file of its stored outputs: for each sample it is
    given, the outputs stored for the sample with the same digest.

    Open one with :func:`load_reference_outputs`; check that data is the data the outputs
    were stored from with :meth:`check_data` before a run.
    """

    format = FORMAT

    def __init__(self, path: Path, meta: Mapping[str, Any], digests: np.ndarray,
                 outputs: list[np.ndarray]) -> None:  # fmt: skip
        self.path = str(path)
        self._meta = meta
        self.stored = StoredReference.from_dict({**meta["stored"], "path": str(path),
                                                 "role": "loaded"})  # fmt: skip
        ref = meta["reference"]
        self.name = str(ref["name"])
        self.inputs = tuple(_spec(t) for t in meta["inputs"])
        self.outputs = tuple(_spec(t) for t in ref["outputs"])
        self._digests = digests
        self._outputs = outputs
        self._index: dict[bytes, int] | None = None

    @property
    def samples(self) -> int:
        return int(self._digests.shape[0])

    @property
    def batching(self) -> str:
        return "resize"

    def _rows(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._index is None:
            index: dict[bytes, int] = {}
            for i in range(self.samples):
                index.setdefault(self._digests[i].tobytes(), i)
            self._index = index
        rows = []
        for k, d in enumerate(sample_digests(inputs)):
            row = self._index.get(d.tobytes())
            if row is None:
                raise DataError(f"a sample of the data (#{k} of its batch) is not one the "
                                f"reference outputs in {self.path} were stored for; evaluate "
                                "on the data they were saved with")  # fmt: skip
            rows.append(row)
        return np.asarray(rows, dtype=np.int64)

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The stored outputs of the samples in ``inputs`` (found by their digests).

        Raises:
            DataError: a sample is not one the outputs were stored for.
        """
        rows = self._rows(inputs)
        return [np.asarray(o[rows]) for o in self._outputs]

    def invoker(self, inputs: Sequence[np.ndarray]) -> Callable[[], object]:
        raise ConfigError(f"{self.name} is stored outputs ({self.path}); it cannot be timed")

    def info(self) -> ModelInfo:
        """The reference as it was when its outputs were stored (its size, its dtypes)."""
        ref = self._meta["reference"]
        return ModelInfo(
            name=self.name, path=self.path, format=FORMAT, size_bytes=int(ref["size_bytes"]),
            inputs=self.inputs, outputs=self.outputs,
            op_counts=_counts(ref.get("op_counts")),
            weight_dtypes=_counts(ref.get("weight_dtypes")),
            activation_dtypes=_counts(ref.get("activation_dtypes")),
        )  # fmt: skip

    def probe_batching(self, sample: Sequence[np.ndarray]) -> BatchingDecision:
        return BatchingDecision("resize", "stored outputs, served for any batch")

    def set_batching(self, mode: str) -> None:
        """Stored outputs serve any batch."""

    def check_data(
        self, dataset: Dataset, *, batch_size: int, limit: int | None,
        constants: Mapping[str, Any], allow_nonfinite: bool,
    ) -> None:  # fmt: skip
        """Refuse data that is not, sample for sample, the data the outputs were stored
        from (its inputs as bound, the same count); this reads the data once, before any
        model runs.

        Raises:
            DataError: the sample count differs, or the first sample that differs.
            ConfigError: the data can be read only once (an iterable).
        """
        total = dataset.num_samples
        if total is None:
            raise ConfigError("stored reference outputs need data that can be read twice (a "
                              "file or arrays): the data is checked against them before the "
                              "run; an iterable or tf.data.Dataset is read once")  # fmt: skip
        self._check_count(min(total, limit) if limit is not None else total, limit)
        seen = 0
        for batch in dataset.bind(self.inputs, batch_size=batch_size, limit=limit,
                                  allow_nonfinite=allow_nonfinite,
                                  constants=constants):  # fmt: skip
            got = sample_digests(batch.inputs)
            if seen + len(got) > self.samples:
                self._check_count(seen + len(got), limit, at_least=True)
            differ = np.flatnonzero((got != self._digests[seen : seen + len(got)]).any(axis=1))
            if differ.size:
                raise DataError(
                    f"sample {seen + int(differ[0])} of {dataset.source} is not the sample "
                    f"the reference outputs in {self.path} were stored for (stored from "
                    f"{self.stored.data_source}, digest {self.stored.data_digest[:12]}); "
                    "evaluate on the same data, bound the same way (--layout, --const)"
                )  # fmt: skip
            seen += len(got)
        self._check_count(seen, limit)

    def _check_count(self, count: int, limit: int | None, *, at_least: bool = False) -> None:
        if count != self.samples:
            given = f" (--limit {limit})" if limit is not None and count == limit else ""
            raise DataError(
                f"{self.path} holds the reference's outputs on {self.samples} samples; the "
                f"data gives {'at least ' if at_least else ''}{count}{given}: evaluate on the "
                "data they were saved with"
            )  # fmt: skip


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int)}


def _spec(d: Any) -> TensorSpec:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        raise ValueError("a tensor without a name")
    shape = d.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > 32
        or not all(s is None or (isinstance(s, int) and 0 <= s < 2**31) for s in shape)
    ):
        raise ValueError(f"tensor {d['name']!r} has no valid shape")
    dtype = np.dtype(str(d.get("dtype")))
    if dtype.hasobject:
        raise ValueError(f"tensor {d['name']!r} is of Python objects")
    return TensorSpec(d["name"], tuple(shape), dtype.name)


def load_reference_outputs(path: str | os.PathLike[str]) -> StoredOutputs:
    """Open a file written by ``evaluate --save-reference-outputs`` (or
    :func:`quantlens.evaluate` with ``save_reference_outputs=``): a model that serves the
    stored outputs. Its arrays are memory-mapped, never read whole.

    Raises:
        ModelLoadError: the file is missing, or is not a well-formed reference-outputs file
            (a crafted one included: members are checked against the metadata before use).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"reference outputs not found: {p}" if not p.exists()
                             else f"{p} is not a regular file; give a file of reference "
                             "outputs")  # fmt: skip
    try:
        return _open(p)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, RecursionError,
            EOFError) as exc:  # fmt: skip
        why = f"no {exc}" if isinstance(exc, KeyError) else str(exc)[:200]
        raise ModelLoadError(f"{p} is not a reference-outputs file quantlens can read "
                             f"({why}); write one with evaluate "
                             "--save-reference-outputs") from None  # fmt: skip


def _open(p: Path) -> StoredOutputs:
    with zipfile.ZipFile(p) as zf:
        members = {i.filename: i for i in zf.infolist()}
        info = members[META]
        if info.file_size > MAX_META_BYTES:
            raise ValueError(f"its {META} is larger than {MAX_META_BYTES // 2**20} MiB")
        meta = json.loads(zf.read(info))
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ValueError(f"schema {meta.get('schema') if isinstance(meta, dict) else None!r}, "
                         f"expected {SCHEMA!r}")  # fmt: skip
    outputs_meta = meta["outputs"]
    if not isinstance(outputs_meta, list) or not 0 < len(outputs_meta) <= MAX_OUTPUTS:
        raise ValueError("no outputs listed")
    if len(meta["reference"]["outputs"]) != len(outputs_meta) or not meta["inputs"]:
        raise ValueError("the outputs listed do not match the reference's")
    samples = int(meta["stored"]["samples"])
    for key, value in meta["stored"].items():
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise ValueError(f"its {key} is longer than {MAX_TEXT} characters")

    def member(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        i = members[name]
        if i.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{name} is compressed; quantlens stores members uncompressed")
        array = mapped_member(p, i)
        if array.shape != shape or array.dtype != dtype:
            raise ValueError(f"{name} is {array.dtype}{list(array.shape)}, the metadata says "
                             f"{dtype}{list(shape)}")  # fmt: skip
        return array

    digests = member(DIGESTS, (samples, DIGEST_BYTES), np.dtype(np.uint8))
    outputs = []
    for k, o in enumerate(outputs_meta):
        shape = tuple(int(s) for s in o["shape"])
        dtype = np.dtype(str(o["dtype"]))
        if dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"output {k} is of {dtype}, not numbers")
        if o["name"] != meta["reference"]["outputs"][k]["name"]:
            raise ValueError(f"output {k} is not the reference's output {k}")
        outputs.append(member(f"output_{k}.npy", (samples, *shape), dtype))
    stored = StoredOutputs(p, meta, digests, outputs)
    if data_digest(digests) != stored.stored.data_digest:
        raise ValueError("its per-sample digests do not give the data digest it records")
    return stored
