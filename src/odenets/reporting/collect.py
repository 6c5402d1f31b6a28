"""Committed run records: a budget's finished runs, one compact JSON each in
src/odenets/reporting/reproduced/<budget>/ (`make results`, scripts/collect_results.py).

A record is the run's result.json (overrides, seed, config, metrics, per-epoch history, provenance: commit,
date, machine, wall time) with, for the sine task, its last free run inline (HeunNet Fig. 8); checkpoints and
logs stay behind. Stale runs (code changed since they ran) are not collected, nor runs made from a tree with
uncommitted changes under src/ or conf/ (a reader could not check that code out) unless `allow_dirty`.
Committed records that a current run of the same experiment supersedes are removed.

A record holds nothing that only the training machine can read (`portable`): every absolute path in it (a
value, or the value of a `key=value` override) is stored relative to the run's project
(`config.paths.root_dir`, which becomes "."), or left out (null, or the override dropped) where it lies
outside the project; the host name is dropped (the CPU model, cores and threads stay). Neither the fingerprint
nor `comparison_key` reads paths or loggers (`odenets.config.NON_DEFINING`), so no number and no key changes.
A run's own result.json keeps its absolute paths: `odenets-eval` reads its data from them.
`write_record` is the one writer of committed records; collecting rewrites older records through it once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from odenets.errors import ConfigError, write_error
from odenets.fileio import atomic_open
from odenets.provenance import dirty_code
from odenets.reporting.figures.curves import latest_generated
from odenets.reporting.index import experiment_key
from odenets.reporting.rerun import record_overrides
from odenets.reporting.staleness import stale_modules
from odenets.results import comparison_key, get, load_runs

# what only this machine or this process knows: where a record was read from, the sweep it ran in, staleness
LOCAL_KEYS = ("run_dir", "sweep_id", "stale_modules")
COLLECTED = ("completed", "diverged")


# --------------------------------------------------------------------------- one record
def _relative(value: str, root: PurePosixPath | None) -> str | None:
    path = PurePosixPath(value)
    return path.relative_to(root).as_posix() if root is not None and path.is_relative_to(root) else None


def _paths(node, root: PurePosixPath | None):
    if isinstance(node, dict):
        return {k: _paths(v, root) for k, v in node.items()}
    if isinstance(node, list):
        out = []
        for item in node:
            key, sep, value = item.partition("=") if isinstance(item, str) else ("", "", "")
            if sep and value.startswith("/"):  # an override naming a path
                if (kept := _relative(value, root)) is not None:
                    out.append(f"{key}={kept}")
            else:
                out.append(_paths(item, root))
        return out
    return _relative(node, root) if isinstance(node, str) and node.startswith("/") else node


def portable(record: dict) -> dict:
    """`record` without what only the training machine can read (see the module docstring): paths relative to
    its project, paths outside it and the host name left out, the keys only this process knows dropped."""
    root = get(record, "config.paths.root_dir")
    root = PurePosixPath(root) if isinstance(root, str) and root.startswith("/") else None
    out = _paths({k: v for k, v in record.items() if k not in LOCAL_KEYS}, root)
    for entry in (out, *(out.get("evaluations") or [])):
        if isinstance(entry.get("device"), dict):
            entry["device"] = {k: v for k, v in entry["device"].items() if k != "host"}
    return out


def record_text(record: dict) -> str:
    """A committed record as stored: `portable`, compact JSON on one line."""
    return json.dumps(portable(record), separators=(",", ":")) + "\n"


def write_record(out_dir: str | Path, record: dict) -> Path:
    """Write `record` to `<out_dir>/<run_name>.json` (`record_text`, atomically); the path written."""
    return _write(Path(out_dir) / f"{record['run_name']}.json", record)


def _write(path: Path, record: dict) -> Path:
    with atomic_open(path, what="record") as f:
        f.write(record_text(record))
    return path


def compact(run: dict) -> dict:
    """A run's record for committing: its result.json with its last free run inline (sine task)."""
    record = dict(run)
    wave = latest_generated(run)
    if wave is not None:
        record["generated"] = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in wave.items()}
    return record


# --------------------------------------------------------------------------- a budget's records
def key_today(record: dict) -> str:
    """The experiment a stale record's overrides name under today's config: a config key added since (a new
    option at its default) changes `comparison_key` but not the experiment. Its own key where the overrides
    no longer compose. A record whose overrides could run code or read outside conf/ is refused (`ConfigError`)."""
    record_overrides(record)
    try:
        return experiment_key(record["overrides"])
    except (KeyError, HydraException, OmegaConfBaseException):
        return comparison_key(record["config"], ())


def read_record(path: Path) -> dict:
    """A committed record; a file that is not one is bad input (`ConfigError`) naming it."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a readable run record ({e})") from e
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ConfigError(f"{path} is not a run record (a JSON object with a config)")
    return record


def prune_superseded(out: Path, budget: str) -> int:
    """Remove the stale records under `out` whose experiment has a current record; how many."""
    current, stale = set(), defaultdict(list)
    for path in out.glob("*.json"):
        record = read_record(path)
        if get(record, "config.budget.name") == budget and record.get("status") in COLLECTED:
            if stale_modules(record):
                stale[key_today(record)].append(path)
            else:
                current.add(comparison_key(record["config"], ()))
    superseded = [path for key in current for path in stale.get(key, ())]
    for path in superseded:
        path.unlink()
    return len(superseded)


def make_portable(out: Path) -> int:
    """Rewrite the records under `out` that are not yet as `write_record` writes them; how many."""
    rewritten = 0
    for path in sorted(out.glob("*.json")):
        record = read_record(path)
        if record_text(record) != path.read_text():
            _write(path, record)
            rewritten += 1
    return rewritten


@dataclass(frozen=True)
class Collected:
    written: int
    stale: int  # stale runs not collected
    dirty: int  # runs of uncommitted code not collected
    pruned: int  # superseded stale records removed
    rewritten: int  # older records made portable

    def summary(self, budget: str, out: Path) -> str:
        said = [f"{self.written} run(s) of budget {budget} written to {out}"]
        said += [f"{self.pruned} superseded stale record(s) removed"] if self.pruned else []
        said += [f"{self.stale} stale run(s) skipped"] if self.stale else []
        said += [f"{self.dirty} run(s) of uncommitted code under src/ or conf/ skipped (--allow-dirty keeps them)"] \
            if self.dirty else []
        said += [f"{self.rewritten} older record(s) rewritten with portable paths"] if self.rewritten else []
        return "; ".join(said)


def collect(runs: str | Path, budget: str, out: str | Path, allow_dirty: bool = False) -> Collected:
    """Write the records of `budget`'s finished runs under `runs` to `out`, remove the stale records they
    supersede and make the older ones portable."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e) or e from e
    written = stale = dirty = 0
    for run in load_runs(runs):
        if get(run, "config.budget.name") != budget or run.get("status") not in COLLECTED:
            continue
        if stale_modules(run):
            stale += 1
        elif dirty_code(run) and not allow_dirty:
            dirty += 1
        else:
            write_record(out, compact(run))
            written += 1
    pruned = prune_superseded(out, budget)
    return Collected(written, stale, dirty, pruned, make_portable(out))
