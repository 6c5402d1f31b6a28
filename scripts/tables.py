"""Render the budget's paper tables (Markdown, CSV, LaTeX) and the report page (Markdown and HTML) from stored
results; optionally rewrite the README's results block.

    python scripts/tables.py [--budget paper|cpu|smoke] [--runs DIR ...] [--out outputs/tables] [--allow-stale]
    python scripts/tables.py --budget cpu --readme README.md --results-doc docs/results.md

The README's block and docs/results.md are built from the committed records of the budget alone
(src/odenets/reporting/reproduced/<budget>, stale ones included: they are what the README reports), so a test
can check them against those records; so are the forest plots they show, written beside them (docs/verdicts/,
below the README's folder and beside the results doc).

Runs are read from outputs/runs and from the committed results (src/odenets/reporting/reproduced) unless --runs
names other folders. Runs whose code has changed since they ran (a module they depend on now differs;
docstrings and comments do not count) are stale: left out with a warning, or with --allow-stale shown
and marked STALE. The tables of a budget are listed in conf/budget/<budget>.yaml (`budget.tables`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odenets.errors import ConfigError
from odenets.reporting.budget import budget_names, load_budget
from odenets.reporting.index import RunIndex
from odenets.reporting.report import write_forests, write_readme_results, write_report
from odenets.reporting.summary import rendered_tables, results_summary, verdict_summary
from odenets.reporting.tables import write_all
from odenets.results import REPRODUCED, RUN_ROOTS

FORESTS = "verdicts"  # the forest plots' folder, beside the results doc (docs/) and under the README's docs/


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="paper", choices=budget_names(), help="render the runs of this budget")
    parser.add_argument("--runs", nargs="+", default=list(RUN_ROOTS), help="folders searched for run records")
    parser.add_argument("--allow-stale", action="store_true", help="include (marked) runs of code that changed since")
    parser.add_argument("--out", default="outputs/tables")
    parser.add_argument("--figures", default="outputs/figures")
    parser.add_argument("--report", default="outputs/report", help="folder of index.md and index.html")
    parser.add_argument("--bench", default="outputs/bench/bench.json")
    parser.add_argument("--tables", help="comma-separated table names (default: the budget's, conf/budget/)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip measuring one-image inference memory (RKCNN Tables 2-3)")
    parser.add_argument("--readme", help="rewrite this README's results block from the budget's committed records")
    parser.add_argument("--results-doc", help="write the whole results summary (committed records) to this file")
    args = parser.parse_args()
    try:
        budget = load_budget(args.budget)
        names = tuple(args.tables.split(",")) if args.tables else budget.tables
        index = RunIndex(*args.runs, budget=args.budget, allow_stale=args.allow_stale)
        tables = write_all(args.out, index, names, args.bench, args.memory)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    md, page = write_report(args.report, tables, args.figures, args.budget)
    print(f"tables in {Path(args.out)}/, report: {md}, {page}")
    if args.readme or args.results_doc:
        committed = RunIndex(REPRODUCED / args.budget, budget=args.budget, allow_stale=True)
        shown = rendered_tables(budget.tables, committed)
        try:
            if args.readme:
                block = verdict_summary(budget.tables, committed, shown, f"docs/{FORESTS}")
                write_readme_results(args.readme, block)
                write_forests(shown, Path(args.readme).parent / "docs" / FORESTS)
                print(f"results block of {args.readme} rewritten")
            if args.results_doc:
                summary = results_summary(budget.tables, committed, shown, FORESTS)
                Path(args.results_doc).write_text(f"# Results (budget {args.budget})\n\n<!-- written by `python "
                                                  f"scripts/tables.py --budget {args.budget} --results-doc "
                                                  f"{args.results_doc}` from the committed records -->\n\n"
                                                  f"{summary}\n")
                write_forests(shown, Path(args.results_doc).parent / FORESTS)
                print(f"{args.results_doc} written")
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    main()
