"""Render every paper figure that has inputs (`make figures`): PNG and PDF under --out.

    python scripts/figures.py [--runs DIR ...] [--landscapes outputs/landscapes] [--out outputs/figures] [--allow-stale]

Reads run records under --runs (default: outputs/runs and the committed src/odenets/reporting/reproduced) and loss
landscapes (`*.npz`, written by scripts/landscape.py) under --landscapes; never trains. Runs whose code
has changed since they ran are left out unless --allow-stale. A figure whose inputs are missing gets one
line, `missing <figure>: <command that produces them>`, and the script still exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odenets.reporting.figures.landscape import load_landscape
from odenets.reporting.figures.render import render_all
from odenets.reporting.staleness import stale_modules
from odenets.results import RUN_ROOTS, load_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=list(RUN_ROOTS), type=Path, help="folders of run records")
    parser.add_argument("--landscapes", default="outputs/landscapes", type=Path, help="directory of landscape .npz")
    parser.add_argument("--out", default="outputs/figures", type=Path, help="where PNG and PDF files go")
    parser.add_argument("--allow-stale", action="store_true", help="also draw runs of code that changed since")
    args = parser.parse_args(argv)
    runs = [run for run in load_runs(*args.runs) if args.allow_stale or not stale_modules(run)]
    landscapes = [load_landscape(p) for p in sorted(args.landscapes.glob("*.npz"))]
    written, missing = render_all(args.out, runs, landscapes)
    for path in written:
        print(f"wrote {path} (+ .pdf)")
    for figure, command in missing.items():
        print(f"missing {figure}: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
