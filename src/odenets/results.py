"""Run records: `result.json`, written atomically, read back, and compared.

`result.json` is what every table and figure is built from. Keys: `config` (resolved),
`fingerprint`, `run_name`, `overrides` (as typed), `status` (completed | diverged | failed | running),
`params`, `metrics` (`final`, `best` over epochs, `higher_is_better` per metric, and what the task
adds, e.g. the confusion matrix), `epochs`, `wall_time_s`, `history` (one entry per epoch: metrics,
learning rate, cumulative training seconds), `diverged_at_step`, `error`, timestamps, and the
provenance: `code`, `packages`, `device`, `data` (`odenets.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from odenets.config import defining_config
from odenets.fileio import atomic_open

if TYPE_CHECKING:
    import pandas

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


def frame(*roots: str | Path) -> pandas.DataFrame:
    """One pandas row per run under `roots` (default: outputs/runs and the committed records): run name and
    directory, status, dataset, model, scheme, budget, seed, the overrides as typed (one `override.<key>` column
    each), final and best metrics (`final.test/acc`, `best.test/acc`, ...), epochs, wall time, commit, whether the
    tree was dirty, and whether the run is stale (code it depends on changed since)."""
    import pandas

    from odenets.provenance import stale_modules

    rows = []
    for run in load_runs(*(roots or RUN_ROOTS)):
        config = run["config"]
        row = {"run_name": run.get("run_name"), "run_dir": run["run_dir"], "status": run.get("status"),
               "dataset": get(config, "dataset.name"), "model": get(config, "model.name"),
               "scheme": get(config, "scheme.name") if get(config, "model.scheme") else None,
               "budget": get(config, "budget.name"), "seed": config.get("seed"), "epochs": run.get("epochs"),
               "wall_time_s": run.get("wall_time_s"), "commit": (get(run, "code.commit") or "")[:7] or None,
               "dirty": get(run, "code.dirty"), "stale": bool(stale_modules(run))}
        row.update({f"override.{o.split('=', 1)[0]}": o.split("=", 1)[1] for o in run.get("overrides") or []
                    if "=" in o})
        for which in ("final", "best"):
            row.update({f"{which}.{k}": v for k, v in (get(run, f"metrics.{which}") or {}).items()
                        if isinstance(v, (int, float))})
        rows.append(row)
    return pandas.DataFrame(rows)


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


def best_of(history: list[dict], higher_is_better: dict[str, bool]) -> dict[str, float]:
    """Best value of every metric over epochs, in the direction its task declares (lower where undeclared)."""
    best: dict[str, float] = {}
    for entry in history:
        for key, value in entry.items():
            if "/" not in key or key.startswith("time/") or value is None:
                continue
            higher = higher_is_better.get(key, False)
            if key not in best or (value > best[key] if higher else value < best[key]):
                best[key] = value
    return best


# HO-ResNet Table 4 / Fig. 13: training accuracy thresholds whose time to reach is compared with Euler's.
SPEED_THRESHOLDS = {"speedup_080": 0.80, "speedup_085": 0.85}


def time_to_accuracy(history: Sequence[dict], threshold: float, key: str = "train/acc") -> float | None:
    """Training seconds (`time/train_s`) until `key` first reaches `threshold`, or None if it never does.

    History entries are per epoch: the epoch's mean accuracy, stamped at the epoch's end with the
    cumulative training time (validation excluded). Within the epoch where the threshold is crossed,
    accuracy is taken as linear in time between the previous epoch's end and this one's; before the
    first epoch the point is (0 s, accuracy 0).
    """
    prev_t, prev_acc = 0.0, 0.0
    for entry in history:
        t, acc = entry.get("time/train_s"), entry.get(key)
        if t is None or acc is None or not (math.isfinite(t) and math.isfinite(acc)):
            continue
        if acc >= threshold:
            return prev_t + (threshold - prev_acc) / (acc - prev_acc) * (t - prev_t)
        prev_t, prev_acc = t, acc
    return None


def commits(runs: Sequence[dict], label: bool = True) -> str:
    """The commits a group of runs ran at, short ("commit 1a2b3c4" or "commits 1a2b3c4, 5d6e7f8"; "+dirty" when
    the tree had uncommitted changes under src/ or conf/; without the word "commit(s)" unless `label`)."""
    from odenets.provenance import dirty_code

    names = sorted({(get(r, "code.commit") or "no git")[:7] + ("+dirty" if dirty_code(r) else "") for r in runs})
    prefix = ("commit " if len(names) == 1 else "commits ") if label else ""
    return prefix + ", ".join(names)


def scheme_key(config: dict) -> str:
    """The conf/scheme name of a run: `rk8_adaptive` for RK-8 with a learned step."""
    name = get(config, "scheme.name")
    return f"{name}_adaptive" if name == "rk8" and get(config, "scheme.learn_h") else name


def speedup_over_euler(seconds: dict[str, tuple[str, float | None]]) -> dict[str, float | None]:
    """label -> (scheme, seconds to a threshold) to label -> Euler's seconds over these (HO-ResNet Table 4):
    the one rule tables and figures use; Euler is the entry whose scheme is `euler`."""
    euler = next((t for scheme, t in seconds.values() if scheme == "euler"), None)
    return {label: euler / t if t and euler else None for label, (_, t) in seconds.items()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
