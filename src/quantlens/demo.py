"""``quantlens demo``: the story quantlens exists for, on a model trained in seconds.

A small CNN is trained on scikit-learn's digits with fixed seeds. Two of its first layer's
channels are then made far wider than the rest, and the next layer's weights on them scaled
down to match: the float model computes the same function, but one int8 scale now has to
cover both the wide channels and the narrow ones, as in real networks whose training or
BatchNorm folding left a few outlier channels. The demo compares every quantization mode
(full int8 loses clearly), diagnoses the int8 model (the error starts at that layer), and
searches for the layers to keep in float (the drop comes back within the budget).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from quantlens._quiet import captured_output
from quantlens.compare import DEFAULT_MAX_DROP, compare, default_calibration
from quantlens.data import digits
from quantlens.diagnose import diagnose
from quantlens.diagnose.suggest import suggest_from_source
from quantlens.metric_registry import human_size
from quantlens.models.keras import import_tensorflow
from quantlens.outputs import write_outputs
from quantlens.quantize import DEFAULT_CALIBRATION_SAMPLES
from quantlens.report.console import make_console, print_compare, print_diagnosis, print_suggestion
from quantlens.report.formats import delta_text, origin_sentence
from quantlens.report.text import term
from quantlens.report.views import kept_text
from quantlens.results import DiagnosisResult, EvaluationResult

SEED = 0
EPOCHS = 12
#: The layer given outlier channels, and the layer that reads it.
WIDE_LAYER, READER_LAYER = "conv1", "conv2"
#: How many of its channels are widened, and to how many times the widest of the others.
WIDE_CHANNELS, WIDE_RATIO = 2, 250.0
DIAGNOSIS_SAMPLES = 200


def train_digits_cnn(
    seed: int = SEED, epochs: int = EPOCHS, progress: Callable[[int], None] | None = None
) -> Any:
    """A small CNN trained on the digits train split with fixed seeds (seconds on 2 cores);
    ``progress`` is called with the number of epochs done."""
    tf = import_tensorflow("the demo")
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x, y = digits("train")
    image = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=WIDE_LAYER)(image)
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                            name=READER_LAYER)(h)  # fmt: skip
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(64, activation="relu", name="dense")(h)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(image, probs, name="digits_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(epochs):
        with captured_output():  # TensorFlow's C++ chatter
            model.fit(x, y, epochs=epoch + 1, initial_epoch=epoch, batch_size=32, verbose=0,
                      shuffle=True)  # fmt: skip
        if progress is not None:
            progress(epoch + 1)
    return model


@dataclasses.dataclass(frozen=True)
class Widened:
    """What :func:`widen_channels` did."""

    channels: tuple[int, ...]
    factors: tuple[float, ...]
    ratio: float  # the widened channels' range over the widest of the others
    max_output_change: float  # largest change of the float model's outputs on the data


def widen_channels(
    model: Any, x: np.ndarray, layer: str = WIDE_LAYER, reader: str = READER_LAYER,
    channels: int = WIDE_CHANNELS, ratio: float = WIDE_RATIO,
) -> Widened:  # fmt: skip
    """Give ``layer`` ``channels`` outlier channels ``ratio`` times wider (on ``x``) than the
    widest of the others, dividing ``reader``'s weights on them by the same factor.

    ``layer`` ends in a ReLU, which commutes with a positive scale, so the float function is
    unchanged (up to float rounding); what changes is the range one per-tensor int8 scale of
    ``layer``'s output must cover.
    """
    keras = import_tensorflow("the demo").keras
    wide, read = model.get_layer(layer), model.get_layer(reader)
    before = model.predict(x, verbose=0)
    reach = keras.Model(model.inputs, wide.output).predict(x, verbose=0)
    peak = reach.reshape(-1, reach.shape[-1]).max(axis=0)
    chosen = np.argsort(peak)[-channels:]
    rest = np.delete(peak, chosen).max()
    scale = np.ones_like(peak, dtype=np.float32)
    scale[chosen] = ratio * rest / peak[chosen]
    kernel, bias = wide.get_weights()
    wide.set_weights([kernel * scale, bias * scale])
    r_kernel, *r_rest = read.get_weights()
    read.set_weights([r_kernel / scale[:, None], *r_rest])
    change = float(np.abs(model.predict(x, verbose=0) - before).max())
    return Widened(tuple(int(c) for c in sorted(chosen)),
                   tuple(float(scale[c]) for c in sorted(chosen)), ratio, change)  # fmt: skip


def run_demo(out: str | Path) -> None:
    """Train the CNN and widen two channels, then compare every TFLite mode on the digits
    test split, diagnose the int8 model and search for the layers to keep in float; each
    report is written as HTML, Markdown and JSON into ``out``."""
    console = make_console()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with console.status("training a small CNN on digits (fixed seeds)…") as status:
        model = train_digits_cnn(progress=lambda k: status.update(
            f"training a small CNN on digits (fixed seeds): epoch {k}/{EPOCHS}"))  # fmt: skip
        status.update(f"giving {WIDE_LAYER} {WIDE_CHANNELS} outlier channels…")
        x_test, _ = digits("test")
        keras_path = out_dir / "digits_cnn.keras"
        with captured_output():  # TensorFlow's C++ chatter
            widened = widen_channels(model, x_test)
            model.save(keras_path)
    console.print(
        f"[bold]1. The model.[/] A small CNN trained on digits; {WIDE_CHANNELS} of "
        f"{WIDE_LAYER}'s channels ({', '.join(map(str, widened.channels))}) were then made "
        f"{widened.ratio:g}× wider than the rest, with {READER_LAYER}'s weights on them scaled "
        f"down to match: the float model computes the same function (outputs change by at most "
        f"{widened.max_output_change:.1g}), but one int8 scale must now cover both.\n"
    )

    console.print("[bold]2. Compare every quantization mode[/] on the 450 test digits.")
    with console.status("quantizing, evaluating and benchmarking…") as status:
        result = compare(
            keras_path, "digits", out_dir=out_dir / "variants",
            status=lambda text: status.update(text),
        )  # fmt: skip
    print_compare(result, console)
    _write(result, console, out_dir / "compare")

    variants = {m.quantization.mode: m.path for m in result.models[1:] if m.quantization}
    console.print("\n[bold]3. Where does int8 lose it?[/] Both models run with every tensor kept.")
    with console.status("diagnosing the int8 model layer by layer…"):
        diagnosis = diagnose(variants["float32"], variants["int8"], "digits",
                             samples=DIAGNOSIS_SAMPLES)  # fmt: skip
    print_diagnosis(diagnosis, 5, console)

    console.print("\n[bold]4. Which layers to keep in float?[/] Each step is rebuilt and measured.")
    with console.status("searching for the layers to keep in float…") as status:
        diagnosis = suggest_from_source(
            diagnosis, keras_path, "digits", mode="int8",
            calibration=default_calibration("digits"),
            calibration_samples=DEFAULT_CALIBRATION_SAMPLES, max_drop=DEFAULT_MAX_DROP,
            out_dir=out_dir / "keep-in-float", status=lambda text: status.update(text),
        )  # fmt: skip
    assert diagnosis.suggestion is not None
    print_suggestion(diagnosis.suggestion, console)
    _write(diagnosis, console, out_dir / "diagnosis", node_data=out_dir / "model-explorer")

    console.print()
    for line in story(result, diagnosis):
        console.print(line)
    console.print(f"\nopen {out_dir}/compare.html and {out_dir}/diagnosis.html; reproduce with "
                  f"quantlens compare {keras_path} --data digits, then quantlens diagnose "
                  f"{keras_path} --data digits --suggest")  # fmt: skip


def _write(result: Any, console: Any, stem: Path, node_data: Path | None = None) -> None:
    """The report as JSON, HTML and Markdown side by side (a diagnosis also as Model
    Explorer overlays in ``node_data``)."""
    write_outputs(
        result, console, json_path=stem.with_suffix(".json"),
        html_path=stem.with_suffix(".html"), markdown_path=stem.with_suffix(".md"),
        node_data_dir=node_data,
    )  # fmt: skip


def story(result: EvaluationResult, diagnosis: DiagnosisResult) -> list[str]:
    """The demo's conclusion in three sentences: what int8 lost, where, and the fix."""
    int8 = next(m for m in result.models if m.quantization and m.quantization.mode == "int8")
    delta, p = delta_text(int8.paired, result.dataset.task, unit=True)
    lines = [f"[bold]In short:[/] full int8 changes accuracy by {delta} (p = {p})."]
    origin = origin_sentence(diagnosis, term)
    if origin is not None:
        lines.append(origin)
    s = diagnosis.suggestion
    if s and s.steps:
        best = next((st for st in s.steps if st.step == s.model_step), s.steps[-1])
        verdict = "within" if s.met_budget else "still outside"
        lines.append(
            f"Keeping {kept_text(s, term)} brings the drop to {best.drop * 100:.2f} pt, {verdict} "
            f"the budget of {s.max_drop * 100:g} pt, at {human_size(best.size_bytes)} "
            f"(full int8: {human_size(s.steps[0].size_bytes)})."
        )
    return lines
