"""Run records: `result.json`, written atomically, read back, and compared.

`result.json` is what every table and figure is built from. Keys: `config` (resolved),
`fingerprint`, `run_name`, `overrides` (as typed), `status` (completed | diverged | failed | running),
`params`, `metrics` (`final`, `best` over epochs, `higher_is_better` per metric, and what the task
adds, e.g. the confusion matrix; with a validation split also `at_val_best`, below), `epochs`,
`wall_time_s`, `history` (one entry per epoch: metrics, learning rate, cumulative training seconds),
`diverged_at_step`, `error`, timestamps, and the provenance: `code`, `packages`, `device`, `data`
(`odenets.provenance`). A committed record made current again by a rerun also holds `revalidated`
(`revalidations`).

`metrics.at_val_best` (runs with a validation split, `dataset.val_fraction`): the evaluation that `best.ckpt`
holds, chosen on validation (`at_val_best`): the history entry whose `val/<monitor>` is best in its direction,
ties to the earliest, as `{"monitor": "val/acc", "epoch": e, "step": s, "test/acc": ..., "val/acc": ..., ...}`
with every metric logged there. Its `test/*` values are the test results at the validation-best epoch, free of
the selection on the test split that `best` (each metric's best over epochs) makes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from odenets.config import defining_config
from odenets.fileio import atomic_open

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
RESULT_FILE = "result.json"
EVAL_FILE = "eval.json"  # evaluations of a finished run (odenets.evaluate), beside its result.json
# Results a run of each budget produced on the kind of machine its README section names, committed
# one JSON per run (`scripts/collect_results.py`): <budget>/<run_name>.json.
REPRODUCED = Path(__file__).resolve().parent / "reporting" / "reproduced"
RUN_ROOTS = ("outputs/runs", REPRODUCED)  # where tables and figures look for runs by default


def read_result(run_dir: str | Path) -> dict | None:
    """The run's result.json, or None if absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def read_evaluations(run_dir: str | Path) -> list[dict]:
    """The run's eval.json entries (odenets.evaluate), [] if none."""
    try:
        return json.loads((Path(run_dir) / EVAL_FILE).read_text())["evaluations"]
    except (OSError, ValueError, KeyError):
        return []


def write_result(run_dir: str | Path, record: dict[str, Any]) -> None:
    with atomic_open(Path(run_dir) / RESULT_FILE) as f:
        f.write(json.dumps(record, indent=1, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):  # tensors and numpy arrays
        return x.tolist()
    return str(x)


def load_runs(*roots: str | Path) -> list[dict]:
    """Every readable run record under `roots` (any depth) with a config, each with `run_dir` added: the
    `result.json` of run directories (with their eval.json `evaluations`), and the committed
    `<run_name>.json` records of `REPRODUCED`. A run found twice (its directory and its committed
    record) counts once, the most recently finished."""
    runs: dict[str, dict] = {}
    for root in (Path(r) for r in roots if Path(r).is_dir()):
        for path in sorted(root.rglob("*.json")):
            if path.name != RESULT_FILE and not path.resolve().is_relative_to(REPRODUCED):  # REPRODUCED: absolute
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and isinstance(record.get("config"), dict):
                run = {**record, "run_dir": str(path.parent if path.name == RESULT_FILE else path)}
                if path.name == RESULT_FILE:
                    run["evaluations"] = read_evaluations(path.parent)
                key = run.get("fingerprint") or run["run_dir"]
                if key not in runs or str(run.get("finished", "")) > str(runs[key].get("finished", "")):
                    runs[key] = run
    return list(runs.values())


def get(config: dict, dotted: str, default=None):
    """config["a"]["b"] for "a.b", or `default` where a key is missing."""
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _without(node: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest and isinstance(node.get(head), dict):
        _without(node[head], rest)
    elif not rest:
        node.pop(head, None)


def comparison_key(config: dict, varied=()) -> str:
    """A hash of the defining config without the seed and the `varied` keys: equal for runs that one
    table cell or one figure compares (seeds are averaged over, never a reason to split)."""
    defining = defining_config(OmegaConf.create(config))
    for key in ("seed", *varied):
        _without(defining, key)
    return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _better(value: float, than: float, higher: bool) -> bool:
    """Strictly better (so of equal values the earliest stays best)."""
    return value > than if higher else value < than


def best_of(history: list[dict], higher_is_better: dict[str, bool]) -> dict[str, float]:
    """Best value of every metric over epochs, in the direction its task declares (lower where undeclared)."""
    best: dict[str, float] = {}
    for entry in history:
        for key, value in entry.items():
            if "/" not in key or key.startswith("time/") or value is None:
                continue
            if key not in best or _better(value, best[key], higher_is_better.get(key, False)):
                best[key] = value
    return best


def at_val_best(history: list[dict], monitor: str, higher_is_better: dict[str, bool]) -> dict | None:
    """`metrics.at_val_best` (module docstring): the entry of `history` where `monitor` is best, ties to the
    earliest, with `monitor` named; None when no entry has it."""
    best = None
    for entry in history:
        value = entry.get(monitor)
        if value is not None and (best is None or _better(value, best[monitor], higher_is_better.get(monitor, False))):
            best = entry
    return None if best is None else {"monitor": monitor, **best}


def revalidations(record: dict) -> list[dict]:
    """A committed record's well-formed `revalidated` entries, oldest first (`odenets.reporting.revalidate`: a
    rerun on later code reproduced its numbers exactly; `commit`, `date`, `seed`, `epochs`, `whole`, `modules`).
    An entry without modules proves nothing and is left out."""
    entries = record.get("revalidated")
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("modules"), dict) and e["modules"]] \
        if isinstance(entries, list) else []


def commits(runs: Sequence[dict], label: bool = True) -> str:
    """The commits a group of runs ran at, short ("commit 1a2b3c4" or "commits 1a2b3c4, 5d6e7f8"; "+dirty" when
    the tree had uncommitted changes under src/ or conf/; without the word "commit(s)" unless `label`), then the
    commits their latest revalidations ran at ("commit 1a2b3c4, revalidated at 9f8e7d6")."""
    from odenets.provenance import dirty_code

    names = sorted({(get(r, "code.commit") or "no git")[:7] + ("+dirty" if dirty_code(r) else "") for r in runs})
    prefix = ("commit " if len(names) == 1 else "commits ") if label else ""
    again = sorted({str(entries[-1].get("commit") or "no git")[:7] for entries in map(revalidations, runs) if entries})
    return prefix + ", ".join(names) + (f", revalidated at {', '.join(again)}" if again else "")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
