"""Evaluate trained runs under a grid of test-time schemes and sub-steps, then draw the figure (ours).

    python scripts/integration_sweep.py outputs/runs/mnist-ode_rnn-euler-* outputs/runs/mnist-ode_rnn-heun-*
    python scripts/integration_sweep.py RUN... --schemes euler,heun,rk4 --substeps 1,2,4,8 --metric test/acc

Each (scheme, n) evaluation goes into the run's eval.json (odenets.evaluate; already recorded ones are
reused unless --again); the figure, accuracy against the test-time step h / n with one line per trained
run and its training point starred, goes to --out as ode_integration_<dataset>.png/.pdf. Runs whose
models stack separate sub-nets per stage (HO-ResNet, RKCNN) are skipped with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odenets.errors import ConfigError
from odenets.evaluate import evaluate
from odenets.reporting.figures import save
from odenets.reporting.figures.integration import plot_step_sweep
from odenets.results import get, load_runs, read_evaluations
from odenets.run.training import quiet_lightning


def recorded(run_dir: Path, scheme: str, substeps: int) -> bool:
    return any("kind" not in e and e["scheme"] == scheme and e["substeps"] == substeps
               and e["checkpoint"] == "best.ckpt" and not e["overrides"] for e in read_evaluations(run_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--schemes", default="euler,heun,rk4")
    parser.add_argument("--substeps", default="1,2,4,8")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--out", default="outputs/figures", type=Path)
    parser.add_argument("--again", action="store_true", help="re-evaluate what eval.json already holds")
    args = parser.parse_args(argv)
    quiet_lightning(info=False)
    done = []
    for run_dir in args.runs:
        try:
            for scheme in args.schemes.split(","):
                for n in map(int, args.substeps.split(",")):
                    if args.again or not recorded(run_dir, scheme, n):
                        entry = evaluate(run_dir, scheme=scheme, substeps=n)
                        print(f"{run_dir.name}: {scheme} x{n}: {entry['metrics'].get(args.metric)}")
            done.append(run_dir)
        except ConfigError as e:
            print(f"skipped {run_dir.name}: {e}", file=sys.stderr)
    runs = load_runs(*done)
    for dataset in sorted({get(run["config"], "dataset.name") for run in runs}):
        group = [run for run in runs if get(run["config"], "dataset.name") == dataset]
        paths = save(plot_step_sweep(group, args.metric, title=f"{dataset}: trained weights, other integrations "
                                                                 f"(ours)"), args.out, f"ode_integration_{dataset}")
        print(f"wrote {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
