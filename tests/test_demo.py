"""The demo tells its story: full int8 loses clearly, the diagnosis names the widened layer,
keeping it in float brings the drop back within the budget. Every number is checked against
a plain one-sample-at-a-time LiteRT loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from quantlens.data import digits as _digits
from quantlens.demo import WIDE_LAYER, run_demo, train_digits_cnn, widen_channels
from tests.model_explorer_format import colour, read_model_node_data


def _litert_predictions(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Class predictions from a bare LiteRT interpreter, one sample per invoke."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    preds = []
    for k in range(len(x)):
        sample = x[k : k + 1].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            sample = np.clip(np.rint(sample / scale) + zero, -128, 127).astype(inp["dtype"])
        it.set_tensor(inp["index"], sample)
        it.invoke()
        preds.append(int(it.get_tensor(out["index"]).argmax()))
    return np.array(preds)


def test_widening_keeps_the_float_function(tf) -> None:
    model = train_digits_cnn(epochs=2)
    x, _ = _digits("test")
    before = model.predict(x, verbose=0)
    w = widen_channels(model, x, ratio=100.0)
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() < 1e-4
    assert w.max_output_change == pytest.approx(float(np.abs(after - before).max()), abs=1e-7)
    # the widened channels now reach 100× the widest of the others
    reach = tf.keras.Model(model.inputs, model.get_layer(WIDE_LAYER).output).predict(x, verbose=0)
    peak = reach.reshape(-1, reach.shape[-1]).max(axis=0)
    rest = np.delete(peak, list(w.channels)).max()
    assert peak[list(w.channels)] == pytest.approx(100.0 * rest, rel=1e-3)


def test_demo_shows_the_drop_names_the_layer_and_fixes_it(tf, tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    run_demo(out)
    printed = capsys.readouterr().out
    x, y = _digits("test")
    compare = json.loads((out / "compare.json").read_text())
    by_mode = {(m.get("quantization") or {}).get("mode"): m for m in compare["models"]}
    float_preds = _litert_predictions(by_mode["float32"]["path"], x)
    int8_preds = _litert_predictions(by_mode["int8"]["path"], x)
    float_acc, int8_acc = (float_preds == y).mean(), (int8_preds == y).mean()
    # the report's accuracies are the deployed models' own
    assert by_mode["float32"]["task_metrics"]["accuracy"] == pytest.approx(float_acc)
    assert by_mode["int8"]["task_metrics"]["accuracy"] == pytest.approx(int8_acc)
    # a clear drop, significant by an exact McNemar test on the discordant pairs
    assert float_acc - int8_acc >= 0.03
    only_float = int(((float_preds == y) & (int8_preds != y)).sum())
    only_int8 = int(((float_preds != y) & (int8_preds == y)).sum())
    p = binomtest(only_int8, only_float + only_int8, 0.5).pvalue
    assert p < 0.05 and by_mode["int8"]["name"] in compare["recommendation"]["significantly_worse"]
    assert compare["recommendation"]["model"] != by_mode["int8"]["name"]

    diagnosis = json.loads((out / "diagnosis.json").read_text())
    worst = max(diagnosis["ops"], key=lambda o: o.get("error_added_db") or -np.inf)
    assert f"/{WIDE_LAYER}" in worst["output"] and worst["op_type"] == "CONV_2D"
    s = diagnosis["suggestion"]
    assert s["met_budget"] and any(f"/{WIDE_LAYER}" in k["tensor"] for k in s["kept"])
    fixed_acc = (_litert_predictions(s["model"], x) == y).mean()
    assert float_acc - fixed_acc <= 0.01
    assert Path(s["model"]).stat().st_size < by_mode["float16"]["size_bytes"]

    # the story, in the order it happened, on the console and in every report
    assert printed.index("2. Compare") < printed.index("3. Where") < printed.index("4. Which")
    assert "The error starts at op" in printed and f"/{WIDE_LAYER}" in printed
    for name in ("compare.html", "compare.md", "diagnosis.html", "diagnosis.md"):
        assert (out / name).stat().st_size > 0
    assert "The error starts at op" in (out / "diagnosis.md").read_text()
    assert "Keep in float" in (out / "diagnosis.html").read_text()
    # Model Explorer paints the planted layer red (its colour for the op's error added)
    (added,) = read_model_node_data(out / "model-explorer" / "error_added_db.json").values()
    assert colour(added, worst["output"]) == "#d7301f"
    assert "model-explorer " in printed and "--node_data_paths=" in printed
