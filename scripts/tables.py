"""Render every paper table (Markdown, CSV, LaTeX) and the report page from stored results.

    python scripts/tables.py [--budget paper|smoke] [--runs outputs/runs] [--out outputs/tables]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from odenets.report import write_report
from odenets.tables import RESULT_TABLES, write_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="paper", help="render the runs of this budget (paper, smoke)")
    parser.add_argument("--runs", default="outputs/runs")
    parser.add_argument("--out", default="outputs/tables")
    parser.add_argument("--figures", default="outputs/figures")
    parser.add_argument("--report", default="outputs/report/index.md")
    parser.add_argument("--bench", default="outputs/bench/bench.json")
    parser.add_argument("--tables", default=",".join(RESULT_TABLES), help="comma-separated table names")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip measuring one-image inference memory (RKCNN Tables 2-3)")
    args = parser.parse_args()
    tables = write_all(args.out, args.budget, args.runs, args.bench, tuple(args.tables.split(",")), args.memory)
    report = write_report(args.report, tables, args.figures, args.budget)
    print(f"tables in {Path(args.out)}/, report: {report}")


if __name__ == "__main__":
    main()
