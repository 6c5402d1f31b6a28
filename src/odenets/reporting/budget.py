"""What a budget runs, defined once: `conf/budget/<budget>.yaml`, read here alone.

Its `budget` node names the published tables whose rows it trains and renders (`tables`), the seeds of those rows
(`seeds`: per table, `all` its rows and rows by label, a count n for seeds 0 ... n-1 or a list; a table it does not
name trains the command line's seeds), and the runs behind figures no row trains (`sweeps`, one `train.py -m`
override list each). How the budget shortens each experiment's recipe is the other half of a budget, composed
into every run by Hydra: `conf/budget_rules/<budget>/<experiment>.yaml`; each such file must name an experiment
(Hydra would skip a misnamed one silently). None of this is part of a run's fingerprint
(`odenets.config.NON_DEFINING`) except what the rules change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import yaml

from odenets.config import CONF_DIR
from odenets.errors import ConfigError
from odenets.reporting.published import Row, load_table

KEYS = frozenset({"name", "width_scale", "max_epochs", "note", "tables", "seeds", "sweeps"})
RESULTS_TRAINED = ("accuracy", "error", "speedup_080")  # a row the paper published one of these for is trained


@dataclass(frozen=True)
class Budget:
    name: str
    tables: tuple[str, ...]
    seeds: Mapping[str, Mapping[str, tuple[int, ...]]]  # table -> row label (or `all`) -> seeds
    sweeps: tuple[tuple[str, ...], ...]
    rules: tuple[str, ...]  # the experiments conf/budget_rules/<name>/ shortens

    def row_seeds(self, table: str, row: Row) -> tuple[int, ...] | None:
        """The seeds `row` of `table` trains on this budget; None: the command line's."""
        named = self.seeds.get(table, {})
        return named.get(row.row, named.get("all"))

    def trained_rows(self, names: Sequence[str] | None = None) -> list[tuple[tuple[str, ...], tuple[int, ...] | None]]:
        """(overrides, seeds) of every row to train of the tables `names` (default: the budget's): those with a
        published result, and those marked `train: true` (ours only). Rows with the same overrides train once;
        they must name the same seeds."""
        seen: dict[tuple[str, ...], tuple[str, tuple[int, ...] | None]] = {}
        for name in names or self.tables:
            for row in load_table(name).rows:
                if not row.overrides or not (row.train or any(row.published.get(q) is not None
                                                              for q in RESULTS_TRAINED)):
                    continue
                seeds = self.row_seeds(name, row)
                first = seen.setdefault(row.overrides, (f"{name}: {row.row}", seeds))
                if first[1] != seeds:
                    raise ConfigError(f"conf/budget/{self.name}.yaml: {first[0]!r} and {name}: {row.row!r} train the "
                                      f"same overrides with other seeds ({first[1]} and {seeds}); give them the same")
        return [(overrides, seeds) for overrides, (_, seeds) in seen.items()]


def budget_names() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "budget").glob("*.yaml"))


def load_budget(name: str) -> Budget:
    """Budget `name`, checked: a ConfigError names an unknown budget, key, table or row."""
    if name not in budget_names():
        raise ConfigError(f"unknown budget {name!r}; available: {', '.join(budget_names())}")
    return _load(name)


@cache
def _load(name: str) -> Budget:
    path = CONF_DIR / "budget" / f"{name}.yaml"
    node = (yaml.safe_load(path.read_text()) or {}).get("budget") or {}

    def fail(message: str) -> None:
        raise ConfigError(f"{path}: {message}")

    for key in node:
        if key not in KEYS:
            fail(f"unknown key budget.{key}; allowed: {', '.join(sorted(KEYS))}")
    tables = tuple(node.get("tables") or ())
    for table in tables:
        load_table(table)  # names the available tables if there is no such one
    seeds: dict[str, dict[str, tuple[int, ...]]] = {}
    for table, rows in (node.get("seeds") or {}).items():
        if table not in tables:
            fail(f"budget.seeds.{table}: not one of the budget's tables ({', '.join(tables)})")
        labels = {r.row for r in load_table(table).rows}
        for label, value in rows.items():
            if label != "all" and label not in labels:
                fail(f"budget.seeds.{table}: {label!r} names no row of {table}; allowed: all, or a row's label")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                value = range(value)
            elif not (isinstance(value, list) and value and all(isinstance(s, int) for s in value)):
                fail(f"budget.seeds.{table}.{label}={value!r}; allowed: a count n (seeds 0 ... n-1) or a list of seeds")
            seeds.setdefault(table, {})[label] = tuple(value)
    sweeps = node.get("sweeps") or []
    if not all(isinstance(s, list) and s and all(isinstance(o, str) for o in s) for s in sweeps):
        fail("budget.sweeps: allowed: a list of train.py override lists")
    rules_dir = CONF_DIR / "budget_rules" / name
    rules = tuple(sorted(p.relative_to(rules_dir).with_suffix("").as_posix() for p in rules_dir.rglob("*.yaml")))
    for rule in rules:
        if not (CONF_DIR / "experiment" / f"{rule}.yaml").is_file():
            raise ConfigError(f"{rules_dir / rule}.yaml names no experiment (conf/experiment/{rule}.yaml); "
                              f"Hydra would never apply it")
    return Budget(name, tables, seeds, tuple(tuple(s) for s in sweeps), rules)
