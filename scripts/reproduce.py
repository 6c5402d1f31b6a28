"""Run the sweeps behind every table and figure for a budget, then render figures, tables, report.

    python scripts/reproduce.py --budget smoke                      # every experiment, tiny (CPU)
    python scripts/reproduce.py --budget cpu --tables heunnet_results   # real data, shortened, one table
    python scripts/reproduce.py --budget paper --launcher joblib    # the papers' recipes, in parallel
    python scripts/reproduce.py --budget paper --launcher slurm --seeds 0,1,2
    python scripts/reproduce.py --dry-run                           # print the multiruns only

Completed experiments are skipped and interrupted ones resume, so rerunning continues the work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from odenets.errors import ConfigError
from odenets.reporting.budget import budget_names
from odenets.reporting.figures import LANDSCAPE_FIGURES, landscape_command
from odenets.reporting.reproduce import plan, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="paper", choices=budget_names())
    parser.add_argument("--launcher", default="basic", choices=["basic", "joblib", "submitit_local", "slurm"])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds per table row (the papers: 3-5 runs); "
                                                     "rows that name their own seeds for the budget keep them")
    parser.add_argument("--tables", default=None, help="comma-separated tables to reproduce (default: the budget's)")
    parser.add_argument("--dry-run", action="store_true", help="print the multiruns without running them")
    parser.add_argument("--figure-sweeps", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the budget's figure sweeps (default: only when no --tables is given)")
    parser.add_argument("overrides", nargs="*", help="passed to every train.py run, e.g. paths.data_dir=/data "
                                                      "trainer.enable_progress_bar=false")
    args = parser.parse_args()
    tables = args.tables.split(",") if args.tables else None
    try:
        commands = plan(args.budget, [int(s) for s in args.seeds.split(",")], args.launcher, tables,
                        figures=tables is None if args.figure_sweeps is None else args.figure_sweeps)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    failed = run([[*c, *args.overrides] for c in commands], args.dry_run)
    if args.dry_run:
        return
    small = ["--grid", "5", "--batch", "16", "--width", "8"] if args.budget == "smoke" else []
    scripts = [] if args.budget == "cpu" else [  # the landscapes need CIFAR-10
        [*landscape_command(depth).split()[1:], *small] for depth in LANDSCAPE_FIGURES]
    for script in [*scripts, ["scripts/figures.py"], ["scripts/tables.py", "--budget", args.budget]]:
        subprocess.run([sys.executable, *script], check=False)
    print(f"done: {failed} multirun(s) with a failed job (their cells show the command to rerun)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
