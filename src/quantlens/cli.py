"""The command line: parse, call the public API, render, return an exit code.

Exit codes: 0 success, 2 a user error (printed on one line, no traceback).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from quantlens.errors import ConfigError, QuantlensError
from quantlens.report.text import visible

EXIT_OK = 0
EXIT_USER_ERROR = 2


#: Longest error message printed (a message can quote a crafted file's contents).
MAX_MESSAGE = 1000
#: Where compare writes its variants, and the demo everything, unless told otherwise.
COMPARE_OUT, DEMO_OUT = "quantlens-compare", "quantlens-demo"
#: Bounds of the benchmark's options: it must end, and threads must exist.
MAX_SECONDS = 3600.0
MAX_RUNS = 10**7
MAX_THREADS_PER_CORE = 4


def _error_line(message: str) -> str:
    """One line on stderr: control characters shown as escapes, length capped."""
    return f"quantlens: error: {visible(' '.join(message.split()), MAX_MESSAGE)}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, like every other user error (the usage is one --help away)."""
        self.exit(EXIT_USER_ERROR, f"{_error_line(message)} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got '{text}'"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got '{text}'")
    return values


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got '{text}'")
    return value


def _seconds(text: str) -> float:
    value = _non_negative_float(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SECONDS:g} seconds, got '{text}'")
    return value


def _runs(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_RUNS:
        raise argparse.ArgumentTypeError(f"at most {MAX_RUNS:,} runs, got '{text}'")
    return value


def _warmup(text: str) -> int:
    value = _positive_int(text) if text.strip() != "0" else 0
    if value > MAX_RUNS:
        raise argparse.ArgumentTypeError(f"at most {MAX_RUNS:,} runs, got '{text}'")
    return value


def _check_bounds(args: argparse.Namespace) -> None:
    """Limits that need more than one option: threads beyond what the machine can use are
    refused unless --force (a runtime asked for 100,000 threads crashes)."""
    cores = os.cpu_count() or 1
    limit = MAX_THREADS_PER_CORE * cores
    threads = getattr(args, "threads", None)
    for t in threads if isinstance(threads, list) else [threads]:
        if t is not None and t > limit and not getattr(args, "force", False):
            raise ConfigError(f"--threads {t} is more than {MAX_THREADS_PER_CORE} × the {cores} "
                              f"core(s) here ({limit}); pass --force to use it anyway")  # fmt: skip


def _constant(text: str) -> tuple[str, Any]:
    """NAME=VALUE: a number, or numbers separated by commas (a vector)."""
    import numpy as np

    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers after '{name}=', got '{value}'"
        ) from None
    array = np.array(numbers if "," in value else numbers[0])
    if np.all(array == np.round(array)) and np.all(np.isfinite(array)):
        array = array.astype(np.int64)
    return name.strip(), array


#: What --data and --calibration take, said the same way by every command.
DATA_HELP = (".npz (x [and y], or arrays by input name), .npy, .csv, a folder of class "
             "subfolders of images, 'digits' or 'diabetes' (':train' for the train "
             "split)")  # fmt: skip


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """How data files are read: for every command that reads data."""
    parser.add_argument(
        "--preprocess", default="", metavar="SPEC",
        help="image folders: size=WxH,scale=1/255,mean=a:b:c,std=a:b:c,channels,layout",
    )  # fmt: skip
    parser.add_argument("--label-column", help="CSV: the label column (default: label, y, target)")


def _status_printer() -> Any:
    """A function printing a dim status line on stderr, when stderr is a terminal (None
    otherwise: piped output stays the report alone)."""
    from quantlens.report.console import make_console

    status = make_console(stderr=True)
    if not status.is_terminal:
        return None
    return lambda text: status.print(visible(text), style="dim", markup=False)


def _data(args: argparse.Namespace, source: Any) -> Any:
    """A data source as the options say to read it (None stays None; built-in names and
    other sources pass through to the API, which reads them)."""
    if source is None or not (args.preprocess or args.label_column):
        return source
    from quantlens.data import load_dataset

    return load_dataset(source, preprocess=args.preprocess, label_column=args.label_column)


def _add_const_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--const", action="append", default=[], type=_constant, metavar="NAME=VALUE",
        help="fix an input to one value for every sample, e.g. sr=16000 (repeatable)",
    )  # fmt: skip


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """What evaluate and compare share: task, batching, threads, benchmark."""
    parser.add_argument(
        "--task", choices=["classification", "regression"], help="default: inferred"
    )
    parser.add_argument(
        "--batch-size", type=_positive_int,
        help="samples per invoke where it does not change the outputs (default: per model, "
        "the most, up to 1024, that keep an invoke's tensors in the caches; for a large "
        "model, timed around that on the first batches)",
    )  # fmt: skip
    parser.add_argument("--limit", type=_positive_int, help="use at most N samples")
    _add_const_option(parser)
    parser.add_argument("--threads", type=_positive_int, help="runtime threads per model")
    parser.add_argument("--no-bench", action="store_true", help="skip latency and memory")
    parser.add_argument(
        "--workers", type=_positive_int, default=os.cpu_count() or 1,
        help="workers: threads for large LiteRT/ONNX models, else processes (default: the "
        "number of cores; at least 512 samples each)",
    )  # fmt: skip
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where workers run (default: this machine)")  # fmt: skip
    parser.add_argument("--ray-address", help="an existing Ray cluster (default: start one)")
    _add_data_options(parser)
    parser.add_argument(
        "--layout", choices=["nhwc", "nchw"],
        help="the data's image layout; models laid out the other way get transposed inputs",
    )  # fmt: skip


def _add_wide(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true",
                        help="tables with every column, wider than the terminal if need "
                        "be")  # fmt: skip


def _add_outputs(parser: argparse.ArgumentParser, gates: bool = True) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--report", metavar="PATH.html", help="write a self-contained HTML report")
    parser.add_argument("--markdown", metavar="PATH.md", help="write a Markdown summary")
    _add_wide(parser)
    parser.add_argument("--force", action="store_true",
                        help="replace an existing file that is not a quantlens report; allow "
                        "more threads than 4 × the cores")  # fmt: skip
    parser.add_argument("--mkdir", action="store_true",
                        help="create a report's missing directory")  # fmt: skip
    if gates:
        parser.add_argument(
            "--fail-on", action="append", default=[], metavar="EXPR",
            help="gate, e.g. accuracy_drop>0.01 or int8:p50_ms>5 (repeatable); exit 1 if broken",
        )  # fmt: skip


def _gates(args: argparse.Namespace, *, outputs: bool = True) -> list[Any]:
    """Parse the gates and check the report paths (``outputs``) before any work is done."""
    from quantlens.files import check_report_paths
    from quantlens.gates import parse_gate

    if outputs:
        paths = {k.replace("_", "-"): getattr(args, k)
                 for k in ("json", "report", "markdown", "save_reference_outputs")
                 if getattr(args, k, None)}  # fmt: skip
        check_report_paths(paths, force=getattr(args, "force", False),
                           mkdir=getattr(args, "mkdir", False))  # fmt: skip
    return [parse_gate(text) for text in getattr(args, "fail_on", [])]


def _finish(args: argparse.Namespace, result: Any, console: Any, gates: list[Any]) -> int:
    from quantlens.outputs import write_outputs

    return write_outputs(
        result, console, gates=gates, json_path=args.json, html_path=args.report,
        markdown_path=args.markdown, node_data_dir=getattr(args, "node_data", None),
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="quantlens",
        description="Tell what quantization did to a model: accuracy, fidelity to the float "
        "reference, and where it hurt.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ev = sub.add_parser(
        "evaluate",
        help="run a reference and quantized candidates on the same data",
        usage="quantlens evaluate [options] REFERENCE CANDIDATE... --data DATA\n"
        "       quantlens evaluate --reference-outputs FILE CANDIDATE... --data DATA",
        description="Run REFERENCE and each CANDIDATE on the same data; report task metrics "
        "against the labels and each candidate's fidelity to the reference. The reference's "
        "outputs can be stored (--save-reference-outputs) and later stand in for it "
        "(--reference-outputs), on the same data.",
    )
    ev.add_argument(
        "reference", nargs="?",
        help="the float model (.tflite, .onnx, .keras, .h5, SavedModel dir); with "
        "--reference-outputs, a candidate like the others",
    )  # fmt: skip
    ev.add_argument("candidates", nargs="*", metavar="candidate", help="quantized model(s)")
    ev.add_argument("--data", required=True, help=DATA_HELP)
    golden = ev.add_mutually_exclusive_group()
    golden.add_argument(
        "--save-reference-outputs", metavar="FILE",
        help="store the reference's outputs, with digests of the data and the model (an "
        "uncompressed .npz); candidates are optional",
    )  # fmt: skip
    golden.add_argument(
        "--reference-outputs", metavar="FILE",
        help="evaluate the candidates against outputs stored by --save-reference-outputs "
        "instead of running a reference; the data must be the same, sample for sample",
    )  # fmt: skip
    _add_run_options(ev)
    ev.add_argument("--allow-nonfinite", action="store_true", help="run on NaN/inf inputs")
    _add_outputs(ev)

    bench = sub.add_parser(
        "bench",
        help="latency, throughput, memory and size, with A/B ratios",
        description="Time each MODEL's invoke in interleaved rounds after a warm-up; init, "
        "first inference and peak memory come from a fresh child process per model.",
    )
    bench.add_argument("models", nargs="+", metavar="model")
    bench.add_argument("--threads", type=_int_list, default=[1], help="e.g. 1,2 (default: 1)")
    bench.add_argument("--batch-size", type=_int_list, default=[1], help="e.g. 1,8 (default: 1)")
    bench.add_argument("--warmup-runs", type=_warmup, default=10, help="default: 10")
    bench.add_argument("--runs", type=_runs, default=50, help="at least (default: 50)")
    bench.add_argument("--min-seconds", type=_seconds, default=1.0,
                       help="at least this long (default: 1)")  # fmt: skip
    bench.add_argument("--data", help=f"inputs from {DATA_HELP} (default: random in range)")
    _add_data_options(bench)
    bench.add_argument("--no-memory", action="store_true", help="skip the child-process probe")
    bench.add_argument(
        "--profile", action="store_true", help="ONNX: time by node and op type (ORT profiler)"
    )
    _add_outputs(bench)

    qz = sub.add_parser(
        "quantize",
        help="write one quantized model per mode (.tflite or .onnx), with a manifest",
        description="Quantize MODEL into each mode: a Keras file or SavedModel through the "
        "TFLite converter, a float .tflite through litert-quantizer.",
    )
    qz.add_argument("model", help=".keras, .h5, SavedModel directory, or float .tflite")
    qz.add_argument("--modes", required=True, help="comma-separated, or 'all'")
    qz.add_argument("--calibration", help=f"data for static modes (int8, int16x8, …): {DATA_HELP}")
    _add_data_options(qz)
    qz.add_argument("--calibration-samples", type=_positive_int, default=200,
                    help="samples that calibrate each static mode (default: 200)")  # fmt: skip
    qz.add_argument("--out", required=True, help="directory for the .tflite files and manifest")
    _add_const_option(qz)

    cmp = sub.add_parser(
        "compare",
        help="quantize every way, evaluate side by side, recommend one",
        description="Quantize MODEL into each mode, evaluate every variant against it on the "
        "same data with paired statistics, benchmark them, and recommend the smallest variant "
        "within the allowed drop.",
    )
    cmp.add_argument("model", nargs="?", help=".keras, .h5, SavedModel directory, float .tflite")
    cmp.add_argument("--demo", action="store_true", help="run the demo (see quantlens demo --help)")
    cmp.add_argument("--data", help=DATA_HELP)
    cmp.add_argument("--modes", default="all", help="comma-separated (default: all)")
    cmp.add_argument("--calibration", help="default: a built-in set's train split, else --data")
    cmp.add_argument("--calibration-samples", type=_positive_int, default=200, help="default: 200")
    cmp.add_argument(
        "--max-drop", type=_non_negative_float, default=0.01,
        help="largest acceptable drop: 0.01 = 1 accuracy point, or 1%% more MAE",
    )  # fmt: skip
    cmp.add_argument("--prefer", choices=["size", "latency"], default="size",
                     help="what to optimise within the allowed drop (default: size)")  # fmt: skip
    cmp.add_argument("--allow-io-change", action="store_true",
                     help="recommend variants with integer inputs/outputs too")  # fmt: skip
    cmp.add_argument("--with", dest="extra", action="append", default=[], metavar="MODEL",
                     help="also evaluate a model made elsewhere beside the variants (e.g. the "
                     "repaired model of diagnose --suggest); repeatable")  # fmt: skip
    _add_run_options(cmp)
    cmp.add_argument(
        "--out", default=None, help=f"default: ./{COMPARE_OUT} (with --demo: ./{DEMO_OUT})"
    )
    _add_outputs(cmp)

    dg = sub.add_parser(
        "diagnose",
        help="find the layers that cause the quantization error",
        description="Run FLOAT_MODEL and QUANT_MODEL (two .tflite or two .onnx files from the "
        "same source; or a Keras source with --mode) with every intermediate tensor kept, "
        "match their tensors, and rank the ops by the error they add.",
    )
    dg.add_argument("float_model", help="float .tflite or .onnx, or a Keras file / SavedModel")
    dg.add_argument("quant_model", nargs="?", help="quantized .tflite/.onnx (omit for Keras)")
    dg.add_argument("--data", required=True, help=DATA_HELP)
    _add_data_options(dg)
    _add_const_option(dg)
    dg.add_argument("--samples", type=_positive_int, default=256, help="default: 256")
    dg.add_argument("--top", type=_positive_int, default=10, help="ops to show (default: 10)")
    dg.add_argument(
        "--mode",
        help="Keras source: int8 (default), int8-io, int16x8; .tflite pair: the "
        "litert-quantizer mode to rebuild with (default: inferred)",
    )
    dg.add_argument("--calibration", help="calibration data (default: a built-in set's train "
                    "split, else --data)")  # fmt: skip
    dg.add_argument("--calibration-samples", type=_positive_int, default=200)
    dg.add_argument("--suggest", action="store_true",
                    help="search which ops to keep at a higher precision (float, int16 "
                    "activations, float activations) to meet the budget")  # fmt: skip
    dg.add_argument(
        "--max-drop", type=_non_negative_float, default=0.01,
        help="budget: accuracy points (0.01 = 1), or relative RMSE for sqnr",
    )  # fmt: skip
    dg.add_argument("--budget-metric", choices=["accuracy", "sqnr"], default="accuracy")
    dg.add_argument(
        "--max-evaluations",
        type=_positive_int,
        default=200,
        metavar="N",
        help="models the search may build and measure (default: 200)",
    )
    dg.add_argument("--out", default="quantlens-diagnose", help="where models are written")
    dg.add_argument("--node-data", metavar="DIR",
                    help="write one Model Explorer overlay per metric in DIR, and print the "
                    "command that opens them")  # fmt: skip
    _add_outputs(dg, gates=False)

    kn = sub.add_parser(
        "kernels",
        help="run a model on every CPU kernel path: kernel error apart from quantization error",
        description="Run MODEL on every CPU kernel path of its runtime (.tflite: reference "
        "kernels, builtin optimized kernels, XNNPACK; .onnx: graph optimizations off, "
        "basic, all) on the same data, and measure each path against the first: "
        "fidelity, NaN/inf and all-zero outputs, latency. With --reference FLOAT, the float "
        "model against the quantized one on the reference kernels is the quantization error.",
    )
    kn.add_argument("model", help="a .tflite or .onnx model")
    kn.add_argument("--data", required=True, help=DATA_HELP)
    _add_data_options(kn)
    kn.add_argument("--reference", metavar="FLOAT", help="the float model MODEL was made from")
    kn.add_argument("--samples", type=_positive_int, default=256, help="default: 256")
    kn.add_argument("--batch-size", type=_positive_int, default=32, help="default: 32")
    kn.add_argument("--threads", type=_positive_int, default=1,
                    help="runtime threads on every path (default: 1)")  # fmt: skip
    _add_outputs(kn)

    chk = sub.add_parser("check", help="apply gates to a saved report")
    chk.add_argument("report", help="JSON written by evaluate, compare or bench")
    chk.add_argument("--fail-on", action="append", required=True, metavar="EXPR",
                     help="gate, e.g. accuracy_drop>0.01 (repeatable)")  # fmt: skip

    df = sub.add_parser("diff", help="compare two saved reports model by model")
    df.add_argument("old")
    df.add_argument("new")
    df.add_argument(
        "--threshold", type=_non_negative_float, default=0.01,
        help="accuracy-like: points; error, size, memory: relative (default 0.01)",
    )  # fmt: skip
    df.add_argument("--latency-threshold", type=_non_negative_float, default=0.10,
                    help="relative p50/p99 increase that counts (default 0.10)")  # fmt: skip
    df.add_argument("--fail-on", action="append", default=[], metavar="EXPR",
                    help="gates applied to the new report")  # fmt: skip
    _add_wide(df)

    info = sub.add_parser("info", help="describe a model: I/O, quantization, ops, weights")
    info.add_argument("model")
    info.add_argument("--json", metavar="PATH", help="write the description as JSON")
    _add_wide(info)

    demo_help = ("show a quantized model that lost accuracy, the layer at fault and the fix "
                 "(a digits CNN trained in seconds; = compare --demo)")  # fmt: skip
    demo = sub.add_parser("demo", help=demo_help, description=demo_help[0].upper() + demo_help[1:])
    demo.add_argument("--out", default=DEMO_OUT, help=f"default: ./{DEMO_OUT}")
    for command in (ev, bench, qz, cmp, dg, info):
        command.add_argument(
            "--trust-model", action="store_true",
            help="let Keras models run the code they carry (Lambda layers, custom objects)",
        )  # fmt: skip
    for command in (ev, bench, qz, cmp, dg):
        command.add_argument(
            "--config", metavar="FILE.toml", help="options from a TOML file (command line wins)"
        )
    return parser


def _version() -> str:
    from quantlens.versions import version_of

    return version_of("quantlens") or "unknown"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"quantlens {_version()}")  # on stdout, as argparse's own version action
        parser.exit()


def _eval_options(args: argparse.Namespace) -> Any:
    """The run's EvalOptions from the options evaluate and compare share (validated here)."""
    from quantlens.engine.options import EvalOptions

    return EvalOptions(
        task=args.task, batch_size=args.batch_size, limit=args.limit, num_threads=args.threads,
        allow_nonfinite=getattr(args, "allow_nonfinite", False), bench=not args.no_bench,
        workers=args.workers, engine=args.engine, ray_address=args.ray_address,
        layout=args.layout, constants=dict(args.const),
    )  # fmt: skip


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from quantlens.data import load_dataset
    from quantlens.evaluation import evaluate
    from quantlens.report.console import delayed_progress, make_console, print_evaluation

    reference, candidates = _evaluated_models(args)
    gates = _gates(args)
    dataset = load_dataset(args.data, preprocess=args.preprocess, label_column=args.label_column)
    total = dataset.num_samples
    if total is not None and args.limit is not None:
        total = min(total, args.limit)
    console = make_console()
    with delayed_progress(total, "evaluating", make_console(stderr=True)) as advance:
        result = evaluate(reference, candidates, dataset, options=_eval_options(args),
                          progress=advance, status=_status_printer(),
                          save_reference_outputs=args.save_reference_outputs)  # fmt: skip
    print_evaluation(result, console)
    return _finish(args, result, console, gates)


def _evaluated_models(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """evaluate's reference (a path, or stored outputs opened) and candidates."""
    given = [m for m in (args.reference, *args.candidates) if m is not None]
    if args.reference_outputs:
        if not given:
            raise ConfigError("give at least one candidate to evaluate against "
                              f"{args.reference_outputs}")  # fmt: skip
        from quantlens.models.stored import load_reference_outputs

        return load_reference_outputs(args.reference_outputs), given
    if len(given) < 2 and not args.save_reference_outputs:
        raise ConfigError("give a reference and at least one candidate (or only the reference "
                          "with --save-reference-outputs)")  # fmt: skip
    return given[0], given[1:]


def _cmd_bench(args: argparse.Namespace) -> int:
    from quantlens.bench import benchmark
    from quantlens.bench.options import BenchOptions
    from quantlens.report.console import make_console, print_bench

    gates = _gates(args)
    console = make_console()
    status = make_console(stderr=True)
    options = BenchOptions(
        threads=tuple(args.threads), batch_sizes=tuple(args.batch_size),
        warmup_runs=args.warmup_runs, runs=args.runs, min_seconds=args.min_seconds,
        measure_memory=not args.no_memory, profile=args.profile,
    )  # fmt: skip
    result = benchmark(
        args.models,
        data=_data(args, args.data),
        options=options,
        progress=lambda text: (
            status.print(f"benchmarking {visible(text)}…", style="dim", markup=False)
            if status.is_terminal
            else None
        ),
    )
    print_bench(result, console)
    return _finish(args, result, console, gates)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from quantlens.quantize import MANIFEST, quantize
    from quantlens.report.console import human_size, make_console

    console = make_console()
    result = quantize(
        args.model, args.modes, args.out, calibration=_data(args, args.calibration),
        calibration_samples=args.calibration_samples, status=_status_printer(),
        constants=dict(args.const),
    )  # fmt: skip
    for v in result.variants:
        console.print(f"{v.mode:>22}  {human_size(v.size_bytes):>10}  {visible(v.path)}",
                      markup=False)  # fmt: skip
    for f in result.failed:
        console.print(f"⚠ {f.mode}: not made: {visible(f.reason, 2000)}", markup=False)
    console.print(f"manifest written to {visible(args.out)}/{MANIFEST}", markup=False)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from quantlens.report.console import make_console

    if args.demo:
        from quantlens.demo import run_demo

        run_demo(args.out or DEMO_OUT)
        return EXIT_OK
    if args.model is None or args.data is None:
        raise ConfigError("give a MODEL and --data SOURCE (or --demo)")
    from quantlens.compare import compare
    from quantlens.report.console import delayed_progress, print_compare

    gates = _gates(args)
    console = make_console()
    status_console = make_console(stderr=True)
    with delayed_progress(None, "evaluating", status_console) as advance:
        data = _data(args, args.data)
        result = compare(
            args.model, data, modes=args.modes, calibration=_data(args, args.calibration),
            calibration_samples=args.calibration_samples, max_drop=args.max_drop,
            out_dir=args.out or COMPARE_OUT, prefer=args.prefer,
            allow_io_change=args.allow_io_change, extra=args.extra,
            options=_eval_options(args), progress=advance,
            status=_status_printer(),
        )  # fmt: skip
    print_compare(result, console)
    return _finish(args, result, console, gates)


def _cmd_diagnose(args: argparse.Namespace) -> int:

    from quantlens.compare import default_calibration
    from quantlens.diagnose import diagnose, diagnose_source
    from quantlens.report.console import (
        delayed_progress,
        make_console,
        print_diagnosis,
        print_suggestion,
    )

    _gates(args)
    if args.node_data:
        from quantlens.files import check_report_paths
        from quantlens.report.node_data import FILES

        if "," in args.node_data:
            raise ConfigError(
                f"--node-data {args.node_data}: Model Explorer splits its "
                "--node_data_paths at commas; give a directory without one"
            )
        check_report_paths({f"node-data {f}": os.path.join(args.node_data, f) for f in FILES},
                           force=args.force, mkdir=True)  # fmt: skip
    constants = dict(args.const)
    if constants and args.suggest:
        raise ConfigError("--suggest does not take --const yet: give every input in the data "
                          "(an .npz array per input; one value serves every sample)")  # fmt: skip
    console = make_console()
    status = make_console(stderr=True)
    data = _data(args, args.data)
    calibration = _data(args, args.calibration) or default_calibration(data)
    stderr = make_console(stderr=True)
    with delayed_progress(args.samples, "diagnosing", stderr) as advance:
        if args.quant_model is None:
            result = diagnose_source(
                args.float_model, data, mode=args.mode or "int8", calibration=calibration,
                calibration_samples=args.calibration_samples, out_dir=args.out,
                samples=args.samples, progress=advance, status=_status_printer(),
                constants=constants,
            )  # fmt: skip
        else:
            result = diagnose(args.float_model, args.quant_model, data, samples=args.samples,
                              progress=advance, constants=constants)  # fmt: skip
    print_diagnosis(result, args.top, console)
    if args.suggest:
        from quantlens.diagnose.suggest import suggest_from_source

        result = suggest_from_source(
            result, args.float_model, data,
            mode=args.mode or ("int8" if args.quant_model is None else None),
            calibration=calibration, calibration_samples=args.calibration_samples,
            max_drop=args.max_drop, budget_metric=args.budget_metric, out_dir=args.out,
            max_evaluations=args.max_evaluations,
            status=lambda text: status.print(visible(text), style="dim", markup=False)
            if status.is_terminal
            else None,
        )  # fmt: skip
        assert result.suggestion is not None
        print_suggestion(result.suggestion, console)
    return _finish(args, result, console, [])


def _cmd_kernels(args: argparse.Namespace) -> int:
    from quantlens.kernel_check import check_kernels
    from quantlens.report.console import delayed_progress, make_console, print_kernels

    gates = _gates(args)
    console = make_console()
    stderr = make_console(stderr=True)
    data = _data(args, args.data)
    runs = 2 if args.reference else 1
    with delayed_progress(args.samples * runs, "running every kernel path", stderr) as advance:
        result = check_kernels(args.model, data, reference=args.reference, samples=args.samples,
                               batch_size=args.batch_size, num_threads=args.threads,
                               progress=advance, status=_status_printer())  # fmt: skip
    print_kernels(result, console)
    return _finish(args, result, console, gates)


def _cmd_check(args: argparse.Namespace) -> int:
    from quantlens.files import read_report
    from quantlens.gates import check_gates, describe_failure
    from quantlens.report.console import make_console, view_table
    from quantlens.report.text import term
    from quantlens.report.views import gates_view

    gates = _gates(args, outputs=False)  # check reads a report; it writes none
    console = make_console()
    outcomes = check_gates(gates, read_report(args.report))
    console.print(view_table(gates_view([o.to_dict() for o in outcomes]), console.width))
    failed = [o for o in outcomes if o.failed]
    for o in failed:
        console.print(f"[bold red]gate failed:[/] {term(describe_failure(o, gates), 2000)}")
    return 1 if failed else EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from quantlens.diff import diff_reports
    from quantlens.files import read_report
    from quantlens.gates import check_gates, describe_failure
    from quantlens.report.console import make_console, print_diff
    from quantlens.report.text import term

    gates = _gates(args, outputs=False)
    console = make_console()
    new = read_report(args.new)
    rows, only_old, only_new = diff_reports(
        read_report(args.old), new, threshold=args.threshold,
        latency_threshold=args.latency_threshold,
    )  # fmt: skip
    print_diff(rows, only_old, only_new, console)
    failed = [o for o in check_gates(gates, new) if o.failed]
    for o in failed:
        console.print(f"[bold red]gate failed:[/] {term(describe_failure(o, gates), 2000)}")
    return 1 if failed or any(r.regression for r in rows) else EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    from quantlens.files import write_json
    from quantlens.models.loading import load_model
    from quantlens.report.console import print_model_info

    info = load_model(args.model).info()
    print_model_info(info)
    if args.json:
        write_json(info.to_dict(), args.json)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from quantlens.demo import run_demo

    run_demo(args.out)
    return EXIT_OK


def _tflite_files(args: argparse.Namespace) -> list[str]:
    """The existing .tflite files named on the command line, in order."""
    given = [v for value in vars(args).values()
             for v in (value if isinstance(value, list) else [value])]  # fmt: skip
    return [v for v in given if isinstance(v, str) and v.lower().endswith(".tflite")
            and os.path.isfile(v)]  # fmt: skip


#: Commands that open model files: the crash-containment child starts with them.
_LOADS_MODELS = frozenset(
    ("evaluate", "bench", "quantize", "compare", "diagnose", "kernels", "check", "info", "demo")
)

COMMANDS = {
    "evaluate": _cmd_evaluate,
    "bench": _cmd_bench,
    "quantize": _cmd_quantize,
    "compare": _cmd_compare,
    "diagnose": _cmd_diagnose,
    "kernels": _cmd_kernels,
    "check": _cmd_check,
    "diff": _cmd_diff,
    "info": _cmd_info,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv``; returns the exit code."""
    from quantlens.config import merge_argv

    parser = build_parser()
    try:
        tokens = merge_argv(sys.argv[1:] if argv is None else argv, parser)
    except QuantlensError as exc:
        print(_error_line(str(exc)), file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        args = parser.parse_args(tokens)
    except SystemExit as exc:  # --help (0), or an argument error already printed (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    previous = _on_sigterm()
    if args.command in _LOADS_MODELS:
        from quantlens.models import containment

        # the crash-containment child starts, and checks the command line's .tflite files,
        # while the rest is imported
        containment.prestart(_tflite_files(args))
    from quantlens.models.base import trusted_models

    try:
        _check_bounds(args)
        from quantlens.report.console import wide_tables

        with (
            trusted_models(getattr(args, "trust_model", False)),
            wide_tables(getattr(args, "wide", False)),
        ):
            return COMMANDS[args.command](args)
    except QuantlensError as exc:
        print(_error_line(str(exc)), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        print("quantlens: interrupted before the run finished; no report was written",
              file=sys.stderr)  # fmt: skip
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: temporary files cleaned up, no report written."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def _on_sigterm() -> Any:
    """Turn SIGTERM into _Terminated while a command runs; the previous handler (None when
    not in the main thread, where no handler can be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def run() -> None:
    """Console-script entry point."""
    from quantlens._process import one_blas_thread

    one_blas_thread()  # before anything imports NumPy
    code = main()
    # The command's garbage is collected now, finalizers run; what is still reachable lives
    # until the process ends, and the interpreter's own collections at exit need not walk it
    # (every imported module's objects: 40 ms of teardown after an evaluation, 13 ms so).
    import gc

    gc.collect()
    gc.freeze()
    sys.exit(code)
