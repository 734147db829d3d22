"""``quantlens demo``: train a small CNN on digits, quantize it every way, compare, recommend,
and show where the int8 model's error comes from."""

from __future__ import annotations

from pathlib import Path

from quantlens._quiet import captured_output
from quantlens.compare import compare
from quantlens.data import _digits
from quantlens.diagnose import diagnose
from quantlens.models.keras import import_tensorflow
from quantlens.report.console import make_console, print_compare, print_diagnosis
from quantlens.report.outputs import write_outputs

SEED = 0
EPOCHS = 12


def train_digits_cnn(seed: int = SEED, epochs: int = EPOCHS) -> object:
    """A small CNN trained on the digits train split with fixed seeds (seconds on 2 cores)."""
    tf = import_tensorflow("the demo")
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x, y = _digits("train")
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def run_demo(out: str | Path) -> None:
    """Train and save the CNN, then compare every TFLite mode on the digits test split."""
    console = make_console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with console.status("training a small CNN on digits (fixed seeds)…"), captured_output():
        model = train_digits_cnn()
    keras_path = out_dir / "digits_cnn.keras"
    model.save(keras_path)  # type: ignore[attr-defined]
    with console.status("quantizing, evaluating and benchmarking…") as status:
        result = compare(
            keras_path, "digits", out_dir=out_dir / "variants",
            status=lambda text: status.update(text),
        )  # fmt: skip
    print_compare(result, console)
    write_outputs(
        result, console, json_path=out_dir / "compare.json", html_path=out_dir / "compare.html",
        markdown_path=out_dir / "compare.md",
    )  # fmt: skip
    variants = {m.quantization["mode"]: m.path for m in result.models[1:] if m.quantization}
    with console.status("diagnosing the int8 model layer by layer…"):
        diagnosis = diagnose(variants["float32"], variants["int8"], "digits", samples=200)
    print_diagnosis(diagnosis, 5, console)
    write_outputs(diagnosis, console, html_path=out_dir / "diagnosis.html")
    console.print(f"quantized models in {out_dir}/variants/; open {out_dir}/compare.html")
    console.print(
        f"reproduce: quantlens compare {keras_path} --data digits --out {out_dir}/variants"
    )
