"""The runs one budget's tables read, found once: completed and diverged run records keyed by the experiment
they ran (the defining config without the seed), one per fingerprint, the newest. A run whose code changed
since it ran (`odenets.provenance.stale_modules`) is left out and counted, unless `allow_stale` keeps it for an
experiment no current run covers (its cells are then marked): stale and current seeds are never pooled."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from odenets.config import compose_row
from odenets.provenance import stale_modules
from odenets.results import comparison_key, get, load_runs


def experiment_key(overrides: Sequence[str]) -> str:
    """The experiment `overrides` name under today's config (`comparison_key` of their composition)."""
    return comparison_key(OmegaConf.to_container(compose_row(list(overrides)), resolve=True), ())


class RunIndex:
    """The runs of `budget` under `roots` (run directories and committed records)."""

    def __init__(self, *roots: str | Path, budget: str, allow_stale: bool = False) -> None:
        self.budget, self.allow_stale = budget, allow_stale
        self.by_key: dict[str, list[dict]] = defaultdict(list)
        self.stale: dict[str, list[dict]] = defaultdict(list)
        for run in load_runs(*roots):
            if run.get("status") not in ("completed", "diverged") or get(run, "config.budget.name") != budget:
                continue
            key = comparison_key(run["config"], ())
            run["stale_modules"] = stale_modules(run)
            (self.stale if run["stale_modules"] else self.by_key)[key].append(run)
        if allow_stale:
            for key, runs in self.stale.items():
                self.by_key.setdefault(key, runs)

    def _key(self, row: dict) -> str:
        return experiment_key([*row["overrides"], f"budget={self.budget}"])

    def runs_for(self, row: dict) -> list[dict]:
        return self.by_key.get(self._key(row), [])

    def stale_for(self, row: dict) -> list[dict]:
        """The row's stale runs left out (none when they are the row's runs)."""
        return self._left_out(self._key(row))

    def _left_out(self, key: str) -> list[dict]:
        runs = self.stale.get(key, [])
        return [] if self.by_key.get(key) is runs else runs

    def stale_left_out(self) -> int:
        return sum(len(self._left_out(key)) for key in self.stale)

    def runs(self) -> list[dict]:
        """Every run the index holds (stale ones only when allowed)."""
        return [r for runs in self.by_key.values() for r in runs]


def row_values(row: dict, index: RunIndex, metric: str) -> tuple[list[float], list[dict]]:
    """The row's result per completed seed, in %: the best over epochs of its `metric` key (`test/acc` unless the
    row names another), or the last epoch's with `statistic: final`; error = 100 - accuracy. And those runs."""
    key, where = row.get("metric", "test/acc"), "metrics." + row.get("statistic", "best")
    runs = [r for r in index.runs_for(row) if r["status"] == "completed" and key in (get(r, where) or {})]
    values = [100 * get(r, where)[key] for r in runs]
    return ([100 - v for v in values] if metric == "error" else values), runs
