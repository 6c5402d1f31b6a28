"""The papers' published tables (`src/odenets/reporting/published/*.yaml`), the one place they are read.

Each table: `paper`, `table`, `title`, `source`, `metric` and `rows`; a row names the `train.py`
overrides that build (and train) its model, its `published` numbers, a `note` and, per budget, its `seeds`
(a list, or a count n for seeds 0 … n−1: `row_seeds`). Tables of our own
(`horesnet_orderings`) have rows marked `train: true` and no published numbers; `claims` lists the
orderings (better row, worse row) the tables test over seeds.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from odenets.errors import ConfigError

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"


def table_names() -> list[str]:
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.yaml"))


@cache
def _load(name: str) -> dict:
    return yaml.safe_load((PUBLISHED_DIR / f"{name}.yaml").read_text())


def load_table(name: str) -> dict:
    """The published table `name` (e.g. rkcnn_table2) as a dict with `rows`; a ConfigError names the
    available tables when there is no such table."""
    if not (PUBLISHED_DIR / f"{name}.yaml").is_file():
        raise ConfigError(f"unknown table {name!r}; available: {', '.join(table_names())}")
    return _load(name)


def row_seeds(row: dict, budget: str) -> tuple[int, ...] | None:
    """The seeds a row trains for `budget`: its `seeds` entry, a list or a count n (seeds 0 … n−1); None
    when the row names none (the command line's seeds)."""
    seeds = (row.get("seeds") or {}).get(budget)
    if isinstance(seeds, int):
        return tuple(range(seeds))
    return tuple(seeds) if seeds else None
