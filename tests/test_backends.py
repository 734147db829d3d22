"""The runtime registry is the one place a runtime is known: a runtime added from outside
the package (tests/fake_runtime.py and one register call) loads, quantizes, evaluates and
benchmarks with no other change."""

from __future__ import annotations

import numpy as np
import pytest

import quantlens
from quantlens.backends import BACKENDS, Backend, backend_for, register
from quantlens.errors import ModelLoadError


@pytest.fixture
def linear_runtime(tmp_path):
    backend = register(Backend(
        name="linear", title="a .lin", extensions=(".lin",),
        model="tests.fake_runtime:LinearModel", runtime_imports=("tests.fake_runtime",),
        quantizer="tests.fake_runtime:quantize_source", modes="tests.fake_runtime:MODES",
        variant_suffix=".lin", keep_in_float="tests.fake_runtime:keep_in_float_builder",
        op_name="node",
    ))  # fmt: skip
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3)).astype(np.float32)
    path = tmp_path / "clf.lin"
    with path.open("wb") as f:
        np.savez(f, w=w)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x @ w).argmax(axis=1)
    yield backend, path, w, x, y
    BACKENDS.pop("linear")


def test_a_new_runtime_needs_one_module_and_one_entry(linear_runtime, tmp_path) -> None:
    backend, path, w, x, y = linear_runtime
    assert backend_for(path) is backend and backend.is_own_baseline
    model = quantlens.load_model(path)
    assert model.format == "linear" and model.predict([x[:2]])[0] == pytest.approx(x[:2] @ w)

    made = quantlens.quantize(path, "all", tmp_path / "variants")
    assert [v.mode for v in made.variants] == ["int8-weights"]
    variant = made.variants[0].path
    assert variant.endswith("clf_int8-weights.lin")

    result = quantlens.evaluate(path, [variant], (x, y))
    step = float(np.abs(w).max()) / 127
    expected = (x @ (np.round(w / step) * step)).argmax(axis=1)
    assert result.models[0].task_metrics["accuracy"] == 1.0  # labels are the float model's
    assert result.models[1].task_metrics["accuracy"] == pytest.approx((expected == y).mean())

    compared = quantlens.compare(path, (x, y), out_dir=tmp_path / "cmp", bench=False)
    assert [m.name for m in compared.models] == ["clf", "clf_int8-weights"]


def test_unknown_files_name_every_runtime(linear_runtime, tmp_path) -> None:
    odd = tmp_path / "model.xyz"
    odd.write_bytes(b"0")
    with pytest.raises(ModelLoadError, match=r"\.lin"):
        quantlens.load_model(odd)
