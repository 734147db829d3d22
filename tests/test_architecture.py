"""The package's layers point one way (ARCHITECTURE.md): every import, including those inside
functions, goes to the module's own layer or a lower one, renderers read results only, and
no two modules import each other, directly or around a loop."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "quantlens"

#: Lowest first; a module may import from its own layer or a lower one.
LAYERS = [
    (
        "vocabulary",
        [
            "errors",
            "_quiet",
            "_process",
            "_lazy",
            "results",
            "metric_registry",
            "backends",
            "versions",
        ],
    ),
    ("runtimes and data", ["metrics", "models", "data", "files", "config"]),
    ("engine", ["engine", "quantize", "bench"]),
    ("api", ["evaluation", "compare", "budget", "diagnose", "gates", "diff"]),
    ("renderers", ["report"]),
    ("application", ["cli", "demo", "outputs", "__main__", ""]),
]
#: What a renderer may import besides the other renderers.
RENDERER_IMPORTS = {"results", "metric_registry", "errors", "versions"}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _edges() -> dict[str, set[str]]:
    """Module -> the package modules it imports (names relative to the package)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name if name in mods else None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{f}: a relative import; the package imports by name"
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if n != "quantlens" and not n.startswith("quantlens."):
                    continue
                target = resolve(n.removeprefix("quantlens").removeprefix("."))
                if target is not None and target != m and not m.startswith(target + "."):
                    edges[m].add(target)
    return edges


def _layer(module: str) -> int:
    best, length = None, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = p == "" or module == p or module.startswith(p + ".")
            if hit and len(p) > length:
                best, length = k, len(p)
    assert best is not None, module
    return best


def test_no_import_goes_up_a_layer() -> None:
    upward = []
    for m, targets in _edges().items():
        for t in targets:
            if _layer(t) > _layer(m):
                upward.append(f"{m} ({LAYERS[_layer(m)][0]}) -> {t} ({LAYERS[_layer(t)][0]})")
            renderer = m.startswith("report") and not t.startswith("report")
            if renderer and t.split(".")[0] not in RENDERER_IMPORTS:
                upward.append(f"renderer {m} -> {t}")
    assert not upward, upward


def test_no_import_cycle() -> None:
    edges = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            strong(v)
    assert not cycles, cycles


def test_the_checker_sees_imports_inside_functions() -> None:
    """The evaluation's benchmark is imported inside a function: the graph must hold it."""
    assert "bench" in _edges()["evaluation"]


def test_the_public_api_loads_on_first_use_and_keeps_its_names() -> None:
    # `import quantlens` (as every spawned worker does) loads no runtime, quantizer or
    # benchmark; each public name resolves to its object, and importing the submodule a
    # function is named after does not replace the function
    import subprocess
    import sys

    code = """
import sys
import quantlens
heavy = [m for m in ("quantlens.bench", "quantlens.quantize", "quantlens.diagnose",
                     "quantlens.compare", "numpy", "ai_edge_litert") if m in sys.modules]
assert not heavy, heavy
import quantlens.quantize, quantlens.compare, quantlens.diagnose.core
for name in quantlens.__all__:
    value = getattr(quantlens, name)
    assert not isinstance(value, type(sys)), name
assert quantlens.quantize.__module__ == "quantlens.quantize"
assert quantlens.diagnose.__module__ == "quantlens.diagnose.core"
assert set(dir(quantlens)) >= set(quantlens.__all__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
