"""Where a number comes from: the code, packages, device and data behind a run (`result.json`).

* `code`: the git commit of the checkout the package runs from (None for an installed wheel),
  whether its tracked files differed from that commit (`dirty`) and a digest of that difference,
  plus `modules`: a digest of every odenets module the run imported. A module's digest is taken
  from its syntax tree without docstrings, so comments and docstrings do not count as a change.
* `packages`: versions of the libraries that can change results; `device`: CPU model and cores, or
  GPU names; `data`: dataset, split sizes and a digest of the arrays trained and tested on.

A stored result is *stale* when the code that computed it has changed since: some module it imported
now has another digest, or is gone (`stale_modules`). Modules that only run, check and record a run
(`BOOKKEEPING`: the entry point, the run's life cycle, validation, result files, provenance itself) do
not count: changing how a number is recorded does not change the number. Tables leave stale cells
out unless asked (`scripts/tables.py --allow-stale`), and mark them when they show them.
"""

from __future__ import annotations

import ast
import hashlib
import os
import platform
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "torchdiffeq", "wfdb", "numpy")
# Modules that run, check and record a run without changing what it computes (see the module docstring).
BOOKKEEPING = frozenset({"odenets.train", "odenets.evaluate", "odenets.run.lifecycle", "odenets.run.validation",
                         "odenets.run.lock", "odenets.run.preemption", "odenets.run.checkpoints",
                         "odenets.results", "odenets.errors", "odenets.fileio", "odenets.provenance"})


# --------------------------------------------------------------------------- code
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version() -> dict:
    """The commit, dirty flag, the tracked files that differ from the commit (`dirty_paths`) and a digest of the
    difference."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "dirty_paths": None, "diff_sha256": None}
    diff = _git("diff", "HEAD") or ""
    paths = (_git("diff", "--name-only", "HEAD") or "").split()
    return {"commit": commit.strip(), "dirty": bool(diff), "dirty_paths": paths,
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


COMPUTING_PATHS = ("src/", "conf/", "train.py")  # what a run's numbers can depend on


def dirty_code(record: dict) -> list[str]:
    """The uncommitted changes a record's numbers could depend on: its tree's dirty paths under src/ or conf/
    (all of them, unknown, for a dirty record made before paths were recorded); [] when clean."""
    code = record.get("code") or {}
    if not code.get("dirty"):
        return []
    paths = code.get("dirty_paths")
    return ["(dirty paths not recorded)"] if paths is None else [p for p in paths if p.startswith(COMPUTING_PATHS)]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


# C++ literals (kept as they are), or a run of whitespace and comments between two tokens
_CPP_GAP = re.compile(r'("(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')|(?:\s|//[^\n]*|/\*.*?\*/)+', re.S)


def _cpp_tokens(source: str) -> str:
    """C++ source without comments, and without whitespace except one space where two tokens would run together
    (two names or numbers, `- -`, `< <`, ...): re-indenting, re-wrapping or commenting it changes nothing."""
    def gap(m: re.Match) -> str:
        if m.group(1):
            return m.group(1)
        around = source[m.start() - 1:m.start()] + source[m.end():m.end() + 1]
        return " " if re.fullmatch(r"\w\w|([-+&|<>])\1", around) else ""
    return _CPP_GAP.sub(gap, source)


@cache
def _digest_cached(path: str, mtime_ns: int, size: int, native_mtime_ns: int | None) -> str:
    code = ast.dump(_without_docstrings(ast.parse(Path(path).read_text())))
    if native_mtime_ns is not None:  # its C++ source, as tokens
        code += _cpp_tokens(Path(path).with_suffix(".cpp").read_text())
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def module_digest(path: str | Path) -> str | None:
    """Digest of a module's code (docstrings and comments excluded), and of the C++ source of the same name
    that it compiles if there is one (`fused_rnn.py` + `fused_rnn.cpp`); None if the file is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    native = Path(path).with_suffix(".cpp")
    native_mtime = native.stat().st_mtime_ns if native.is_file() else None
    return _digest_cached(str(path), st.st_mtime_ns, st.st_size, native_mtime)


def module_path(name: str) -> Path:
    """The source file of odenets module `name` in this installation."""
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"


def imported_modules() -> dict[str, str]:
    """Digest of every odenets module imported by this process, by module name."""
    out = {}
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name == "odenets" or name.startswith("odenets.")) and file and Path(file).suffix == ".py":
            digest = module_digest(file)
            if digest:
                out[name] = digest
    return out


def odenets_imports(name: str) -> frozenset[str]:
    """The odenets modules that module `name` imports, read from its code, with their parent packages."""
    path = module_path(name)
    try:
        return _imports_cached(str(path), os.stat(path).st_mtime_ns)
    except OSError:  # gone
        return frozenset()


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


REGISTRY = "odenets.models"  # imports every model family, so that they register themselves


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


def stale_modules(record: dict) -> list[str]:
    """Modules the run depends on (`run_dependencies`) whose code differs now (or that are gone); [] for a
    current run. A record without module digests (written before they were recorded) counts as stale."""
    modules = (record.get("code") or {}).get("modules")
    if not modules:
        return ["(no code digests recorded)"]
    depends = run_dependencies(record)
    return [name for name, digest in modules.items()
            if name in depends and name not in BOOKKEEPING and module_digest(module_path(name)) != digest]


# --------------------------------------------------------------------------- packages, device, data
def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device(accelerator: str) -> dict:
    """The hardware a run used: GPU names and count for a GPU run, else the CPU model and cores."""
    info = {"host": platform.node(), "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 (first 16 hex digits) of the tensors' values, dtypes and shapes."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def data_identity(datamodule) -> dict:
    """Dataset name, sizes of the splits trained and tested on, and a digest of their arrays."""
    train, test = datamodule.train, datamodule.test
    return {"dataset": datamodule.name, "train_samples": len(train), "test_samples": len(test),
            "sha256": tensor_digest(train.x, train.y, test.x, test.y)}


def provenance(accelerator: str, start: dict | None = None) -> dict:
    """Code, packages and device. Taken when a run starts (its code is imported by then) and again when it
    ends: `start`'s values win, modules imported later are added."""
    now = {"code": {**code_version(), "modules": imported_modules()}, "packages": package_versions(),
           "device": device(accelerator)}
    if start is None:
        return now
    return {**now, **start, "code": {**now["code"], **start["code"],
                                     "modules": {**now["code"]["modules"], **start["code"]["modules"]}}}
