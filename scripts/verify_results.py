"""Rerun committed results and fail if a number drifted (`make verify-results`).

    python scripts/verify_results.py                 # the 3 quickest committed runs of budget cpu
    python scripts/verify_results.py --fastest --datasets sine   # the quickest needing no data (CI)
    python scripts/verify_results.py --count 10 --tolerance 0.005

Each chosen record of src/odenets/reporting/reproduced/<budget>/ (of the current code: stale ones are not
expected to reproduce) is rerun with its own overrides and seed (and its number of CPU threads) into a temporary
folder (`odenets.reporting.rerun`); its final value of every metric the tables use (test accuracy, free-run
accuracy) must lie within --tolerance (absolute, on the 0-1 scale: 0.01 is one percentage point) of the committed
one. `make revalidate` asks more: every logged value equal, to make stale records current again.
Exit status: the number of runs that drifted or failed (0: all reproduced).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from odenets.cli import run_command
from odenets.reporting.rerun import rerun
from odenets.reporting.staleness import stale_modules
from odenets.results import REPRODUCED, get, load_runs

CHECKED = ("test/acc", "test/gen_acc")  # the metrics tables report


def verify(record: dict, tolerance: float, out: Path) -> str | None:
    """None if the rerun reproduces `record`'s numbers, else what differs."""
    done = rerun(record, out, ["force=true"])
    if done.failure:
        return done.failure
    again = done.result
    if again.get("fingerprint") != record["fingerprint"]:
        return "the rerun's config differs from the committed one (its fingerprint changed)"
    drift = []
    for key in CHECKED:
        old, new = get(record, f"metrics.final.{key}"), get(again, f"metrics.final.{key}")
        if old is not None and (new is None or abs(new - old) > tolerance):
            drift.append(f"{key} {old:.4f} -> {new if new is None else round(new, 4)}")
    return "; ".join(drift) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--count", type=int, default=3, help="how many runs, quickest first")
    parser.add_argument("--fastest", action="store_true", help="only the quickest run (--count 1)")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--datasets", default=None, help="only runs on these datasets (e.g. sine: no data files)")
    args = parser.parse_args(argv)
    wanted = set(args.datasets.split(",")) if args.datasets else None
    records = sorted((r for r in load_runs(REPRODUCED / args.budget) if r.get("status") == "completed"
                      and not stale_modules(r) and (wanted is None or get(r, "config.dataset.name") in wanted)),
                     key=lambda r: r.get("wall_time_s", float("inf")))
    chosen = records[:1 if args.fastest else args.count]
    if not chosen:
        print(f"error: no committed runs of budget {args.budget} in {REPRODUCED / args.budget}", file=sys.stderr)
        return 1

    def verified() -> int:  # a record whose overrides could run code: one line, exit 2 (odenets.reporting.rerun)
        failures = 0
        for record in chosen:
            with tempfile.TemporaryDirectory() as tmp:
                problem = verify(record, args.tolerance, Path(tmp))
            failures += problem is not None
            print(f"{'DRIFT' if problem else 'ok   '} {record['run_name']} ({record.get('wall_time_s', 0):.0f} s)"
                  + (f": {problem}" if problem else ""))
        return failures
    return run_command(verified)


if __name__ == "__main__":
    sys.exit(main())
