"""The end of every command: check the gates, write JSON, HTML and Markdown, say what failed."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from quantlens.errors import ConfigError
from quantlens.files import write_text
from quantlens.gates import Gate, check_gates, describe_failure
from quantlens.report.environment import environment
from quantlens.results import BenchResult, DiagnosisResult, EvaluationResult, KernelCheck

Result = EvaluationResult | BenchResult | DiagnosisResult | KernelCheck

EXIT_GATE_FAILED = 1


def render_html(result: Result, env: dict[str, Any], gates: Sequence[dict[str, Any]]) -> str:
    """The HTML report of any result."""
    from quantlens.report import html

    if isinstance(result, EvaluationResult):
        return html.evaluation_html(result, env, gates)
    if isinstance(result, BenchResult):
        return html.bench_html(result, env, gates)
    if isinstance(result, KernelCheck):
        return html.kernels_html(result, env, gates)
    return html.diagnosis_html(result, env)


def render_markdown(result: Result, gates: Sequence[dict[str, Any]]) -> str:
    """The Markdown summary of any result."""
    from quantlens.report import markdown

    if isinstance(result, EvaluationResult):
        return markdown.evaluation_markdown(result, gates)
    if isinstance(result, BenchResult):
        return markdown.bench_markdown(result, gates)
    if isinstance(result, KernelCheck):
        return markdown.kernels_markdown(result, gates)
    return markdown.diagnosis_markdown(result)


def write_outputs(
    result: Result,
    console: Console,
    *,
    gates: Sequence[Gate] = (),
    json_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    node_data_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Check ``gates``, write the requested files, print any violation; returns the exit code
    (0, or 1 when a gate failed). The JSON records the gates and their outcome. A diagnosis
    can also be written as Model Explorer overlays in ``node_data_dir``."""
    data = result.to_dict()
    if gates and isinstance(result, DiagnosisResult):
        raise ConfigError("gates apply to evaluate, compare and bench reports, not a diagnosis")
    checked = (
        check_gates(gates, result) if gates and not isinstance(result, DiagnosisResult) else []
    )
    outcomes = [o.to_dict() for o in checked]
    settings = getattr(result, "settings", {}) or {}
    env = environment(settings)
    data["environment"] = env
    if gates:
        data["gates"] = outcomes
    texts: dict[str | os.PathLike[str], str] = {  # rendered first: all reports or none
        path: render()
        for path, render in (
            (json_path, lambda: json.dumps(data, indent=2, allow_nan=False) + "\n"),
            (html_path, lambda: render_html(result, env, outcomes)),
            (markdown_path, lambda: render_markdown(result, outcomes)),
        )
        if path is not None
    }
    overlays: dict[Path, str] = {}
    if node_data_dir is not None and isinstance(result, DiagnosisResult):
        from quantlens.report.node_data import node_data_texts

        overlays = node_data_texts(result, node_data_dir)
        texts.update(overlays.items())
    written: list[Path] = []
    try:
        for target, text in texts.items():
            written.append(write_text(text, target))
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise
    for done in written:
        if done not in overlays:
            console.print(f"written: {done}")
    if overlays:
        _print_overlays(result, list(overlays), console)
    failed = [o for o in checked if o.failed]
    for o in failed:
        console.print(f"[bold red]gate failed:[/] {describe_failure(o, gates)}")
    if gates and not failed:
        console.print(f"all {len(outcomes)} gate checks passed")
    return EXIT_GATE_FAILED if failed else 0


def _print_overlays(result: Result, paths: list[Path], console: Console) -> None:
    from quantlens.report.node_data import explorer_command
    from quantlens.report.text import term

    assert isinstance(result, DiagnosisResult)
    console.print(f"written: {len(paths)} Model Explorer overlays in {term(str(paths[0].parent))}")
    console.print("open them with:", style="dim")
    # one long line, never wrapped by rich, so that it can be copied whole
    command = explorer_command(result, paths)
    console.print(term(command, limit=len(command)), soft_wrap=True, highlight=False)
