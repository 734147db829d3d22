"""``quantlens demo``: train a small CNN on digits, quantize it, and evaluate the variants."""

from __future__ import annotations

from pathlib import Path

from quantlens._quiet import captured_output
from quantlens.data import _digits
from quantlens.evaluation import evaluate
from quantlens.models.keras import import_tensorflow
from quantlens.quantize.tf_converter import convert_keras
from quantlens.report.console import make_console, print_evaluation
from quantlens.report.json_file import write_json

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
    """Train, save as .keras, convert to float32 and int8 .tflite, evaluate, write the JSON."""
    console = make_console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with console.status("training a small CNN on digits (fixed seeds)…"), captured_output():
        model = train_digits_cnn()
    keras_path = out_dir / "digits_cnn.keras"
    model.save(keras_path)  # type: ignore[attr-defined]
    x_train, _ = _digits("train")
    paths = []
    with console.status("converting to float32 and int8 .tflite…"):
        for mode in ("float32", "int8-io"):
            path = out_dir / f"digits_cnn_{mode.replace('-io', '')}.tflite"
            path.write_bytes(convert_keras(model, mode, calibration=[x_train]))
            paths.append(path)
    with console.status("evaluating and benchmarking…"):
        result = evaluate(keras_path, paths, "digits", bench=True)
    print_evaluation(result, console)
    report = write_json(result.to_dict(), out_dir / "evaluation.json")
    console.print(f"models and report written to {out_dir}/ ({report.name})")
    console.print(
        f"reproduce: quantlens evaluate {keras_path} {' '.join(map(str, paths))} --data digits"
    )
