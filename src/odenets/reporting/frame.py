"""Runs as a pandas table, for notebooks: `frame("outputs/runs", "src/odenets/reporting/reproduced/cpu")`."""

from __future__ import annotations

from pathlib import Path

import pandas

from odenets.reporting.staleness import stale_modules
from odenets.results import RUN_ROOTS, get, load_runs


def frame(*roots: str | Path) -> pandas.DataFrame:
    """One pandas row per run under `roots` (default: outputs/runs and the committed records): run name and
    directory, status, dataset, model, scheme, budget, seed, the overrides as typed (one `override.<key>` column
    each), final and best metrics (`final.test/acc`, `best.test/acc`, ...), epochs, wall time, commit, whether the
    tree was dirty, and whether the run is stale (code it depends on changed since)."""
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
