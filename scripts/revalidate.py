"""Make stale committed records current again by rerunning one seed of each stale experiment on today's code and
comparing every value it logs, exactly, with its record where that was made on this kind of CPU, else with a rerun
here on the record's own commit (`make revalidate BUDGET=cpu`; `odenets.reporting.revalidate` says which epochs,
what is compared and what a match writes).

    python scripts/revalidate.py --budget cpu --dry-run --all          # the plan and its cost, every experiment
    python scripts/revalidate.py --budget cpu --jobs 2 --data-dir /work/shared/data

Reruns and report.json go to outputs/revalidate/<budget>/ (kept: an interrupted revalidation resumes).
Exit status: 0 when every experiment rerun was revalidated, 1 when one stayed stale or its rerun failed,
2 for bad input (a tree with uncommitted code, no records), 4 when a file could not be written.
"""

from __future__ import annotations

import argparse
import sys

from odenets.cli import run_command
from odenets.errors import ConfigError
from odenets.reporting.revalidate import WHOLE_BELOW_S, revalidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--records", help="folder of the committed records (default: "
                                          "src/odenets/reporting/reproduced/<budget>)")
    parser.add_argument("--out", help="folder of the reruns and report.json (default: outputs/revalidate/<budget>)")
    parser.add_argument("--jobs", type=int, default=1, help="reruns at a time (2 on a 2-core machine)")
    parser.add_argument("--data-dir", help="where the data sets are (paths.data_dir; default: DATA_DIR or ./data)")
    parser.add_argument("--all", action="store_true", help="rerun current experiments too")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost only")
    parser.add_argument("--whole-below", type=float, default=WHOLE_BELOW_S,
                        help="rerun whole the runs that took at most this many seconds (default: %(default)g)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="revalidate at uncommitted code (for tests in a scratch copy: the entry's commit "
                             "does not hold that code)")
    args = parser.parse_args(argv)

    def revalidated() -> int:
        if args.jobs < 1:
            raise ConfigError(f"--jobs {args.jobs}: at least 1")
        report = revalidate(args.budget, args.records, args.out, args.jobs, args.data_dir, args.all,
                            args.allow_dirty, args.whole_below, args.dry_run, say=lambda line: print(line, flush=True))
        print(report.summary())
        return 0 if report.ok else 1
    return run_command(revalidated)


if __name__ == "__main__":
    sys.exit(main())
