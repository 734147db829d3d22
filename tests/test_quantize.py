"""quantize: each mode's output has the dtypes it promises; the manifest says exactly how."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quantlens import load_model
from quantlens.cli import main
from quantlens.errors import ConfigError
from quantlens.quantize import DEFAULT_CALIBRATION_SAMPLES, quantize


@pytest.fixture(scope="module")
def tf_variants(tmp_path_factory, digits_models):
    out = tmp_path_factory.mktemp("tfq")
    return quantize(digits_models["keras"], "all", out, calibration="digits:train",
                    calibration_samples=50)  # fmt: skip


@pytest.fixture(scope="module")
def aeq_variants(tmp_path_factory, digits_models):
    out = tmp_path_factory.mktemp("aeq")
    return quantize(digits_models["float"], "all", out, calibration="digits:train",
                    calibration_samples=50)  # fmt: skip


def info(result, mode):
    return load_model(result.variant(mode).path).info()


def test_tf_modes_have_the_promised_dtypes(tf_variants) -> None:
    assert [v.mode for v in tf_variants.variants] == [
        "float32", "float16", "dynamic", "int8", "int8-io", "int16x8",
    ]  # fmt: skip
    f32 = info(tf_variants, "float32")
    assert "int8" not in f32.weight_dtypes and f32.inputs[0].dtype == "float32"
    f16 = info(tf_variants, "float16")
    assert f16.weight_dtypes.get("float16", 0) > 1000 and "int8" not in f16.weight_dtypes
    dyn = info(tf_variants, "dynamic")
    assert dyn.weight_dtypes.get("int8", 0) > 1000
    assert "int8" not in dyn.activation_dtypes and dyn.inputs[0].dtype == "float32"
    i8 = info(tf_variants, "int8")
    assert i8.activation_dtypes.get("int8", 0) >= 3 and i8.weight_dtypes.get("int8", 0) > 1000
    assert i8.inputs[0].dtype == "float32" and i8.outputs[0].dtype == "float32"
    io = info(tf_variants, "int8-io")
    assert io.inputs[0].dtype == "int8" and io.outputs[0].dtype == "int8"
    assert io.inputs[0].quantization is not None
    i16 = info(tf_variants, "int16x8")
    assert i16.activation_dtypes.get("int16", 0) >= 3 and i16.weight_dtypes.get("int8", 0) > 1000
    assert i16.inputs[0].dtype == "float32"


def test_aeq_modes_have_the_promised_dtypes(aeq_variants) -> None:
    modes = [v.mode for v in aeq_variants.variants]
    expected = {"dynamic", "weight-only-int8", "weight-only-int4", "int8", "int16x8",
                "dynamic-int4", "dynamic-int4-block32", "dynamic-int4-block64"}  # fmt: skip
    assert expected <= set(modes)
    for mode in ("dynamic", "weight-only-int8"):
        i = info(aeq_variants, mode)
        assert i.weight_dtypes.get("int8", 0) > 1000 and i.inputs[0].dtype == "float32"
        assert "int8" not in i.activation_dtypes
    for mode in ("weight-only-int4", "dynamic-int4", "dynamic-int4-block32"):
        assert info(aeq_variants, mode).weight_dtypes.get("int4", 0) > 1000, mode
    assert info(aeq_variants, "int8").activation_dtypes.get("int8", 0) >= 3
    assert info(aeq_variants, "int16x8").activation_dtypes.get("int16", 0) >= 3
    assert (
        info(aeq_variants, "weight-only-int4").size_bytes < info(aeq_variants, "dynamic").size_bytes
    )


def test_every_variant_runs_and_tracks_the_float_model(aeq_variants, tf_variants, digits_models,
                                                       digits_split) -> None:  # fmt: skip
    x = digits_split[2][:40]
    ref = load_model(digits_models["float"]).predict([x])[0]
    for v in (*aeq_variants.variants, *tf_variants.variants):
        out = load_model(v.path).predict([x])[0]
        assert out.shape == ref.shape
        assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.9, v.mode


def test_manifest_records_settings_calibration_and_sizes(tf_variants, aeq_variants) -> None:
    for result in (tf_variants, aeq_variants):
        out_dir = Path(result.variants[0].path).parent
        manifest = json.loads((out_dir / "manifest.json").read_text())
        assert manifest["schema"] == "quantlens.quantize/1"
        assert manifest["calibration"] == {"source": "digits:train", "samples": 50}
        for v in manifest["variants"]:
            assert Path(v["path"]).stat().st_size == v["size_bytes"]
            assert v["settings"]["tool"]
    tf_int8 = tf_variants.variant("int8-io").settings
    assert tf_int8["inference_input_type"] == "int8"
    assert tf_int8["representative_dataset_samples"] == 50
    assert tf_int8["supported_ops"] == ["TFLITE_BUILTINS_INT8"]
    assert tf_variants.variant("int16x8").settings["supported_ops"] == [
        "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
    ]
    aeq_int8 = aeq_variants.variant("int8").settings
    assert aeq_int8["recipe_function"] == "litert_quantizer.recipe.static_wi8_ai8"
    assert aeq_int8["calibration_samples"] == 50
    json.dumps(aeq_int8["recipe"])  # the recipe is recorded as plain JSON


def test_static_modes_need_calibration(tmp_path, digits_models) -> None:
    with pytest.raises(ConfigError, match="need calibration data"):
        quantize(digits_models["keras"], "dynamic,int8", tmp_path)
    with pytest.raises(ConfigError, match=r"does not apply to a \.tflite source"):
        quantize(digits_models["float"], "float16", tmp_path, calibration="digits")
    assert not list(tmp_path.iterdir())
    assert DEFAULT_CALIBRATION_SAMPLES == 200


def test_quantize_cli(capsys, tmp_path, digits_models) -> None:
    code = main(["quantize", str(digits_models["keras"]), "--modes", "float16,dynamic",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cnn_dynamic.tflite", "cnn_float16.tflite", "manifest.json",
    ]  # fmt: skip
    code = main(["quantize", str(digits_models["keras"]), "--modes", "int8", "--out",
                 str(tmp_path / "x")])  # fmt: skip
    assert code == 2 and "--calibration" in capsys.readouterr().err
