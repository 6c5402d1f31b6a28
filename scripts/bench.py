"""Performance benchmark: overhead, scheme cost, input pipeline, depth scaling, utilisation, recurrent cells.

    python scripts/bench.py                                  # everything at full size -> outputs/bench/bench.json
    python scripts/bench.py --quick --sections schemes,input # small sizes, a minute or two
    python scripts/bench.py --threads 1 --clock cpu          # on a busy machine: CPU time of this process
    python scripts/bench.py --device cuda                    # on a GPU

Every figure is a ratio measured side by side in this one process (interleaved rounds, medians):
see `odenets.perf`. Prints a Markdown table; the JSON keys are stable. Each section is written to
--out as soon as it is measured (a killed run keeps what it had); sections not measured this time
keep their earlier results in the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from odenets.fileio import atomic_open
from odenets.perf.harness import FULL, QUICK, Machine
from odenets.perf.report import format_markdown
from odenets.perf.sections import SECTIONS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and data: develop the benchmark")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {','.join(SECTIONS)}")
    parser.add_argument("--out", default="outputs/bench/bench.json", help="where to write the JSON results")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, for a busy machine (with --threads 1)")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"error: unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    def write(results: dict) -> None:
        with atomic_open(args.out) as f:
            json.dump(results, f, indent=1)

    earlier = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else None
    results = run(sections, QUICK if args.quick else FULL, Machine(args.device, args.clock), on_section=write,
                  results=earlier)
    print(format_markdown({"meta": results["meta"], **{s: results[s] for s in sections}}))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
