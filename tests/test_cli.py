"""End-to-end: the CLI's JSON numbers equal an independent computation with ai_edge_litert,
NumPy and scikit-learn, done here with our own int8 scaling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from quantlens.cli import main
from tests.test_models import hand_run


def expected_fidelity(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    r = ref.reshape(len(ref), -1).astype(np.float64)
    c = cand.reshape(len(cand), -1).astype(np.float64)
    out = {
        "mse": float(np.mean((c - r) ** 2)),
        "mae": float(np.mean(np.abs(c - r))),
        "max_abs_error": float(np.max(np.abs(c - r))),
        "sqnr_db": float(10 * np.log10(np.sum(r**2) / np.sum((c - r) ** 2))),
        "cosine_similarity": float(np.diag(skm.pairwise.cosine_similarity(r, c)).mean()),
    }
    if r.shape[1] >= 2:
        out["top1_agreement"] = float(np.mean(r.argmax(1) == c.argmax(1)))
    return out


def assert_close(got: dict, expected: dict, rel: float = 1e-5) -> None:
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=rel, abs=1e-9), k


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory, digits_split):
    path = tmp_path_factory.mktemp("data") / "digits_test.npz"
    np.savez(path, x=digits_split[2][:200], y=digits_split[3][:200])
    return path


def test_evaluate_json_equals_independent_computation(
    capsys, tmp_path, digits_models, digits_npz, tf
) -> None:
    out = tmp_path / "report.json"
    code, stdout, _ = run_cli(
        capsys, "evaluate", str(digits_models["keras"]), str(digits_models["int8io"]),
        str(digits_models["float"]), "--data", str(digits_npz), "--batch-size", "16",
        "--json", str(out),
    )  # fmt: skip
    assert code == 0
    assert "cnn_int8io" in stdout and "SQNR" in stdout
    report = json.loads(out.read_text())
    assert report["schema"] == "quantlens.evaluation/1"
    assert report["dataset"] == {
        "source": str(digits_npz),
        "samples": 200,
        "task": "classification",
    }
    assert report["reference"] == "cnn"
    assert [m["role"] for m in report["models"]] == ["reference", "candidate", "candidate"]

    data = np.load(digits_npz)
    x, y = data["x"], data["y"]
    ref = tf.keras.models.load_model(digits_models["keras"])(x, training=False).numpy()
    models = {m["name"]: m for m in report["models"]}
    for name, path, out_name in (("cnn_int8io", digits_models["int8io"], "int8io"),
                                 ("cnn_float", digits_models["float"], "float")):  # fmt: skip
        (cand,) = hand_run(path, [x])
        m = models[name]
        assert m["size_bytes"] == path.stat().st_size
        assert m["format"] == "tflite"
        assert_close(m["fidelity"], expected_fidelity(ref, cand), rel=1e-4)
        r64, c64 = ref.astype(np.float64), cand.astype(np.float64)
        p, q = np.clip(softmax(r64, 1), 1e-7, 1), np.clip(softmax(c64, 1), 1e-7, 1)
        kl = float(np.mean(np.sum(p * np.log(p / q), axis=1)))
        assert m["fidelity"]["kl_divergence"] == pytest.approx(kl, rel=1e-3, abs=1e-9), out_name
        pred = cand.argmax(1)
        assert m["task_metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert m["task_metrics"]["macro_f1"] == pytest.approx(
            skm.f1_score(y, pred, average="macro")
        )
        top5 = skm.top_k_accuracy_score(y, cand, k=5, labels=np.arange(10))
        assert m["task_metrics"]["top5_accuracy"] == pytest.approx(top5)
    assert models["cnn"]["task_metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(y, ref.argmax(1))
    )
    assert "fidelity" not in models["cnn"]


def test_multi_io_model_matches_outputs_in_keras_order(
    capsys, tmp_path, multi_io_models, tf
) -> None:
    rng = np.random.default_rng(3)
    feats = rng.random((50, 4), dtype=np.float32)
    aux = rng.random((50, 3), dtype=np.float32)
    y = rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", aux=aux, feats=feats, y=y)
    out = tmp_path / "r.json"
    code, _, err = run_cli(
        capsys, "evaluate", str(multi_io_models["keras"]), str(multi_io_models["int8io"]),
        "--data", str(tmp_path / "d.npz"), "--batch-size", "7", "--json", str(out),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out.read_text())
    cand = report["models"][1]
    keras_model = tf.keras.models.load_model(multi_io_models["keras"])
    ref_cls, ref_reg = (o.numpy() for o in keras_model([feats, aux], training=False))
    # the .tflite's tensor order is [areg, zcls]; its signature says output_0 = zcls
    interp_outs = hand_run(multi_io_models["int8io"], [feats, aux])
    by_width = {o.shape[1]: o for o in interp_outs}
    assert [o["name"] for o in cand["outputs"]] == ["zcls", "areg"]
    assert_close(cand["outputs"][0]["fidelity"], expected_fidelity(ref_cls, by_width[3]), 1e-4)
    assert_close(cand["outputs"][1]["fidelity"], expected_fidelity(ref_reg, by_width[2]), 1e-4)
    assert cand["fidelity"] == cand["outputs"][0]["fidelity"]
    pred = by_width[3].argmax(1)
    assert cand["task_metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_regression_on_builtin_diabetes(capsys, tmp_path, tf, convert) -> None:
    from quantlens.data import diabetes as _diabetes

    keras = tf.keras
    x_train, y_train = _diabetes("train")
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])  # fmt: skip
    model.compile("adam", "mse")
    model.fit(x_train, y_train, epochs=5, verbose=0)
    model.save(tmp_path / "reg.keras")
    (tmp_path / "reg.tflite").write_bytes(convert(model, [x_train], int8=True))
    out = tmp_path / "r.json"
    code, _, err = run_cli(
        capsys, "evaluate", str(tmp_path / "reg.keras"), str(tmp_path / "reg.tflite"),
        "--data", "diabetes", "--json", str(out),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["dataset"]["task"] == "regression" and report["dataset"]["samples"] == 111
    x_test, y_test = _diabetes("test")
    (pred,) = hand_run(tmp_path / "reg.tflite", [x_test])
    got = report["models"][1]["task_metrics"]
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y_test, pred[:, 0]), rel=1e-5)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_test, pred[:, 0]), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(y_test, pred[:, 0]), rel=1e-5)


def test_missing_model_is_a_one_line_error_with_exit_2(capsys, tmp_path, digits_npz) -> None:
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(
        capsys, "evaluate", str(tmp_path / "nope.tflite"), str(tmp_path / "nope2.tflite"),
        "--data", str(digits_npz), "--json", str(out),
    )  # fmt: skip
    assert code == 2
    assert err.strip().count("\n") == 0 and "model not found" in err and "Traceback" not in err
    assert not out.exists() and stdout == ""


def test_shape_mismatch_is_a_one_line_error_with_exit_2(capsys, tmp_path, digits_models) -> None:
    np.savez(tmp_path / "flat.npz", x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))
    out = tmp_path / "r.json"
    code, _, err = run_cli(
        capsys, "evaluate", str(digits_models["float"]), str(digits_models["int8io"]),
        "--data", str(tmp_path / "flat.npz"), "--json", str(out),
    )  # fmt: skip
    assert code == 2
    assert "expects samples of shape (8, 8, 1) float32" in err and "gives (64,) float32" in err
    assert err.strip().count("\n") == 0 and not out.exists()


def test_reference_and_candidate_of_different_graphs_are_refused(
    capsys, digits_models, multi_io_models
) -> None:
    code, _, err = run_cli(
        capsys, "evaluate", str(digits_models["float"]), str(multi_io_models["int8io"]),
        "--data", "digits",
    )  # fmt: skip
    assert code == 2 and "input" in err and "reference" in err


def test_help_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from quantlens.cli import main\n"
        "try:\n    main(['evaluate', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('tensorflow', 'keras', 'ai_edge_litert', 'sklearn')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--data" in proc.stdout


def test_the_command_runs_numpy_on_one_blas_thread(digits_models) -> None:
    """The command's NumPy starts no BLAS thread per core (threadpoolctl reads what OpenBLAS
    was given), and a number the user sets stays theirs."""
    import os

    code = (
        "import atexit, sys\n"
        "def report():\n"
        "    from threadpoolctl import threadpool_info\n"
        "    blas = [p for p in threadpool_info() if p['internal_api'] == 'openblas']\n"
        "    print('BLAS', sorted({p['num_threads'] for p in blas}))\n"
        "atexit.register(report)\n"
        f"sys.argv = ['quantlens', 'info', {str(digits_models['float'])!r}]\n"
        "from quantlens.cli import run\n"
        "run()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for given, expected in ((None, "[1]"), ("2", "[2]")):
        if given is not None:
            env["OPENBLAS_NUM_THREADS"] = given
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert f"BLAS {expected}" in proc.stdout


def test_the_commands_garbage_is_finalized_before_the_process_ends(digits_models) -> None:
    """The console entry spares the interpreter's collections at exit (gc.freeze), but what
    the command left as garbage in a reference cycle still has its finalizer run."""
    code = (
        "import sys\n"
        "from quantlens import cli\n"
        "class Cycle:\n"
        "    def __init__(self):\n"
        "        self.me = self\n"
        "    def __del__(self):\n"
        "        print('finalized', flush=True)\n"
        "def command(args):\n"
        "    Cycle()\n"
        "    return 0\n"
        "cli.COMMANDS['info'] = command\n"
        f"sys.argv = ['quantlens', 'info', {str(digits_models['float'])!r}]\n"
        "cli.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "finalized\n"


def test_the_containment_child_runs_numpy_on_one_blas_thread(monkeypatch) -> None:
    from quantlens.models import containment

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    seen: list[dict[str, str]] = []

    class Spawned(Exception):
        pass

    def popen(*args, env, **kwargs):
        seen.append(env)
        raise Spawned

    monkeypatch.setattr(containment.subprocess, "Popen", popen)
    with pytest.raises(Spawned):
        containment._Verifier()._start()
    assert seen[0]["OPENBLAS_NUM_THREADS"] == "1"


def test_evaluate_fixed_batch_models_equals_hand_loop(fixed_batch_models, digits_split) -> None:
    import quantlens

    x, y = digits_split[2][:70], digits_split[3][:70]
    result = quantlens.evaluate(
        fixed_batch_models["baked_float"], [fixed_batch_models["baked"]], (x, y), batch_size=32
    )
    (ref,) = hand_run(fixed_batch_models["baked_float"], [x])
    (cand,) = hand_run(fixed_batch_models["baked"], [x])
    got = result.model("baked")
    assert result.dataset.samples == 70
    assert_close(got.fidelity, expected_fidelity(ref, cand), rel=1e-4)
    assert got.task_metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, cand.argmax(1)))


def test_every_command_that_reads_data_reads_image_folders(tmp_path, tf) -> None:
    """--preprocess on evaluate, bench --data, quantize --calibration and diagnose: an image
    folder at the model's own size (not a 224x224 default)."""
    from PIL import Image

    keras = tf.keras
    layers = [keras.Input((12, 10, 3)), keras.layers.Conv2D(2, 3),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]  # fmt: skip
    model = keras.Sequential(layers)
    flt = tmp_path / "m.tflite"
    flt.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / cls / f"{i}.png")
    spec = ["--preprocess", "size=10x12,scale=1/255"]  # width x height
    folder = str(tmp_path / "img")
    out = tmp_path / "q"
    assert main(["quantize", str(flt), "--modes", "int8", "--calibration", folder,
                 "--calibration-samples", "8", "--out", str(out), *spec]) == 0  # fmt: skip
    int8 = str(out / "m_int8.tflite")
    assert main(["evaluate", str(flt), int8, "--data", folder, "--no-bench", *spec]) == 0
    assert main(["bench", str(flt), "--data", folder, "--min-seconds", "0", "--runs", "5",
                 *spec]) == 0  # fmt: skip
    assert main(["diagnose", str(flt), int8, "--data", folder, "--samples", "8", *spec]) == 0
