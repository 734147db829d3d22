"""Model Explorer's node-data format, as ai-edge-model-explorer 0.1.34 defines it
(``model_explorer/node_data_builder.py``: ModelNodeData -> GraphNodeData -> NodeDataResult,
ThresholdItem, GradientItem) and its web app colours it
(``node_data_provider_extension_service.ts``: the first threshold with ``value <= threshold``
gives the colour; a gradient maps the least value to stop 0 and the most to stop 1).

The package itself is not a test dependency (its graph adapter is a 128 MB wheel); this is
its structure, field by field, checked strictly: no unknown field, every type as declared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

_GRAPH_FIELDS = {
    "results": dict, "name": str, "thresholds": list, "gradient": list,
    "hideInAggregatedStatsTable": bool, "hideInChildrenStatsTable": bool,
    "hideAggregatedStats": list, "showExpandedSummaryOnGroupNode": bool,
    "showLabelCountColumnsInChildrenStatsTable": bool,
}  # fmt: skip
_RESULT_FIELDS = {"value": (int, float), "bgColor": str, "textColor": str}
_THRESHOLD_FIELDS = {"value": (int, float), "bgColor": str, "textColor": str}
_GRADIENT_FIELDS = {"stop": (int, float), "bgColor": str, "textColor": str}


def _strict(obj: Any, fields: dict[str, Any], required: set[str], where: str) -> None:
    assert isinstance(obj, dict), f"{where}: not an object"
    unknown = set(obj) - set(fields)
    assert not unknown, f"{where}: fields Model Explorer does not know: {unknown}"
    missing = required - set(obj)
    assert not missing, f"{where}: missing {missing}"
    for k, v in obj.items():
        want = fields[k]
        ok = (
            isinstance(v, bool) if want is bool else isinstance(v, want) and not isinstance(v, bool)
        )
        assert ok, f"{where}.{k}: {type(v).__name__}"
        if isinstance(v, float):
            assert math.isfinite(v), f"{where}.{k} is not finite (JSON.parse would fail)"


def read_model_node_data(path: Path) -> dict[str, dict[str, Any]]:
    """A ModelNodeData file (graph id -> GraphNodeData), checked against the format."""
    text = path.read_text()
    data = json.loads(text, parse_constant=_not_json)
    assert isinstance(data, dict) and data, f"{path}: not a graph id -> node data object"
    assert "results" not in data, f"{path}: a single GraphNodeData, not keyed by graph id"
    for graph_id, graph in data.items():
        _strict(graph, _GRAPH_FIELDS, {"results"}, f"{path.name}[{graph_id}]")
        for key, result in graph["results"].items():
            _strict(result, _RESULT_FIELDS, {"value"}, f"{path.name}[{graph_id}][{key}]")
        for t in graph.get("thresholds", []):
            _strict(t, _THRESHOLD_FIELDS, {"value", "bgColor"}, f"{path.name} threshold")
        stops = [g["stop"] for g in graph.get("gradient", [])]
        for g in graph.get("gradient", []):
            _strict(g, _GRADIENT_FIELDS, {"stop"}, f"{path.name} gradient")
        if stops:
            assert 0 in stops and 1 in stops, "a gradient needs stops 0 and 1"
        assert graph.get("thresholds") or stops, f"{path.name}: nothing says how to colour"
    return data


def colour(graph: dict[str, Any], key: str) -> str:
    """The background Model Explorer gives the node ``key`` (its own colour, else by the
    thresholds)."""
    if "bgColor" in graph["results"][key]:
        return str(graph["results"][key]["bgColor"])
    value = graph["results"][key]["value"]
    for t in graph.get("thresholds", []):
        if value <= t["value"]:
            return str(t["bgColor"])
    return "transparent"


def _not_json(constant: str) -> Any:
    raise AssertionError(f"{constant} is not JSON (the web app's JSON.parse refuses it)")
