"""Commit what a budget's runs produced: one compact JSON per finished run in
src/odenets/reporting/reproduced/<budget>/ (`odenets.reporting.collect`, whose docstring says what a record
holds and leaves out).

    python scripts/collect_results.py --budget cpu [--runs outputs/runs] [--out DIR] [--allow-dirty]

Stale runs (code changed since they ran) are not collected, nor runs made from a tree with uncommitted changes
under src/ or conf/ (a reader could not check that code out) unless --allow-dirty. Committed records that a
current run of the same experiment supersedes are removed, and older records are rewritten once with portable
paths (no number changes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odenets.cli import run_command
from odenets.reporting.collect import collect
from odenets.results import REPRODUCED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--runs", default="outputs/runs")
    parser.add_argument("--out", help="where to write the records (default: src/odenets/reporting/reproduced/<budget>)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="also collect runs made with uncommitted changes under src/ or conf/")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else REPRODUCED / args.budget

    def collected() -> int:
        print(collect(args.runs, args.budget, out, args.allow_dirty).summary(args.budget, out))
        return 0
    return run_command(collected)


if __name__ == "__main__":
    sys.exit(main())
