"""Commit what a budget's runs produced: one compact JSON per finished run in
src/odenets/reporting/reproduced/<budget>/.

    python scripts/collect_results.py --budget cpu [--runs outputs/runs]

Each record is the run's result.json (overrides, seed, config, metrics, per-epoch history, provenance:
commit, date, machine, wall time) with, for the sine task, its last free run inline (HeunNet Fig. 8);
checkpoints and logs stay behind. Committed records that a current run of the same experiment supersedes (stale:
their code has changed since; `odenets.reporting.index` never pools the two) are removed. Stale runs (code changed since they ran) are not collected, nor runs made
from a tree with uncommitted changes under src/ or conf/ (a reader could not check that code out) unless
--allow-dirty.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
import sys
from pathlib import Path

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from odenets.provenance import dirty_code, stale_modules
from odenets.reporting.figures.curves import latest_generated
from odenets.reporting.index import experiment_key
from odenets.results import REPRODUCED, comparison_key, get, load_runs


def compact(run: dict) -> dict:
    record = {k: v for k, v in run.items() if k not in ("run_dir", "sweep_id")}
    wave = latest_generated(run)
    if wave is not None:
        record["generated"] = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in wave.items()}
    return record


def key_today(record: dict) -> str:
    """The experiment a stale record's overrides name under today's config: a config key added since (a new
    option at its default) changes `comparison_key` but not the experiment. Its own key where the overrides
    no longer compose."""
    try:
        return experiment_key(record["overrides"])
    except (KeyError, HydraException, OmegaConfBaseException):
        return comparison_key(record["config"], ())


def prune_superseded(out: Path, budget: str) -> int:
    """Remove the stale records under `out` whose experiment has a current record; how many."""
    current, stale = set(), defaultdict(list)
    for path in out.glob("*.json"):
        record = json.loads(path.read_text())
        if get(record, "config.budget.name") == budget and record.get("status") in ("completed", "diverged"):
            if stale_modules(record):
                stale[key_today(record)].append(path)
            else:
                current.add(comparison_key(record["config"], ()))
    superseded = [path for key in current for path in stale.get(key, ())]
    for path in superseded:
        path.unlink()
    return len(superseded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--runs", default="outputs/runs")
    parser.add_argument("--out", help="where to write the records (default: src/odenets/reporting/reproduced/<budget>)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="also collect runs made with uncommitted changes under src/ or conf/")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else REPRODUCED / args.budget
    out.mkdir(parents=True, exist_ok=True)
    kept = stale = dirty = 0
    for run in load_runs(args.runs):
        if get(run, "config.budget.name") != args.budget or run.get("status") not in ("completed", "diverged"):
            continue
        if stale_modules(run):
            stale += 1
            continue
        if dirty_code(run) and not args.allow_dirty:
            dirty += 1
            continue
        (out / f"{run['run_name']}.json").write_text(json.dumps(compact(run), separators=(",", ":")) + "\n")
        kept += 1
    pruned = prune_superseded(out, args.budget)
    skipped = (f"; {pruned} superseded stale record(s) removed" if pruned else "") + (
        f"; {stale} stale run(s) skipped" if stale else "") + (
        f"; {dirty} run(s) of uncommitted code under src/ or conf/ skipped (--allow-dirty keeps them)" if dirty else "")
    print(f"{kept} run(s) of budget {args.budget} written to {out}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
