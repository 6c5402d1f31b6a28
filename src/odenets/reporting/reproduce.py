"""`make reproduce-tables`: the sweeps behind every table and figure of a budget, then the tables and figures.

The training jobs are what the budget runs (`odenets.reporting.budget`): its tables' rows (each row names the
`train.py` overrides that produce it; the budget, its seeds) plus its figure sweeps. Rows are packed into as
few Hydra multiruns as possible (rows that differ in one key become one sweep over that key), each run with the
chosen Hydra launcher (`basic`: sequential; `joblib`: local processes in parallel; `submitit_local`; `slurm`:
SLURM jobs with DDP inside, requeued on pre-emption). A job whose experiment already completed is skipped by
`train.py` itself and an interrupted one resumes from its last checkpoint, so rerunning after a failure or
pre-emption only does what is left.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from odenets.reporting.budget import load_budget

_PLAIN = str.maketrans("", "", "[](){},'\" ")


@dataclass(frozen=True)
class Sweep:
    fixed: tuple[str, ...]  # key=value overrides shared by every job
    key: str | None = None  # the swept key
    values: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None  # the rows' own seeds for the budget; None: the command line's

    def overrides(self, budget: str, seeds: Sequence[int], launcher: str) -> list[str]:
        seeds = self.seeds or seeds
        swept = [f"{self.key}={','.join(self.values)}"] if self.key else []
        seed = [f"seed={','.join(map(str, seeds))}"] if len(seeds) > 1 else [f"seed={seeds[0]}"]
        hydra = [f"hydra/launcher={launcher}"] if launcher != "basic" else []
        return [*self.fixed, *swept, f"budget={budget}", *seed, *hydra]


def pack(rows: Sequence[tuple[Sequence[str], tuple[int, ...] | None]]) -> list[Sweep]:
    """Group rows into sweeps: rows with the same keys and seeds that differ only in one plain-valued key
    (never a config group whose keys the rows also set)."""
    by_keys: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for row, seeds in rows:
        parsed = dict(o.split("=", 1) for o in row)
        by_keys[(tuple(parsed), seeds)].append(parsed)
    sweeps = []
    for (keys, seeds), group in by_keys.items():
        best = [Sweep(tuple(f"{k}={v}" for k, v in r.items()), seeds=seeds) for r in group]
        for key in keys:
            if any(r[key] != r[key].translate(_PLAIN) for r in group):
                continue  # lists and quoted values cannot be swept with a plain comma list
            if any(k.startswith(f"{key}.") for k in keys):
                continue  # Hydra composes a multirun's base config without swept groups: `model=a,b`
                # with `model.layers=2` fails when the experiment's default model has no `layers`
            buckets: dict[tuple[str, ...], list[str]] = defaultdict(list)
            for r in group:
                fixed = tuple(f"{k}={v}" for k, v in r.items() if k != key)
                buckets[fixed].append(r[key])
            if len(buckets) < len(best):
                best = [Sweep(fixed, key, tuple(dict.fromkeys(values)), seeds) for fixed, values in buckets.items()]
        sweeps += best
    return sweeps


def plan(budget: str, seeds: Sequence[int], launcher: str, tables: Sequence[str] | None = None,
         figures: bool = True) -> list[list[str]]:
    """The `train.py -m` override lists to run: the budget's tables (or `tables`) and figure sweeps."""
    spec = load_budget(budget)
    commands = [s.overrides(budget, seeds, launcher) for s in pack(spec.trained_rows(tables))]
    if figures:
        hydra = [f"hydra/launcher={launcher}"] if launcher != "basic" else []
        commands += [[*sweep, f"budget={budget}", *hydra] for sweep in spec.sweeps]
    return commands


def run(commands: list[list[str]], dry_run: bool = False) -> int:
    """Run each multirun and return how many failed (a nonzero exit); failed jobs are recorded by train.py
    and do not stop the others."""
    failed = 0
    for i, overrides in enumerate(commands, 1):
        command = [sys.executable, "train.py", "-m", *overrides]
        print(f"[{i}/{len(commands)}] {' '.join(command[1:])}", flush=True)
        if not dry_run:
            failed += subprocess.run(command).returncode != 0
    return failed
