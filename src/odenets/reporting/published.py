"""The papers' published tables (`src/odenets/reporting/published/*.yaml`), the one place they are read, as frozen
dataclasses checked when loaded: a key the model does not know is one ConfigError naming the key, the file and
the keys allowed there.

A `Table` has `paper`, `table`, `title`, `source`, `metric` (the result column: accuracy, error, ...), `rows` and
`claims`, and says what the paper's numbers are (`reports`, from the paper's text: best of n runs or one run, the
best or the last epoch). A `Row` names the `train.py` overrides that build (and train) its model (none: a model
this repository does not build), its `Published` numbers, a `note`, and optionally the logged `metric` its result
is read from and the `statistic` the paper's protocol takes (the best test value over epochs, or the last
epoch's). Tables of our own (`horesnet_orderings`) have rows marked `train: true` and no published numbers. A
`Claim` is an ordering the paper states (`better` row above `worse` row), in plain words (`text`), with the
paper's own two numbers where they are not the rows' (`paper`). The seeds each row trains are a budget's
(`odenets.reporting.budget`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from odenets.errors import ConfigError

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
ACROSS_RUNS = ("best", "single", "unstated")  # the paper's number is its best run's, its one run's, or it does not say
EPOCHS = ("best", "last", "unstated")  # ... at its best epoch, its last, or it does not say
STATISTICS = ("best", "final")  # the papers' protocol on our runs: the best test value over epochs, or the last


@dataclass(frozen=True)
class Reported:
    """What a paper's number is, from its text (`quote`)."""

    runs: str  # ACROSS_RUNS
    epoch: str  # EPOCHS
    quote: str
    n: int | None = None  # how many runs the best is taken over, where the paper says

    @property
    def best_of_runs(self) -> bool:
        return self.runs == "best"

    def describe(self) -> str:
        runs = {"best": f"best of {self.n or 'several'} runs", "single": "one run",
                "unstated": "runs not stated"}[self.runs]
        epoch = {"best": "best epoch", "last": "last epoch", "unstated": "epoch not stated"}[self.epoch]
        return f"{runs}, {epoch}"


@dataclass(frozen=True)
class Published:
    """A row's published numbers. `listed` holds the quantities its YAML names, null ones included: the paper's
    table has the column but leaves this row's cell empty (a cell is still shown, and may be ours alone)."""

    listed: frozenset[str] = frozenset()
    accuracy: float | None = None
    accuracy_mean: float | None = None  # over the paper's runs, where it gives them
    accuracy_std: float | None = None
    error: float | None = None
    error_mean: float | None = None
    error_std: float | None = None
    params: int | None = None
    params_extra: int | None = None  # learned step sizes, printed as "+2"
    flops: float | None = None
    flops_min: float | None = None  # a lower bound, where the paper gives only that
    memory_mib: float | None = None
    memory: float | None = None  # HO-ResNet Table 2: relative to Euler
    time: float | None = None
    time_high: float | None = None  # the top of a range the paper gives ("1.15x-1.2x")
    speedup_080: float | None = None
    speedup_085: float | None = None
    extra_params: int | None = None
    value: float | str | None = None  # HeunNet Table 1
    unit: str | None = None
    loss_min: float | None = None  # HO-ResNet Figs. 4 and 8
    loss_max: float | None = None
    best_epoch: int | None = None  # the epoch the paper's number was reached at, where it says
    epoch: int | None = None

    def get(self, quantity: str) -> Any:
        """The published value of `quantity` (None where the paper gives none)."""
        if quantity not in NUMBERS:
            raise KeyError(quantity)
        return getattr(self, quantity)

    def lists(self, quantity: str) -> bool:
        return quantity in self.listed

    def mean(self, metric: str) -> float | None:
        """The paper's mean over runs of `metric` where it gives one, else None."""
        return self.get(f"{metric}_mean") if f"{metric}_mean" in NUMBERS else None

    def spread(self, metric: str) -> str | None:
        """The paper's "mean ± std" over runs of `metric`, where it gives one."""
        mean = self.mean(metric)
        return None if mean is None else f"{mean} ± {self.get(f'{metric}_std')}"


NUMBERS = frozenset(f.name for f in fields(Published)) - {"listed"}


@dataclass(frozen=True)
class Row:
    row: str  # its label
    published: Published
    overrides: tuple[str, ...] = ()  # empty: a model this repository does not build
    note: str | None = None
    train: bool = False  # trained although the paper published no result for it (ours only)
    metric: str = "test/acc"  # the logged metric its result is read from
    statistic: str = "best"  # STATISTICS: what the papers' protocol takes of it on our runs
    reports: Reported | None = None  # what the paper's number is, where it is not the table's `reports`
    scheme: str | None = None  # HO-ResNet Table 2 and the landscapes: rows named by scheme and depth
    depth: int | None = None
    figure: int | None = None


@dataclass(frozen=True)
class Claim:
    better: str  # a row's label
    worse: str
    text: str  # both sides, plainly: "HeunNet above LSTM (MNIST)"
    paper: tuple[float, float] | None = None  # the paper's (better, worse), where they are not the rows' numbers


@dataclass(frozen=True)
class Table:
    name: str  # the file's stem, e.g. rkcnn_table2
    paper: str
    table: int | str
    title: str
    source: str
    metric: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...] = ()
    reports: Reported | None = None  # what the table's numbers are (a row may say otherwise)
    params_count: str = "all"  # what the paper's parameter counts count: all trainable, or `weights`
    params_precision: int | None = None  # the paper rounds its counts to this
    paper_data: str | None = None  # the paper's numbers were measured on other data (the size is not judged)

    def row_named(self, label: str) -> Row:
        return next(r for r in self.rows if r.row == label)

    def reported(self, row: Row) -> Reported | None:
        """What the paper's number in `row` is."""
        return row.reports or self.reports

    def quantities(self) -> set[str]:
        """Every quantity some row lists."""
        return {q for r in self.rows for q in r.published.listed}


def table_names() -> list[str]:
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.yaml"))


def load_table(name: str) -> Table:
    """The published table `name` (e.g. rkcnn_table2); a ConfigError names the available tables when there is no
    such table, and the key, the file and the allowed keys when a key is unknown."""
    if not (PUBLISHED_DIR / f"{name}.yaml").is_file():
        raise ConfigError(f"unknown table {name!r}; available: {', '.join(table_names())}")
    return _load(name)


@cache
def _load(name: str) -> Table:
    path = PUBLISHED_DIR / f"{name}.yaml"
    return parse_table(yaml.safe_load(path.read_text()), name, path)


def parse_table(node: Any, name: str, path: str | Path) -> Table:
    """A table from the mapping its YAML holds (`path` is named in errors)."""
    where = _Where(str(path))
    top = where.mapping(node, "the table", {f.name for f in fields(Table)} - {"name"},
                        required=("paper", "table", "title", "source", "metric", "rows"))
    rows = tuple(_row(r, where.at(f"rows[{i}]")) for i, r in enumerate(where.sequence(top["rows"], "rows")))
    labels = [r.row for r in rows]
    if len(set(labels)) < len(labels):
        where.fail(f"row {next(x for x in labels if labels.count(x) > 1)!r} appears twice")
    claims = tuple(_claim(c, where.at(f"claims[{i}]"), labels)
                   for i, c in enumerate(where.sequence(top.get("claims") or [], "claims")))
    reports = _reported(top["reports"], where.at("reports")) if top.get("reports") is not None else None
    table = Table(name=name, rows=rows, claims=claims, reports=reports,
                  **{k: v for k, v in top.items() if k not in ("rows", "claims", "reports") and v is not None})
    where.choice(table.params_count, ("all", "weights"), "params_count")
    unsaid = [r.row for r in rows if table.reported(r) is None
              and any(r.published.get(q) is not None for q in ("accuracy", "error"))]
    if unsaid:
        where.fail(f"row {unsaid[0]!r} has a published result but no `reports` (what the paper's number is: runs, "
                   f"epoch, quote), on the row or the table")
    return table


def _row(node: Any, where: _Where) -> Row:
    row = where.mapping(node, "a row", {f.name for f in fields(Row)}, required=("row", "published"))
    pub = where.mapping(row["published"] or {}, "published", NUMBERS, at="published")
    overrides = row.get("overrides") or ()
    if not (isinstance(overrides, list | tuple) and all(isinstance(o, str) for o in overrides)):
        where.fail(f"overrides={overrides!r}; allowed: a list of train.py overrides, or null")
    where.choice(row.get("statistic", "best"), STATISTICS, "statistic")
    extra = {k: v for k, v in row.items() if k not in ("published", "overrides", "reports") and v is not None}
    return Row(published=Published(listed=frozenset(pub), **pub), overrides=tuple(overrides),
               reports=_reported(row["reports"], where.at("reports")) if row.get("reports") is not None else None,
               **extra)


def _claim(node: Any, where: _Where, labels: list[str]) -> Claim:
    claim = where.mapping(node, "a claim", {f.name for f in fields(Claim)}, required=("better", "worse", "text"))
    for side in ("better", "worse"):
        if claim[side] not in labels:
            where.fail(f"{side}={claim[side]!r} names no row of the table")
    paper = claim.get("paper")
    if paper is not None and not (isinstance(paper, list) and len(paper) == 2):
        where.fail(f"paper={paper!r}; allowed: [better, worse], the paper's two numbers")
    return Claim(**{**claim, "paper": tuple(paper) if paper is not None else None})


def _reported(node: Any, where: _Where) -> Reported:
    reported = where.mapping(node, "reports", {f.name for f in fields(Reported)}, required=("runs", "epoch", "quote"))
    where.choice(reported["runs"], ACROSS_RUNS, "reports.runs")
    where.choice(reported["epoch"], EPOCHS, "reports.epoch")
    return Reported(**reported)


@dataclass(frozen=True)
class _Where:
    """The file (and the place in it) errors name."""

    path: str
    place: str = ""

    def at(self, place: str) -> _Where:
        return _Where(self.path, f"{self.place}.{place}" if self.place else place)

    def fail(self, message: str) -> None:
        raise ConfigError(f"{self.path}{f' ({self.place})' if self.place else ''}: {message}")

    def mapping(self, node: Any, what: str, allowed: set[str] | frozenset[str], required: tuple[str, ...] = (),
                at: str = "") -> dict:
        where = self.at(at) if at else self
        if not isinstance(node, Mapping):
            where.fail(f"{what} must be a mapping, not {type(node).__name__}")
        for key in node:
            if key not in allowed:
                where.fail(f"unknown key {key!r} in {what}; allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in node:
                where.fail(f"{what} has no {key!r}; required: {', '.join(required)}")
        return dict(node)

    def sequence(self, node: Any, what: str) -> list:
        if not isinstance(node, list):
            self.fail(f"{what} must be a list, not {type(node).__name__}")
        return node

    def choice(self, value: Any, allowed: tuple[str, ...], key: str) -> None:
        if value not in allowed:
            self.fail(f"{key}={value!r}; allowed: {', '.join(allowed)}")
