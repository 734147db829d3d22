"""A diagnosis as Model Explorer node data: one overlay per metric that colours the
quantized model's graph, bad layers red.

The files follow the format Model Explorer's ``node_data_builder.ModelNodeData`` writes and
its web app reads (checked against ai-edge-model-explorer 0.1.34 and model-explorer-onnx
0.4.2): ``{"<graph id>": {"name", "results": {"<key>": {"value"}}, "thresholds" |
"gradient"}}``. A ``.tflite`` graph's id is its subgraph's name ("main" when it has none) and
a result's key the output tensor name of the op it colours; an ONNX graph's id is its name
("<main>" when it has none) and a key the node's name (a node without one gets an id that
depends on the onnx-ir version Model Explorer runs, so it is left out). Thresholds are read
in order, the first with ``value <= threshold`` giving the colour.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from quantlens.results import DiagnosisResult, OpRow

RED, ORANGE, YELLOW, GREEN = "#d7301f", "#fc8d59", "#fee08b", "#91cf60"
#: Above every value a file holds: the last threshold's colour covers the rest.
_TOP = 1e30

#: Fidelity in dB (lower is worse): 15 dB is an error of 18% RMS, 35 dB about 2%.
SQNR_THRESHOLDS = ((15.0, RED), (25.0, ORANGE), (35.0, YELLOW), (_TOP, GREEN))
#: Error an op adds (higher is worse): 6 dB doubles the error's amplitude, the bar for where
#: the error starts (``DiagnosisResult.origin``).
ADDED_THRESHOLDS = ((3.0, GREEN), (6.0, YELLOW), (12.0, ORANGE), (_TOP, RED))
#: An op whose output keeps this SQNR is green whatever it adds: the first op after a float
#: input "adds" 15-20 dB by bringing a perfect tensor down to int8's ordinary 40 dB.
FINE_OUTPUT_DB = 35.0
#: Share of an integer tensor's values at the ends of its range.
CLIPPED_THRESHOLDS = ((0.001, GREEN), (0.01, YELLOW), (0.05, ORANGE), (_TOP, RED))
#: Most recovered is worst: white for the least, red for the most.
RECOVERED_GRADIENT = ((0.0, "#ffffff"), (0.5, "#fc8d59"), (1.0, RED))
#: JSON has no infinity: a lossless tensor's SQNR is written as this many dB.
_CAP = 200.0
#: Every file an overlay can be written to.
FILES = ("error_added_db.json", "tensor_sqnr_db.json", "channel_sqnr_worst_db.json",
         "weight_sqnr_db.json", "clipped_fraction.json", "sensitivity.json")  # fmt: skip


@dataclass(frozen=True)
class Overlay:
    """One node-data file: its file name, the title Model Explorer shows, node key -> value,
    and how values are coloured (thresholds, or a gradient from the least to the most)."""

    file: str
    title: str
    values: dict[str, float]
    thresholds: tuple[tuple[float, str], ...] = ()
    gradient: tuple[tuple[float, str], ...] = ()
    colours: dict[str, str] = field(default_factory=dict)  # node key -> colour, over the rest

    def to_dict(self, graph_id: str) -> dict[str, object]:
        graph: dict[str, object] = {
            "name": f"quantlens: {self.title}",
            "results": {
                k: {"value": v, **({"bgColor": self.colours[k]} if k in self.colours else {})}
                for k, v in self.values.items()
            },
        }
        if self.gradient:
            graph["gradient"] = [{"stop": s, "bgColor": c} for s, c in self.gradient]
        else:
            graph["thresholds"] = [{"value": v, "bgColor": c} for v, c in self.thresholds]
        return {graph_id: graph}


def op_key(op: OpRow, node_keys: str) -> str | None:
    """The key Model Explorer knows an op by (None: one it cannot be found by)."""
    if node_keys == "node":
        return op.node or None
    return op.output or None


def overlays(result: DiagnosisResult) -> list[Overlay]:
    """Every overlay a diagnosis has values for, in the order a reader should open them."""
    by_output: dict[str, OpRow] = {}
    for op in result.ops:  # the op computing a value comes before its Q/DQ conversions
        by_output.setdefault(op.output, op)

    def tensor_key(name: str) -> str | None:
        if result.node_keys == "tensor":
            return name or None
        op = by_output.get(name)
        return op_key(op, "node") if op is not None else None

    def keyed(pairs: Iterable[tuple[str | None, float | None]]) -> dict[str, float]:
        return {k: _finite(v) for k, v in pairs if k and v is not None and not math.isnan(v)}

    added = keyed((op_key(o, result.node_keys), o.error_added_db) for o in result.ops)
    fine = {
        key: GREEN
        for o in result.ops
        if (key := op_key(o, result.node_keys)) in added
        and min(o.output_sqnr_db or -math.inf, o.output_channel_sqnr_median_db or -math.inf)
        >= FINE_OUTPUT_DB
    }
    tensor_sqnr = keyed((tensor_key(t.name), t.sqnr_db) for t in result.tensors)
    worst = keyed((tensor_key(t.name), t.channel_sqnr_worst_db) for t in result.tensors)
    clipped = keyed((tensor_key(t.name), t.clipped_fraction) for t in result.tensors)
    weights: dict[str, float] = {}
    for w in result.weights:  # an op's worst weight colours the op
        if 0 <= w.op_index < len(result.ops):
            key = op_key(result.ops[w.op_index], result.node_keys)
            if key is not None:
                weights[key] = min(weights.get(key, math.inf), _finite(w.sqnr_db))
    made = [
        Overlay("error_added_db.json", "error added by the op (dB)", added, ADDED_THRESHOLDS,
                colours=fine),
        Overlay("tensor_sqnr_db.json", "output SQNR (dB)", tensor_sqnr, SQNR_THRESHOLDS),
        Overlay("channel_sqnr_worst_db.json", "worst channel's SQNR (dB)", worst,
                SQNR_THRESHOLDS),
        Overlay("weight_sqnr_db.json", "worst weight's SQNR (dB)", weights, SQNR_THRESHOLDS),
        Overlay("clipped_fraction.json", "share of values clipped", clipped,
                CLIPPED_THRESHOLDS),
    ]  # fmt: skip
    s = result.suggestion
    if s is not None and s.steps:
        base = s.steps[0].drop
        scale = 100.0 if s.accuracy else 1.0
        recovered = keyed(
            (op_key(result.ops[r.op.op_index], result.node_keys), (base - r.drop) * scale)
            for r in s.by_sensitivity
            if r.precision == "float" and 0 <= r.op.op_index < len(result.ops)
        )
        unit = "accuracy points" if s.accuracy else "relative RMSE"
        made.append(Overlay("sensitivity.json", f"{unit} recovered by keeping it in float",
                            recovered, gradient=RECOVERED_GRADIENT))  # fmt: skip
    return [o for o in made if o.values]


def _finite(v: float) -> float:
    return float(min(max(v, -_CAP), _CAP))


def node_data_texts(result: DiagnosisResult, directory: str | os.PathLike[str]) -> dict[Path, str]:
    """Each overlay's path in ``directory`` and its JSON text."""
    return {
        Path(directory) / o.file: json.dumps(o.to_dict(result.graph_id), indent=1) + "\n"
        for o in overlays(result)
    }


def explorer_command(result: DiagnosisResult, paths: Iterable[Path]) -> str:
    """The shell command that opens the quantized model in Model Explorer with the overlays
    (Model Explorer splits ``--node_data_paths`` at commas)."""
    args = ["model-explorer", result.quant_path,
            "--node_data_paths=" + ",".join(str(p) for p in paths)]  # fmt: skip
    if result.node_keys == "node":
        args.append("--extensions=model_explorer_onnx")
    return " ".join(shlex.quote(a) for a in args)
