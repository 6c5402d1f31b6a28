"""Every arrow of the import graph points down (issue 27), and measuring has one home.

The package's layers, lowest first. A module may import modules of its own unit (a top-level module or
sub-package) and of units in lower layers, never of a unit in its own layer or above: units of one layer
are independent of each other.

| layer | units | what they are |
|---|---|---|
| 0 | `errors`, `seeding`, `config`, `formatting` | foundations: import no odenets module |
| 1 | `fileio`, `allowed`, `cli` | atomic files; allowed values of config keys (declared by owners); how commands end |
| 2 | `core` | the numerical core: schemes, `RKBlock`, the fused recurrent scan |
| 3 | `data`, `models`, `tasks` | what a run trains |
| 4 | `provenance` | where a number comes from |
| 5 | `results` | run records |
| 6 | `run` | one run's life |
| 7 | `train`, `evaluate`, `perf` | entry points, and measuring (FLOPs, memory, the benchmark) |
| 8 | `diagnose`, `reporting` | a trained run's stability (on `evaluate`'s loading); tables, figures and the report |

Imports are read from the code (`odenets.reporting.staleness.odenets_imports`, which also counts the parent
packages an import runs), function-level imports included; `scripts/` and `hydra_plugins` sit above all.
"""

from __future__ import annotations

import ast
from pathlib import Path

from odenets.provenance import PACKAGE_DIR
from odenets.reporting.staleness import odenets_imports

LAYERS = (
    ("odenets.errors", "odenets.seeding", "odenets.config", "odenets.formatting"),
    ("odenets.fileio", "odenets.allowed", "odenets.cli"),
    ("odenets.core",),
    ("odenets.data", "odenets.models", "odenets.tasks"),
    ("odenets.provenance",),
    ("odenets.results",),
    ("odenets.run",),
    ("odenets.train", "odenets.evaluate", "odenets.perf"),
    ("odenets.diagnose", "odenets.reporting"),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
ROOT = "odenets"  # the package itself: its __init__ imports nothing (checked below), every import runs it


def unit(module: str) -> str | None:
    """The unit of the layer table a module belongs to (None: not in the table)."""
    return next((u for u in LAYER if module == u or module.startswith(u + ".")), None)


def modules() -> list[str]:
    """Every module of the odenets package, by name."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def upward_arrows(graph: dict[str, frozenset[str]]) -> list[str]:
    """The imports of `graph` (module -> modules it imports) that do not point down the layers."""
    bad = []
    for source, targets in graph.items():
        for target in sorted(targets - {ROOT}):
            a, b = unit(source), unit(target)
            if a != b and LAYER[b] >= LAYER[a]:
                bad.append(f"{source} (layer {LAYER[a]}) imports {target} (layer {LAYER[b]})")
    return bad


def test_every_module_has_a_layer():
    assert [m for m in modules() if m != ROOT and unit(m) is None] == []


def test_every_import_points_down():
    graph = {m: odenets_imports(m) for m in modules() if m != ROOT}
    assert odenets_imports(ROOT) == frozenset()
    assert upward_arrows(graph) == []


def test_an_upward_or_sideways_import_is_caught():
    """The arrow this issue removed (the benchmark formatting its tables with reporting's helper), and one
    between the independent units of one layer."""
    assert upward_arrows({"odenets.perf.bench": frozenset({"odenets.reporting.stats", "odenets.reporting"})}) == [
        "odenets.perf.bench (layer 7) imports odenets.reporting (layer 8)",
        "odenets.perf.bench (layer 7) imports odenets.reporting.stats (layer 8)"]
    assert upward_arrows({"odenets.tasks.base": frozenset({"odenets.models.registry"})}) != []
    assert upward_arrows({"odenets.reporting.cells": frozenset({"odenets.perf.measure", "odenets.results"})}) == []


def test_perf_never_imports_reporting():
    assert [(m, t) for m in modules() if unit(m) == "odenets.perf"
            for t in odenets_imports(m) if unit(t) == "odenets.reporting"] == []


def test_imports_are_absolute():
    """A relative import would be an arrow `odenets_imports` does not see."""
    relative = [f"{path.name}:{node.lineno}" for path in PACKAGE_DIR.rglob("*.py")
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


def _importers(name: str) -> list[str]:
    """Modules of the package whose code imports `name` (a module of any package) or something inside it."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == name or n.startswith(name + ".") for n in names):
                found.append(str(path.relative_to(PACKAGE_DIR)))
                break
    return found


def test_flops_and_memory_are_measured_in_one_module():
    for measuring in ("torch.utils.flop_counter", "torch.utils._python_dispatch"):
        assert _importers(measuring) == [str(Path("perf/measure.py"))], measuring


def test_the_cpu_is_named_in_one_place():
    """`provenance.cpu_model` reads the CPU's model name, for run records and the benchmark alike (the fused
    scan reads the CPU's instruction-set flags, another question, for its compiled-code cache)."""
    assert [str(p.relative_to(PACKAGE_DIR)) for p in sorted(PACKAGE_DIR.rglob("*.py"))
            if '"model name"' in p.read_text()] == ["provenance.py"]
