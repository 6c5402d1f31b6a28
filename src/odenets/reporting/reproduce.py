"""`make reproduce-tables`: the sweeps behind every table and figure, then the tables and figures.

The training jobs are the published tables' rows (each row names the `train.py` overrides that
produce it) plus the figure sweeps (`FIGURE_SWEEPS`, e.g. `experiment=horesnet/lr_robustness`).
Rows are packed into as few Hydra multiruns as possible (rows that differ in one key become one
sweep over that key), each run with the chosen Hydra launcher (`basic`:
sequential; `joblib`: local processes in parallel; `submitit_local`; `slurm`: SLURM jobs with DDP
inside, requeued on pre-emption). A job whose experiment already completed is skipped by `train.py` itself and an
interrupted one resumes from its last checkpoint, so rerunning after a failure or pre-emption
only does what is left.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from odenets.config import CONF_DIR
from odenets.reporting.published import load_table, row_seeds

# The runs behind figures that no table row trains (the rows' runs feed the other figures), by name; a budget
# lists the ones it runs (`budget.sweeps` in conf/budget/<budget>.yaml), beside its tables (`budget.tables`).
SWEEPS = {
    "horesnet": (
        ("experiment=horesnet/cifar10", "dataset.autoaugment=false", "scheme=euler,midpoint", "depth=6"),  # Fig. 10
        ("experiment=horesnet/cifar10", "dataset.autoaugment=false", "scheme=euler,midpoint,rk4", "depth=10"),  # 11
        ("experiment=horesnet/lr_robustness",),  # Fig. 9: 4 schemes x 7 learning rates (hydra.sweeper.params)
    ),
    "heunnet": (
        ("experiment=heunnet/sine", "model=lstm,phased_lstm,ode_rnn"),  # HeunNet Fig. 7-8
        ("experiment=heunnet/sine_alpha",),  # HeunNet Sec. 6.3: the alpha sweep
    ),
    "heunnet_extra": (
        ("experiment=heunnet/mnist_authors", "model=lstm,ode_rnn"),  # the authors' recipe, evaluated every 500 steps
        ("experiment=heunnet/mnist", "model=ode_rnn", "scheme=euler"),  # with HeunNet: trained weights, other schemes
    ),
}


def load_budgets() -> dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    """Each budget's tables and figure sweeps, from conf/budget/<budget>.yaml."""
    budgets = {}
    for path in sorted((CONF_DIR / "budget").glob("*.yaml")):
        node = yaml.safe_load(path.read_text())["budget"]
        budgets[path.stem] = (tuple(node["tables"]), tuple(s for name in node["sweeps"] for s in SWEEPS[name]))
    return budgets


BUDGETS = load_budgets()
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


def trained_rows(names: Sequence[str], budget: str = "paper") -> list[tuple[tuple[str, ...],
                                                                                         tuple[int, ...] | None]]:
    """(overrides, seeds) of every row to train: those with a published result, and those marked
    `train: true` (ours only, e.g. models the paper did not run); seeds from the row's `seeds` for the
    budget, else None (the command line's). Deduplicated, in order."""
    seen, rows = set(), []
    for name in names:
        for row in load_table(name)["rows"]:
            pub = row.get("published") or {}
            wanted = row.get("train") or any(pub.get(q) is not None for q in ("accuracy", "error", "speedup_080"))
            if row.get("overrides") and wanted and tuple(row["overrides"]) not in seen:
                seen.add(tuple(row["overrides"]))
                rows.append((tuple(row["overrides"]), row_seeds(row, budget)))
    return rows


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
    budget_tables, sweeps = BUDGETS[budget]
    commands = [s.overrides(budget, seeds, launcher) for s in pack(trained_rows(tables or budget_tables, budget))]
    if figures:
        hydra = [f"hydra/launcher={launcher}"] if launcher != "basic" else []
        commands += [[*sweep, f"budget={budget}", *hydra] for sweep in sweeps]
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
