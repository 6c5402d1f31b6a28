"""Render every paper table (Markdown, CSV, LaTeX) and the report page from stored results.

    python scripts/tables.py [--budget paper|cpu|smoke] [--runs DIR ...] [--out outputs/tables] [--allow-stale]
    python scripts/tables.py --budget cpu --readme README.md   # also rewrite the README's results block

The README's block is built from the committed records of the budget alone (src/odenets/reporting/reproduced/<budget>,
stale ones included: they are what the README reports), so a test can check it against them.

Runs are read from outputs/runs and from the committed results (src/odenets/reporting/reproduced) unless --runs
names other folders. Runs whose code has changed since they ran (a module they imported now differs;
docstrings and comments do not count) are stale: left out with a warning, or with --allow-stale shown
and marked STALE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odenets.errors import ConfigError
from odenets.reporting.report import write_readme_results, write_report
from odenets.reporting.reproduce import BUDGETS
from odenets.reporting.tables import RESULT_TABLES, RunIndex, results_summary, write_all
from odenets.results import REPRODUCED, RUN_ROOTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="paper", help="render the runs of this budget (paper, smoke)")
    parser.add_argument("--runs", nargs="+", default=list(RUN_ROOTS), help="folders searched for run records")
    parser.add_argument("--allow-stale", action="store_true", help="include (marked) runs of code that changed since")
    parser.add_argument("--out", default="outputs/tables")
    parser.add_argument("--figures", default="outputs/figures")
    parser.add_argument("--report", default="outputs/report/index.md")
    parser.add_argument("--bench", default="outputs/bench/bench.json")
    parser.add_argument("--tables", default=",".join(RESULT_TABLES), help="comma-separated table names")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip measuring one-image inference memory (RKCNN Tables 2-3)")
    parser.add_argument("--readme", help="rewrite this README's results block from the budget's committed records")
    args = parser.parse_args()
    try:
        tables = write_all(args.out, args.budget, tuple(args.runs), args.bench, tuple(args.tables.split(",")),
                           args.memory, allow_stale=args.allow_stale)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    report = write_report(args.report, tables, args.figures, args.budget)
    print(f"tables in {Path(args.out)}/, report: {report}")
    if args.readme:
        index = RunIndex(REPRODUCED / args.budget, allow_stale=True)
        try:
            write_readme_results(args.readme, results_summary(BUDGETS[args.budget][0], args.budget, index))
        except (OSError, ValueError) as e:
            print(f"error: --readme {args.readme}: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"results block of {args.readme} rewritten")


if __name__ == "__main__":
    main()
