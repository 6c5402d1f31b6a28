"""Where a number comes from: the code, packages, device and data behind a run (`result.json`).

* `code`: the git commit of the checkout the package runs from (None for an installed wheel),
  whether its tracked files differed from that commit (`dirty`) and a digest of that difference,
  plus `modules`: a digest of every odenets module the run imported. A module's digest is taken
  from its syntax tree without docstrings, so comments and docstrings do not count as a change.
* `packages`: versions of the libraries that can change results; `environment`: every installed distribution
  (`name==version`, sorted, names as requirements.lock spells them) and the SHA-256 of that list, so that the
  whole environment behind a number can be rebuilt (`make install-locked` installs the committed records' one);
  `device`: CPU model and cores, or GPU names; `data`: dataset, split sizes and a digest of the arrays trained
  and tested on.

Whether a stored result is still current (stale: the code it depends on changed since) is judged later,
from these digests, by `odenets.reporting.staleness`. Tables leave stale cells out unless asked
(`scripts/tables.py --allow-stale`), and mark them when they show them.
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
from packaging.utils import canonicalize_name

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "torchdiffeq", "wfdb", "numpy")
BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)


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


# --------------------------------------------------------------------------- packages, device, data
def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def installed_distributions() -> tuple[str, ...]:
    """Every distribution this interpreter can import from, as sorted `name==version` (normalised names); read
    once per process (each METADATA file is parsed)."""
    found = set()
    for dist in metadata.distributions():
        meta = dist.metadata
        if meta["Name"]:
            found.add(f"{canonicalize_name(meta['Name'])}=={meta['Version']}")
    return tuple(sorted(found))


def environment() -> dict:
    """The installed distributions and the SHA-256 of their list (one per line): equal digest, equal environment."""
    names = installed_distributions()
    return {"sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(), "distributions": list(names)}


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of `/proc/cpuinfo` ({} where there is none): the one reader of the CPU's
    identity."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in lines:
        if not line.strip() and info:
            break
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`), else what `platform` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# The instruction sets BLAS, oneDNN and -march=native code choose their kernels by, so how their floats round
KERNEL_FLAGS = re.compile(r"(avx|amx|fma|sse4|asimd|sve)\w*|f16c|sme\d*")


def cpu_kind() -> dict:
    """What decides how this CPU's float kernels round: architecture, vendor, family, model and the kernel
    instruction-set flags (`KERNEL_FLAGS`). Float results of one code can be compared exactly only within one
    kind (`odenets.reporting.revalidate`)."""
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("Features") or "").split()
    return {"arch": platform.machine(), "vendor": info.get("vendor_id") or info.get("CPU implementer"),
            "family": info.get("cpu family") or info.get("CPU architecture"),
            "model": info.get("model") or info.get("CPU part"),
            "flags": sorted(f for f in flags if KERNEL_FLAGS.fullmatch(f))}


def device(accelerator: str) -> dict:
    """The hardware a run used: the CPU's model, kind (`cpu_kind`) and cores, and GPU names and count for a GPU
    run."""
    info = {"host": platform.node(), "cpu": cpu_model(), "cpu_kind": cpu_kind(), "cpu_cores": os.cpu_count(),
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
    """Dataset name, sizes of the splits trained, validated (only when there is a validation split) and tested
    on, and a digest of their arrays."""
    train, val, test = datamodule.train, datamodule.val, datamodule.test
    if val is None:
        return {"dataset": datamodule.name, "train_samples": len(train), "test_samples": len(test),
                "sha256": tensor_digest(train.x, train.y, test.x, test.y)}
    return {"dataset": datamodule.name, "train_samples": len(train), "val_samples": len(val),
            "test_samples": len(test), "sha256": tensor_digest(train.x, train.y, val.x, val.y, test.x, test.y)}


def provenance(accelerator: str, start: dict | None = None) -> dict:
    """Code, packages, environment and device. Taken when a run starts (its code is imported by then) and again when it
    ends: `start`'s values win, modules imported later are added."""
    now = {"code": {**code_version(), "modules": imported_modules()}, "packages": package_versions(),
           "environment": environment(), "device": device(accelerator)}
    if start is None:
        return now
    return {**now, **start, "code": {**now["code"], **start["code"],
                                     "modules": {**now["code"]["modules"], **start["code"]["modules"]}}}
