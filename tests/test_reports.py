"""Reports (HTML, Markdown), gates, check and diff."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import quantlens
from quantlens.cli import main
from quantlens.diff import diff_reports
from quantlens.errors import ConfigError
from quantlens.gates import check_gates, parse_gate
from quantlens.metric_registry import METRICS
from quantlens.report.environment import environment
from quantlens.report.html import bench_html, diagnosis_html, evaluation_html
from quantlens.report.markdown import bench_markdown, evaluation_markdown
from quantlens.results import (
    EVALUATION_SCHEMA,
    BenchEntry,
    BenchResult,
    DatasetSummary,
    DiagnosisResult,
    EvaluationResult,
    ModelResult,
    OpRow,
    PairedStats,
    Performance,
    RankedVariant,
    Recommendation,
    Suggestion,
    VariantQuantization,
)

GOLDEN = Path(__file__).parent / "golden"


def perf(p50: float, speedup: float) -> Performance:
    samples = tuple(p50 * (1 + 0.01 * k) for k in range(-5, 6))
    latency = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50, "std": 0.01,
               "init": 2.0, "first": 0.5}  # fmt: skip
    return Performance(latency, 1000 / p50, 3.5, 1000, speedup, (), samples)


def paired(delta: float) -> PairedStats:
    return PairedStats("classification", 400, delta, delta - 0.01, delta + 0.01, 0.5, 2000, 3, 1)


def evaluation(acc_int8: float = 0.94, p50_int8: float = 0.5) -> EvaluationResult:
    fid = {"mse": 1e-4, "mae": 1e-3, "rmse": 1e-2, "max_abs_error": 0.1, "sqnr_db": 35.0,
           "cosine_similarity": 0.999, "top1_agreement": 0.98, "kl_divergence": 0.01}  # fmt: skip
    models = (
        ModelResult("float", "float.tflite", "tflite", "reference", 4_000_000,
                    {"accuracy": 0.95, "macro_f1": 0.95}, None, (), perf(2.0, 1.0)),
        ModelResult("int8", "int8.tflite", "tflite", "candidate", 1_000_000,
                    {"accuracy": acc_int8, "macro_f1": 0.93}, fid, (),
                    perf(p50_int8, 2.0 / p50_int8),
                    paired(acc_int8 - 0.95), VariantQuantization("int8")),
        ModelResult("fp16", "fp16.tflite", "tflite", "candidate", 2_000_000,
                    {"accuracy": 0.95, "macro_f1": 0.95}, {**fid, "sqnr_db": 70.0}, (),
                    perf(1.8, 2.0 / 1.8), paired(0.0), VariantQuantization("float16")),
    )  # fmt: skip
    ranking = (RankedVariant("int8", 0.01, True), RankedVariant("fp16", 0.0, True))
    rec = Recommendation("int8", "the smallest variant within the allowed drop", 0.01, "size",
                         False, "float", ranking=ranking)  # fmt: skip
    return EvaluationResult(DatasetSummary("test.npz", 400, "classification"), "float", models,
                            {"num_threads": 1}, rec, schema="quantlens.compare/1")  # fmt: skip


def bench() -> BenchResult:
    entries = []
    for name, p50, ratio in (("float", 2.0, None), ("int8", 0.5, 0.25)):
        lat = {"p50": p50, "p90": p50, "p95": p50, "p99": p50, "mean": p50, "std": 0.0,
               "min": p50, "max": p50, "cv": 0.0, "init": 1.0, "first": 1.0}  # fmt: skip
        entries.append(BenchEntry(name, f"{name}.tflite", "tflite", 1, 1, lat, (p50,) * 40,
                                  1000 / p50, 3.0, 1000, 900, (),
                                  {"ratio": ratio, "ci95_low": ratio, "ci95_high": ratio,
                                   "resamples": 2000} if ratio else None))  # fmt: skip
    return BenchResult(tuple(entries), {"threads": [1]})


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    return c


def assert_self_contained(c: Collector) -> None:
    names = {t for t, _ in c.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed"}
    for _, attrs in c.tags:
        for key, value in attrs.items():
            if key in ("src", "href", "xlink:href"):
                assert value is None or value.startswith("#"), (key, value)


def test_html_report_of_a_comparison() -> None:
    c = parse(evaluation_html(evaluation(), environment({"num_threads": 1}), []))
    headings = [t for t in c.text if t in ("Summary", "Trade-off", "Latency", "Environment")]
    assert headings == ["Summary", "Trade-off", "Latency", "Environment"]
    assert sum(1 for t, _ in c.tags if t == "svg") == 3  # two trade-offs, one latency plot
    text = " ".join(c.text)
    assert "Ship int8" in text and "Pareto front" in text and "recommended" in text
    assert "numpy" in text and "reproduce" in text
    assert_self_contained(c)


def test_html_reports_of_bench_and_diagnosis() -> None:
    c = parse(bench_html(bench(), environment(), []))
    assert any(t == "svg" for t, _ in c.tags)
    assert_self_contained(c)
    ops = tuple(OpRow(i, "CONV_2D", f"t{i}", (), None, float(i), 40.0 - i, 40.0 - i, 30.0)
                for i in range(5))  # fmt: skip
    diag = DiagnosisResult("f.tflite", "q.tflite", 10, "note", {"out": {"sqnr_db": 30.0}}, (),
                           ops, (), {"quantized": [], "float": []})  # fmt: skip
    c = parse(diagnosis_html(diag, environment()))
    assert any(t == "svg" for t, _ in c.tags)
    assert "4 CONV_2D" in " ".join(c.text)  # the worst layer is labelled
    assert_self_contained(c)


def _diagnosis() -> DiagnosisResult:
    ops = tuple(OpRow(i, "CONV_2D", f"t{i}", (), None, float(i), 40.0 - i, 40.0 - i, 30.0)
                for i in range(5))  # fmt: skip
    return DiagnosisResult("f.tflite", "q.tflite", 10, "note", {"out": {"sqnr_db": 30.0}}, (),
                           ops, (), {"quantized": [], "float": []})  # fmt: skip


CONV1 = "digits_cnn_1/conv1_1/Relu;digits_cnn_1/conv1_1/BiasAdd;digits_cnn_1/conv1_1/conv"
CONV2 = "digits_cnn_1/conv2_1/Relu;digits_cnn_1/conv2_1/BiasAdd"


def _suggestion() -> Suggestion:
    """A keep-in-float search as suggest() writes it, with TFLite's long fused names."""
    sens = [{"op_index": 1, "op_type": "CONV_2D", "tensor": CONV1, "with": [CONV2],
             "metric": 0.9533, "drop": 0.0022},
            {"op_index": 8, "op_type": "FULLY_CONNECTED", "tensor": "StatefulPartitionedCall_1:0",
             "with": [], "metric": 0.8444, "drop": 0.1111}]  # fmt: skip

    def kept(*names: str) -> list[dict[str, str]]:
        return [{"name": n, "precision": "float"} for n in names]

    steps = [{"step": 0, "how": "start", "kept": [], "path": "s0", "metric": 0.8444,
              "drop": 0.1111, "size_bytes": 46182, "accepted": True, "p50_ms": 0.00291},
             {"step": 1, "kept": kept(CONV1, CONV2), "path": "s1", "metric": 0.9533,
              "drop": 0.0022, "size_bytes": 59187, "accepted": True, "p50_ms": 0.0041,
              "interval": [0.93, 0.97]},
             {"step": 2, "kept": kept(CONV1, CONV2, "StatefulPartitionedCall_1:0"),
              "path": "s2", "metric": 0.95, "drop": 0.0056, "size_bytes": 60000,
              "accepted": False, "p50_ms": 0.0042}]  # fmt: skip
    return Suggestion.from_dict({
        "budget_metric": "accuracy", "max_drop": 0.01, "float_metric": 0.9556,
        "float_p50_ms": 0.00518, "float_size_bytes": 156979,
        "rankings": {"error_added": [
            {"op_index": 1, "op_type": "CONV_2D", "tensor": CONV1, "error_added_db": 55.9},
            {"op_index": 8, "op_type": "FULLY_CONNECTED", "tensor": "StatefulPartitionedCall_1:0",
             "error_added_db": -0.1}], "sensitivity": sens},
        "steps": steps, "pareto": {"latency": [0, 1], "size": [0, 1]}, "met_budget": True,
        "kept": [{"op_index": 1, "op_type": "CONV_2D", "tensor": CONV1, "precision": "float"},
                 {"op_index": 2, "op_type": "CONV_2D", "tensor": CONV2, "precision": "float"}],
        "model": "/tmp/quantlens-demo/keep-in-float/digits_cnn_float32_repaired.tflite",
        "manifest": "/tmp/quantlens-demo/keep-in-float/digits_cnn_float32_repaired.json",
        "model_step": 1, "evaluations": 9, "max_evaluations": 200,
        "sources": [{"source": "CONV_2D", "description": "every CONV_2D in float",
                     "metric": 0.9556, "drop": 0.0, "size_bytes": 150000}],
    })  # fmt: skip


def _evaluation_only() -> EvaluationResult:
    return dataclasses.replace(evaluation(), recommendation=None, schema=EVALUATION_SCHEMA)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
@pytest.mark.parametrize(("kind", "render", "headings", "names"), [
    ("evaluate", lambda: evaluation_html(_evaluation_only(), environment(), []),
     ["Summary", "Trade-off", "Latency"], ["float", "int8", "fp16"]),
    ("compare", lambda: evaluation_html(evaluation(), environment(), []),
     ["Summary", "Trade-off", "Latency"], ["float", "int8", "fp16"]),
    ("bench", lambda: bench_html(bench(), environment(), []), [], ["float", "int8"]),
    ("diagnose", lambda: diagnosis_html(
        dataclasses.replace(_diagnosis(), suggestion=_suggestion()), environment()),
     ["Where the error comes from", "Per layer, in graph order", "Keep in float"],
     ["q.tflite", "digits_cnn_1/conv1_1/Relu"]),
])  # fmt: skip
def test_html_renders_in_headless_chromium(tmp_path, kind, render, headings, names) -> None:
    """Each kind of report, opened in a real browser: it renders (a non-blank screenshot), the
    DOM holds its headings and every model name, and the console logs no error."""
    page = tmp_path / f"{kind}.html"
    page.write_text(render())
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    proc = subprocess.run(
        ["chromium", *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "quantlens" in dom and "<svg" in dom
    for text in [*headings, *names]:
        assert text in dom, text
    console_errors = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and "ERROR" in ln]
    assert not console_errors
    shot = tmp_path / f"{kind}.png"
    subprocess.run(["chromium", *flags, "--window-size=1100,900", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)  # fmt: skip
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("L").getextrema()
    assert colours[1] - colours[0] > 100  # not a blank page


@pytest.mark.parametrize(("name", "render"), [
    ("compare.md", lambda: evaluation_markdown(evaluation(), [])),
    ("bench.md", lambda: bench_markdown(bench(), [])),
    ("gates.md", lambda: evaluation_markdown(evaluation(), [
        {"gate": "accuracy_drop>0.005", "model": "int8", "value": 0.01, "failed": True,
         "metric": "accuracy_drop"}])),
])  # fmt: skip
def test_markdown_against_golden_files(name: str, render) -> None:
    assert render() == (GOLDEN / name).read_text()


@pytest.mark.parametrize(("text", "metric", "op", "value", "model"), [
    ("accuracy_drop>0.01", "accuracy_drop", ">", 0.01, None),
    (" p50_ms >= 5 ", "p50_ms", ">=", 5.0, None),
    ("size_bytes>4e6", "size_bytes", ">", 4e6, None),
    ("int8:sqnr_db<20", "sqnr_db", "<", 20.0, "int8"),
    ("speedup<1", "speedup", "<", 1.0, None),
    ("my-model_v2:nonfinite_outputs!=0", "nonfinite_outputs", "!=", 0.0, "my-model_v2"),
])  # fmt: skip
def test_gate_parsing(text: str, metric: str, op: str, value: float, model: str | None) -> None:
    g = parse_gate(text)
    assert (g.metric, g.op, g.threshold, g.model) == (metric, op, value, model)


@pytest.mark.parametrize(("text", "message"), [
    ("accuracy_drop", "cannot read gate"),
    ("accuracy_drop>", "cannot read gate"),
    ("accuracy_drop=>0.1", "cannot read gate"),
    ("accuracy_drop>abc", "cannot read gate"),
    ("bogus_metric>1", "unknown metric 'bogus_metric'"),
    ("", "cannot read gate"),
])  # fmt: skip
def test_gate_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gate(text)


def test_gate_evaluation() -> None:
    report = evaluation(acc_int8=0.93).to_dict()
    outcomes = check_gates([parse_gate("accuracy_drop>0.01")], report)
    by_model = {o.model: o for o in outcomes}
    assert set(by_model) == {"int8", "fp16"}  # every candidate, not the reference
    assert by_model["int8"].value == pytest.approx(0.02) and by_model["int8"].failed
    assert not by_model["fp16"].failed
    only = check_gates([parse_gate("fp16:p50_ms>1")], report)
    assert [(o.model, o.failed) for o in only] == [("fp16", True)]
    with pytest.raises(ConfigError, match="no model 'nope'"):
        check_gates([parse_gate("nope:p50_ms>1")], report)
    with pytest.raises(ConfigError, match="no r2"):
        check_gates([parse_gate("r2<0.5")], report)
    assert "accuracy_drop" in METRICS and "speedup" in METRICS
    # a result and its JSON read through from_dict give the same outcomes
    gates = [parse_gate("accuracy_drop>0.01"), parse_gate("speedup<2"), parse_gate("p50_ms>1")]
    assert check_gates(gates, evaluation(acc_int8=0.93)) == check_gates(gates, report)
    assert check_gates([parse_gate("speedup<3")], bench()) == check_gates(
        [parse_gate("speedup<3")], json.loads(json.dumps(bench().to_dict()))
    )
    with pytest.raises(ConfigError, match="not a quantlens report"):
        check_gates(gates, {"schema": "quantlens.diagnosis/1"})


def test_cli_gates_fail_with_exit_1_and_are_recorded(capsys, tmp_path, digits_models) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", str(digits_models["float"]), str(digits_models["int8io"]), "--data",
            "digits", "--limit", "60", "--no-bench", "--json", str(out)]  # fmt: skip
    code = main([*args, "--fail-on", "sqnr_db<1000", "--fail-on", "top1_agreement<0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "cnn_int8io broke gate sqnr_db<1000" in captured.out
    gates = json.loads(out.read_text())["gates"]
    assert [(g["gate"], g["failed"]) for g in gates] == [("sqnr_db<1000", True),
                                                         ("top1_agreement<0", False)]  # fmt: skip
    out.unlink()
    code = main([*args, "--fail-on", "latency_p50>1"])
    assert code == 2 and "unknown metric" in capsys.readouterr().err
    assert not out.exists()  # refused before running


def test_check_a_saved_report(capsys, tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(evaluation().to_dict()))
    assert main(["check", str(path), "--fail-on", "accuracy_drop>0.02"]) == 0
    assert main(["check", str(path), "--fail-on", "accuracy_drop>0.005"]) == 1
    assert "int8 broke gate accuracy_drop>0.005" in capsys.readouterr().out
    (tmp_path / "bench.json").write_text(json.dumps(bench().to_dict()))
    assert main(["check", str(tmp_path / "bench.json"), "--fail-on", "speedup<2"]) == 0
    assert main(["check", str(tmp_path / "bench.json"), "--fail-on", "p50_ms>0.4"]) == 1
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["check", str(tmp_path / "junk.json"), "--fail-on", "p50_ms>1"]) == 2


def test_diff_marks_regressions(capsys, tmp_path) -> None:
    old, new = evaluation().to_dict(), evaluation(acc_int8=0.92, p50_int8=0.6).to_dict()
    rows, only_old, only_new = diff_reports(old, new)
    flagged = {(r.model, r.metric) for r in rows if r.regression}
    assert flagged == {("int8", "accuracy"), ("int8", "p50_ms"), ("int8", "p99_ms")}
    acc = next(r for r in rows if (r.model, r.metric) == ("int8", "accuracy"))
    assert acc.change == pytest.approx(-0.02)
    assert only_old == only_new == []
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 1
    assert "regression" in capsys.readouterr().out
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "old.json")]) == 0
    code = main(["diff", str(tmp_path / "old.json"), str(tmp_path / "old.json"), "--fail-on",
                 "accuracy_drop>0.001"])  # fmt: skip
    assert code == 1


def test_every_result_survives_a_json_round_trip(bad_layer) -> None:
    from quantlens.results import QuantizeResult

    ev = evaluation()
    assert EvaluationResult.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    b = bench()
    assert BenchResult.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    diag = quantlens.diagnose(bad_layer["float"], bad_layer["int8"], bad_layer["data"], samples=32)
    again = DiagnosisResult.from_dict(json.loads(json.dumps(diag.to_dict(), allow_nan=False)))
    assert again.to_dict() == diag.to_dict()
    assert [o.error_added_db for o in again.ops] == [o.error_added_db for o in diag.ops]
    assert again.ops == diag.ops and again.weights == diag.weights
    with_suggestion = dataclasses.replace(diag, suggestion=_suggestion())
    text = json.dumps(with_suggestion.to_dict(), allow_nan=False)
    assert DiagnosisResult.from_dict(json.loads(text)).suggestion == _suggestion()
    variant = {"mode": "int8", "settings": {"tool": "x"}, "path": "p", "size_bytes": 3}
    calibration = {"source": "digits:train", "samples": 200}
    failed = {"mode": "int16x8", "reason": "PRELU has no int16 kernel", "code": "mode_failed"}
    manifest = {"schema": "quantlens.quantize/1", "source": "m.keras",
                "calibration": calibration, "variants": [variant], "failed": [failed]}  # fmt: skip
    assert QuantizeResult.from_dict(manifest).to_dict() == manifest


def _rendered(print_fn, result, width: int, *args) -> list[str]:
    import io

    from rich.console import Console

    out = io.StringIO()
    print_fn(result, *args, Console(width=width, file=out, color_system=None))
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_console_tables_fit_and_show_names_whole(width: int) -> None:
    """Each main table rendered by rich at 80 and 120 columns: no line wider than the
    terminal, no cell cut (rich marks a cut with '…'), every model name whole on one line."""
    from rich.cells import cell_len

    from quantlens.report.console import (
        print_bench,
        print_compare,
        print_diagnosis,
        print_diff,
        print_evaluation,
        print_suggestion,
    )

    long_names = ("mobilenet_v2_int8_per_channel", "mobilenet_v2_float16_weights")
    names = ("mobilenet_v2_float", *long_names)
    models = tuple(dataclasses.replace(m, name=n)
                   for m, n in zip(evaluation().models, names, strict=True))  # fmt: skip
    renamed = dataclasses.replace(evaluation(), models=models)
    rec = dataclasses.replace(
        renamed.recommendation, model=long_names[0], float_baseline="mobilenet_v2_float"
    )
    renamed = dataclasses.replace(renamed, recommendation=rec)
    old, new = evaluation().to_dict(), evaluation(acc_int8=0.92, p50_int8=0.6).to_dict()
    cases = [
        (print_evaluation, dataclasses.replace(renamed, recommendation=None), (), []),
        (print_compare, renamed, (), ["4.00×", "-1.00 [-2.00, -0.00]"[:5]]),
        (print_bench, bench(), (), []),
        (print_diagnosis, _diagnosis(), (10,), ["+4.0"]),
        (print_suggestion, _suggestion(), (),
         ["0.9533", "0.22\u00a0pt", "11.11\u00a0pt", "153.3 KiB", "5.18 µs", "float",
          "greedy", "57.8 KiB", "4.1 µs", "146.5 KiB"]),
        (print_diff, diff_reports(old, new)[0], ([], []), ["-2.00\u00a0pt", "0.9200"]),
    ]  # fmt: skip
    for print_fn, result, args, whole in cases:
        lines = _rendered(print_fn, result, width, *args)
        # numbers are never cut or folded: each sits whole on one line
        for cell in whole:
            assert any(cell in ln for ln in lines), (print_fn.__name__, cell, lines)
        assert all(cell_len(line) <= width for line in lines), (print_fn.__name__, lines)
        table_lines = [ln for ln in lines if "…" in ln]
        assert not table_lines, (print_fn.__name__, table_lines)
        names = [m.name for m in result.models] if hasattr(result, "models") else (
            [e.name for e in result.results] if hasattr(result, "results") else [])  # fmt: skip
        for name in names:
            assert any(name in ln for ln in lines), (print_fn.__name__, name, lines)


def test_installed_versions_are_what_importlib_metadata_finds(tmp_path, monkeypatch):
    """Versions read from metadata directories' names equal importlib.metadata's, which
    reads each METADATA file: on this environment, and on a made-up sys.path with the
    spellings installers use (a dotted name, an egg-info, one package shadowing another)."""
    import importlib.metadata as md

    from quantlens.versions import installed_versions

    def truth(names):
        found = {}
        for n in names:
            with contextlib.suppress(md.PackageNotFoundError):
                found[n] = md.version(n)
        return found

    names = ["numpy", "rich", "pytest", "ai-edge-litert", "tensorflow-cpu", "no-such-pkg"]
    assert installed_versions(names) == truth(names)
    assert "numpy" in installed_versions(names)

    first, second = tmp_path / "a", tmp_path / "b"
    made = [(first, "Foo.Bar-1.2.3.dist-info", "Foo.Bar", "1.2.3"),
            (first, "baz-0.4-py3.11.egg-info", "baz", "0.4"),
            (second, "foo_bar-9.0.dist-info", "foo_bar", "9.0"),  # shadowed by the first
            (second, "qux-2.0rc1.dist-info", "qux", "2.0rc1")]  # fmt: skip
    for where, directory, name, version in made:
        meta = where / directory
        meta.mkdir(parents=True)
        kind = "PKG-INFO" if directory.endswith("egg-info") else "METADATA"
        (meta / kind).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.setattr("sys.path", [str(first), str(second)])
    names = ["foo-bar", "Baz", "qux", "numpy"]
    got = installed_versions(names)
    assert got == truth(names) == {"foo-bar": "1.2.3", "Baz": "0.4", "qux": "2.0rc1"}


def test_the_progress_bar_appears_late_and_never_shows_zero_done() -> None:
    """The bar shows only on a terminal once the run has lasted its delay, and its first
    frame already counts the samples done (it used to draw "0/N" first)."""
    import io

    from rich.console import Console

    from quantlens.report.console import delayed_progress

    piped = io.StringIO()
    with delayed_progress(10, "evaluating", Console(file=piped), delay_s=0) as advance:
        advance(5)
    assert piped.getvalue() == ""
    shown = io.StringIO()
    terminal = Console(file=shown, force_terminal=True, width=80)
    with delayed_progress(10, "evaluating", terminal, delay_s=0) as advance:
        advance(5)
        advance(5)
    frames = shown.getvalue()
    assert "5/10" in frames and "0/10" not in frames.replace("10/10", "")


def test_a_name_with_no_separator_is_the_last_to_fold() -> None:
    """Two name columns that do not both fit: the one whose names break after a '_' or a
    '.' folds there; an op type, one word, stays whole (it was cut mid-word:
    'BatchNormalizati' / 'on', at 80 columns, on PP-OCRv4's detector)."""
    import io

    from rich.cells import cell_len
    from rich.console import Console

    from quantlens.report.console import Column, build_table

    columns = [Column("#"), Column("type", "name"), Column("output tensor", "name"),
               Column("added dB"), Column("SQNR dB"), Column("ch. median dB")]  # fmt: skip
    rows = [["1", "BatchNormalization", "batch_norm_0.tmp_3", "+81.2", "-31.7", "-32.0"],
            ["2", "Cast", "sigmoid_0.tmp_0", "+75.8", "-76.9", "-100.0"]]  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=80).print(build_table(None, columns, rows, 80))
    lines = out.getvalue().splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert any("BatchNormalization" in line for line in lines)
    assert any(line.rstrip().endswith("batch_norm_0.") or "batch_norm_0. " in line
               for line in lines)  # fmt: skip
