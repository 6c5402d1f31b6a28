"""The runs one budget's tables read, found once: completed and diverged run records keyed by the experiment
they ran (the defining config without the seed), one per fingerprint, the newest. A run whose code changed
since it ran (`odenets.reporting.staleness`) is left out and counted, unless `allow_stale` keeps it for an
experiment no current run covers (its cells are then marked): stale and current seeds are never pooled.

A row's result per seed is read two ways (`row_values`): by the papers' protocol, the best test value over epochs
(or the last epoch's, for a row whose `statistic` is `final`), which selects the epoch on the test set; and free
of that selection (`selection_free`), which the verdicts use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from odenets.config import compose_row
from odenets.reporting.published import Row
from odenets.reporting.staleness import stale_modules
from odenets.results import comparison_key, get, load_runs


def experiment_key(overrides: Sequence[str]) -> str:
    """The experiment `overrides` name under today's config (`comparison_key` of their composition); composed once
    per process (the tables ask for a row's runs several times)."""
    return _experiment_key(tuple(overrides))


@cache
def _experiment_key(overrides: tuple[str, ...]) -> str:
    return comparison_key(OmegaConf.to_container(compose_row(list(overrides)), resolve=True), ())


class RunIndex:
    """The runs of `budget` under `roots` (run directories and committed records)."""

    def __init__(self, *roots: str | Path, budget: str, allow_stale: bool = False) -> None:
        self._index(load_runs(*roots), budget, allow_stale)

    @classmethod
    def of(cls, runs: Iterable[dict], budget: str, allow_stale: bool = False) -> RunIndex:
        """The index of runs already loaded (the figures')."""
        index = cls.__new__(cls)
        index._index(runs, budget, allow_stale)
        return index

    def _index(self, runs: Iterable[dict], budget: str, allow_stale: bool) -> None:
        self.budget, self.allow_stale = budget, allow_stale
        self.by_key: dict[str, list[dict]] = defaultdict(list)
        self.stale: dict[str, list[dict]] = defaultdict(list)
        for run in runs:
            if run.get("status") not in ("completed", "diverged") or get(run, "config.budget.name") != budget:
                continue
            key = comparison_key(run["config"], ())
            run["stale_modules"] = stale_modules(run)
            (self.stale if run["stale_modules"] else self.by_key)[key].append(run)
        if allow_stale:
            for key, runs in self.stale.items():
                self.by_key.setdefault(key, runs)

    def _key(self, overrides: Sequence[str]) -> str:
        return experiment_key((*overrides, f"budget={self.budget}"))

    def runs_for(self, overrides: Sequence[str]) -> list[dict]:
        """The runs of the experiment `overrides` name (a row's)."""
        return self.by_key.get(self._key(overrides), [])

    def stale_for(self, overrides: Sequence[str]) -> list[dict]:
        """The experiment's stale runs left out (none when they are its runs)."""
        return self._left_out(self._key(overrides))

    def _left_out(self, key: str) -> list[dict]:
        runs = self.stale.get(key, [])
        return [] if self.by_key.get(key) is runs else runs

    def stale_left_out(self) -> int:
        return sum(len(self._left_out(key)) for key in self.stale)

    def runs(self) -> list[dict]:
        """Every run the index holds (stale ones only when allowed)."""
        return [r for runs in self.by_key.values() for r in runs]


def selection_free(run: dict, key: str) -> float | None:
    """The test value of `key` that no look at the test split chose: at the evaluation the validation split
    chose (`metrics.at_val_best`, which every run with one records: `odenets.results.at_val_best`), else the last
    evaluation's (`metrics.final`); None where the run has no such value."""
    chosen = get(run, "metrics.at_val_best") or get(run, "metrics.final") or {}
    return chosen.get(key)


def protocol_value(run: dict, key: str, statistic: str) -> float | None:
    """The papers' protocol: the best test value of `key` over evaluations (`best`), or the last one's (`final`)."""
    return (get(run, f"metrics.{statistic}") or {}).get(key)


@dataclass(frozen=True)
class RowValues:
    """A row's result per completed seed, in % (error = 100 - accuracy), read both ways, and those runs."""

    free: tuple[float, ...]  # `selection_free`
    protocol: tuple[float, ...]  # `protocol_value` with the row's statistic
    runs: tuple[dict, ...]


def row_values(row: Row, index: RunIndex, metric: str) -> RowValues:
    """`RowValues` of `row`'s logged metric (`test/acc` unless it names another), of its runs that hold both."""
    runs, free, protocol = [], [], []
    for run in index.runs_for(row.overrides):
        a, b = selection_free(run, row.metric), protocol_value(run, row.metric, row.statistic)
        if run["status"] == "completed" and a is not None and b is not None:
            runs.append(run)
            free.append(100 * a)
            protocol.append(100 * b)
    if metric == "error":
        free, protocol = [100 - v for v in free], [100 - v for v in protocol]
    return RowValues(tuple(free), tuple(protocol), tuple(runs))
