"""Is a stored result still what today's code computes? Judged later, from the module digests its run recorded
(`odenets.provenance`) and today's source.

A record is *current* when the modules its run depends on (`run_dependencies`) have today's digests in one
snapshot known to compute its numbers: the run's own (`code.modules`), or one of its revalidations (each
`revalidated` entry's `modules`: the code a rerun of the experiment reproduced the record's numbers on exactly,
`odenets.reporting.revalidate`). A snapshot counts as a whole: today's code must equal one of them module for
module, never a mix of two, which no run has computed. Otherwise it is *stale* (`stale_modules` names what
differs from the newest snapshot); a record without digests is stale.

Bookkeeping modules (`bookkeeping_modules`) never count: they start, check and record a run without changing
what it computes. A module says so itself, with a top-level `BOOKKEEPING = True` read from its syntax tree, so
the claim sits in the code it is about (a reviewer of that module sees it) rather than in a list kept elsewhere.
A module that is gone today declares nothing, so its runs read stale until revalidated.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from odenets.provenance import PACKAGE_DIR, module_digest
from odenets.results import revalidations

REGISTRY = "odenets.models"  # imports every model family, so that they register themselves
MARKER = "BOOKKEEPING"  # `BOOKKEEPING = True` at a module's top level: a bookkeeping module


# --------------------------------------------------------------------------- the import graph, read from the code
def module_path(name: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """The source file of odenets module `name` in this installation (or in the package at `package_dir`)."""
    base = package_dir.joinpath(*name.split(".")[1:])
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


def _tree(name: str) -> tuple[str, int] | None:
    """The key the parsed-source caches use: path and modification time; None if the module is gone."""
    path = module_path(name)
    try:
        return str(path), os.stat(path).st_mtime_ns
    except OSError:
        return None


def odenets_imports(name: str) -> frozenset[str]:
    """The odenets modules that module `name` imports, read from its code, with their parent packages."""
    key = _tree(name)
    return frozenset() if key is None else _imports_cached(*key)


@cache
def _imports_cached(path: str, mtime_ns: int) -> frozenset[str]:
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_path(f"{node.module}.{alias.name}").is_file()}
    found = {m for m in found if m.split(".")[0] == "odenets"}
    return frozenset(found | {m.rsplit(".", i)[0] for m in found for i in range(1, m.count(".") + 1)})


def _closure(roots: set[str], families: set[str]) -> set[str]:
    """Every module reachable from `roots` by imports, except the registry's imports of `families`."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [m for m in odenets_imports(name) if m not in seen and not (name == REGISTRY and m in families)]
    return seen


def run_dependencies(record: dict) -> set[str]:
    """The modules a run's numbers depend on: those it imported, less the model families it did not build.

    The model registry imports every family, so every run imports all of them and what they import (an
    HO-ResNet run imports the recurrent kernels). Here the registry's imports of families do not count:
    what the run's own family imports (other families included), and what the rest of the code imports,
    does."""
    from odenets.models import MODELS

    imported = set((record.get("code") or {}).get("modules") or {})
    model = ((record.get("config") or {}).get("model") or {}).get("name")
    if model not in MODELS:
        return imported
    families = {fn.__module__ for fn in MODELS.values()}
    through_families = _closure(families, families)
    roots = {m for m in imported if m not in through_families} | {MODELS[model].__module__}
    return imported & _closure(roots, families)


# --------------------------------------------------------------------------- bookkeeping
def is_bookkeeping(name: str) -> bool:
    """Whether odenets module `name` declares itself bookkeeping (`BOOKKEEPING = True` at its top level)."""
    return declares_bookkeeping(module_path(name))


def declares_bookkeeping(path: str | Path) -> bool:
    """Whether the Python file at `path` sets `BOOKKEEPING = True` at its top level (False if it is gone)."""
    try:
        return _declares_cached(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return False


@cache
def _declares_cached(path: str, mtime_ns: int) -> bool:
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MARKER for t in node.targets):
            return isinstance(node.value, ast.Constant) and node.value.value is True
    return False


def bookkeeping_modules() -> frozenset[str]:
    """Every module of the package that declares itself bookkeeping."""
    names = set()
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return frozenset(n for n in names if is_bookkeeping(n))


# --------------------------------------------------------------------------- snapshots and staleness
def _changed(snapshot: Mapping[str, str], depends: set[str] | None = None) -> list[str]:
    """The modules of `snapshot` (name -> digest; only those in `depends` when given) whose code differs today
    or is gone, bookkeeping left out."""
    return [name for name, digest in snapshot.items() if (depends is None or name in depends)
            and module_digest(module_path(name)) != digest and not is_bookkeeping(name)]


def snapshot(record: dict) -> dict[str, str]:
    """The newest code known to compute the record's numbers: its latest revalidation's modules, else the
    digests its run recorded of the modules it depends on; bookkeeping left out."""
    entries = revalidations(record)
    if entries:
        return {m: d for m, d in entries[-1]["modules"].items() if not is_bookkeeping(m)}
    depends = run_dependencies(record)
    modules = (record.get("code") or {}).get("modules") or {}
    return {m: d for m, d in modules.items() if m in depends and not is_bookkeeping(m)}


def stale_modules(record: dict) -> list[str]:
    """[] for a current record (module docstring), else the modules that differ today from its newest snapshot
    (or are gone). A record without module digests (written before they were recorded) counts as stale."""
    modules = (record.get("code") or {}).get("modules")
    if not modules:
        return ["(no code digests recorded)"]
    own = _changed(modules, run_dependencies(record))
    if not own:
        return []
    since = [_changed(entry["modules"]) for entry in revalidations(record)]
    return own if not since else [] if not all(since) else since[-1]
