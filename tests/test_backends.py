"""The runtime registry is the one place a runtime is known: a runtime added from outside
the package (tests/fake_runtime.py and one register call) loads, quantizes, evaluates and
benchmarks with no other change."""

from __future__ import annotations

import numpy as np
import pytest

import quantlens
import quantlens.cli
from quantlens.backends import BACKENDS, Backend, backend_for, register
from quantlens.errors import ModelLoadError


@pytest.fixture
def linear_runtime(tmp_path):
    backend = register(Backend(
        name="linear", title="a .lin", extensions=(".lin",),
        model="tests.fake_runtime:LinearModel", runtime_imports=("tests.fake_runtime",),
        quantizer="tests.fake_runtime:quantize_source", modes="tests.fake_runtime:MODES",
        variant_suffix=".lin", keep_in_float="tests.fake_runtime:keep_in_float_builder",
        op_name="node", kernel_paths="tests.fake_runtime:KERNEL_PATHS",
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


def test_kernel_check_counts_dead_and_nonfinite_paths_and_gates_fail(
    linear_runtime, tmp_path, capsys
) -> None:
    _, path, w, x, y = linear_runtime
    np.savez(tmp_path / "data.npz", x=x, y=y)
    check = quantlens.check_kernels(path, tmp_path / "data.npz", samples=None)
    by = {m.name: m for m in check.kernels.models}
    assert list(by) == ["plain", "dead", "nan"] and by["plain"].role == "reference"
    # counted independently: a sample is dead where the path zeroes it and plain does not
    assert by["dead"].zero_outputs == int((x[:, 0] < 0).sum())
    assert by["nan"].nonfinite_outputs == int((x[:, 1] > 1).sum())
    assert by["plain"].zero_outputs == by["plain"].nonfinite_outputs == 0
    dead = np.where((x[:, 0] < 0)[:, None], 0.0, x @ w)
    ref = (x @ w).astype(np.float64)
    sqnr = 10 * np.log10((ref**2).sum() / ((dead - ref) ** 2).sum())
    assert by["dead"].fidelity["sqnr_db"] == pytest.approx(sqnr, rel=1e-5)
    assert by["dead"].performance is not None and by["dead"].performance.latency_ms["p50"] > 0

    out = tmp_path / "kernels.json"
    code = quantlens.cli.main(["kernels", str(path), "--data", str(tmp_path / "data.npz"),
                               "--json", str(out), "--fail-on", "zero_outputs>0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1 and "dead broke gate zero_outputs>0" in printed
    assert "all-zero outputs on" in printed and "NaN or inf on" in printed
    assert quantlens.cli.main(["check", str(out), "--fail-on", "plain:zero_outputs>0"]) == 0
