"""Where each number of a table comes from: one registry entry per quantity (`QUANTITIES`).

A cell holds ours, the paper's, where ours comes from (runs, a count, a measurement, the ECG pipeline) and,
when ours is missing, the command that fills it. The sources:

* results (`accuracy`, `error`): the row's runs of the index's budget (`odenets.reporting.index`), by the papers'
  protocol (the best test value over epochs, or the last epoch's, `statistic: final`): ours is the mean ± sample
  std over the n seeds, compared with the paper's mean where it gives one, else its number; where the paper's
  number is the best of its runs (the table's or the row's `reports`) our best seed is shown beside it. The
  selection-free value (`index.selection_free`, what the verdicts test) is kept beside, with the epochs, the
  budget's note and the commits;
* counts (`params`, `flops`) and one-image inference memory (`memory_mib`): measured on the row's model
  (`odenets.reporting.model_stats`);
* HO-ResNet Table 2 (`memory`, `time` relative to Euler): `make bench`'s JSON;
* HO-ResNet Table 4 (`speedup_080`, `speedup_085`): Euler's training seconds to the threshold over the scheme's;
  `extra_params`: what the model's RK blocks learn besides their sub-nets (`RKBlock.learned_parameters`), counted;
* HeunNet Table 1 (`value`): our ECG pipeline on the records present;
* `nfe`: ODE-Net / RK-Net function evaluations per test forward pass, from the runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import OmegaConf

from odenets.config import compose_row
from odenets.reporting.index import RunIndex, row_values
from odenets.reporting.model_stats import row_stats
from odenets.reporting.published import Reported, Row, Table
from odenets.reporting.speed import SPEED_THRESHOLDS, scheme_key, speedup_over_euler, time_to_accuracy
from odenets.reporting.stats import Spread, spread
from odenets.results import get


@dataclass
class Cell:
    ours: float | str | None = None  # a result cell's: the mean over seeds
    paper: float | str | None = None  # the paper's number
    source: str = ""  # where `ours` comes from: "runs", "count", "make bench", "our ECG pipeline"
    command: str | None = None  # what fills a missing `ours`
    paper_mean: float | None = None  # the paper's mean over its runs, where it gives one: what ours is compared with
    paper_spread: str | None = None  # the paper's mean ± std over runs, where it gives one
    reported: Reported | None = None  # what the paper's number is (best of runs, one run, ...)
    agrees: bool | None = None  # counts: equal within tolerance or at the paper's rounding
    paper_is_bound: bool = False  # the paper gives only a lower bound ("> 19.49M")
    runs: tuple[dict, ...] = ()  # the runs behind a result cell
    spread: Spread | None = None  # their values over seeds, by the papers' protocol
    free: Spread | None = None  # their selection-free values (`index.selection_free`)
    left_out: str = ""  # stale or diverged runs not counted

    @property
    def diff(self) -> float | None:
        """Ours less the paper's mean over runs where it gives one, else its number."""
        paper = self.paper_mean if self.paper_mean is not None else self.paper
        numbers = isinstance(self.ours, (int, float)) and isinstance(paper, (int, float))
        return self.ours - paper if numbers else None


@dataclass(frozen=True)
class Quantity:
    label: str
    fmt: Callable[[float], str]


def _count(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"


QUANTITIES: dict[str, Quantity] = {  # in the order tables show them
    "params": Quantity("Params", _count),
    "flops": Quantity("FLOPs", lambda v: f"{v / 1e6:,.2f}M"),
    "memory_mib": Quantity("Memory (MiB)", lambda v: f"{v:.2f}"),
    "memory": Quantity("Memory ×Euler", lambda v: f"{v:.2f}"),
    "time": Quantity("Time ×Euler", lambda v: f"{v:.2f}"),
    "speedup_080": Quantity("Speed to 0.80", lambda v: f"{v:.2f}"),
    "speedup_085": Quantity("Speed to 0.85", lambda v: f"{v:.2f}"),
    "extra_params": Quantity("Extra params", lambda v: f"{v:,.0f}"),
    "value": Quantity("Value", _count),
    "accuracy": Quantity("Accuracy (%)", lambda v: f"{v:.2f}"),
    "error": Quantity("Error (%)", lambda v: f"{v:.2f}"),
    "nfe": Quantity("NFE", lambda v: f"{v:.2f}"),
}
RESULTS = ("accuracy", "error")


def train_command(row: Row, budget: str) -> str:
    return "python train.py " + " ".join([*row.overrides, f"budget={budget}"])


def trains(row: Row, quantity: str) -> bool:
    """Whether runs fill the row's `quantity` (accuracy or error): it has overrides, and the paper published that
    quantity or the row asks to be trained anyway (`train: true`)."""
    return bool(row.overrides) and (row.published.get(quantity) is not None or row.train)


# --------------------------------------------------------------------------- results from runs
def result_cell(row: Row, table: Table, index: RunIndex, metric: str) -> Cell:
    pub = row.published
    cell = Cell(paper=pub.get(metric), paper_mean=pub.mean(metric), paper_spread=pub.spread(metric),
                reported=table.reported(row))
    if not trains(row, metric):  # no command: a row without overrides names a model this repository does not build
        cell.source = "not trained" if row.overrides else "not built here"  # UNTRAINED
        return cell
    cell.command = train_command(row, index.budget)
    values = row_values(row, index, metric)
    diverged = sum(r["status"] == "diverged" for r in index.runs_for(row.overrides))
    stale = len(index.stale_for(row.overrides))
    cell.left_out = ", ".join(s for s in (f"{diverged} diverged" if diverged else "",
                                          f"{stale} stale left out" if stale else "") if s)
    if values.runs:
        cell.spread = spread(values.protocol, higher_is_better=metric != "error")
        cell.free = spread(values.free, higher_is_better=metric != "error")
        cell.ours, cell.runs, cell.source, cell.command = cell.spread.mean, values.runs, "runs", None
    return cell


def nfe_cell(row: Row, index: RunIndex) -> Cell | None:
    values = [get(r, "metrics.final")["test/nfe"] for r in index.runs_for(row.overrides)
              if "test/nfe" in (get(r, "metrics.final") or {})]
    return Cell(statistics.mean(values), None, "runs: F-evaluations per test forward pass, last epoch") \
        if values else None


# --------------------------------------------------------------------------- counts and measurements
def count_cells(row: Row, table: Table, memory: bool) -> dict[str, Cell]:
    pub = row.published
    wanted = [q for q in ("params", "flops", "memory_mib") if pub.lists(q)]
    if not wanted:
        return {}
    if not row.overrides:
        return {q: Cell(paper=pub.get(q), source="not built here") for q in wanted}
    stats = row_stats(row, table, flops=pub.lists("flops"), memory=memory and pub.lists("memory_mib"))
    cells = {"params": Cell(stats["params"], stats["paper_params"], "count", agrees=stats["params_ok"])} \
        if pub.lists("params") else {}
    if pub.lists("flops"):
        paper = pub.flops if pub.flops is not None else pub.flops_min
        cells["flops"] = Cell(stats["flops"], paper, "count (FlopCounterMode)", agrees=stats["flops_ok"],
                              paper_is_bound=pub.flops is None and paper is not None)
    if pub.lists("memory_mib"):
        cells["memory_mib"] = Cell(stats.get("memory_mib"), pub.memory_mib,
                                   "measured, CPU, no CUDA context" if memory else "",
                                   None if memory else "python scripts/tables.py")
    return cells


def bench_cells(row: Row, bench: dict | None) -> dict[str, Cell]:
    """HO-ResNet Table 2: training memory and time per step relative to Euler at equal depth, from the deepest
    depth `make bench` measured (its `schemes` rows)."""
    rows = [r for r in (bench or {}).get("schemes", {}).get("rows", []) if r.get("scheme") == row.scheme
            and "time_ratio" in r]
    ours = max(rows, key=lambda r: r["depth"], default=None)
    source = f"make bench (depth {ours['depth']}, outputs/bench/bench.json)" if ours else ""
    return {q: Cell(None if ours is None else ours[f"{q}_ratio"], row.published.get(q), source,
                    None if ours else "make bench") for q in ("memory", "time")}


def speedup_cells(table: Table, index: RunIndex) -> dict[str, dict[str, Cell]]:
    """HO-ResNet Table 4: Euler's training seconds to each threshold (`SPEED_THRESHOLDS`) over each scheme's."""
    seconds = {}
    for row in table.rows:
        runs = [r for r in index.runs_for(row.overrides) if r["status"] == "completed"]
        seconds[row.row] = {q: _mean([time_to_accuracy(r["history"], th) for r in runs])
                            for q, th in SPEED_THRESHOLDS.items()}
    schemes = {row.row: scheme_key(OmegaConf.to_container(compose_row(list(row.overrides)), resolve=True))
               for row in table.rows}
    out = {row.row: {} for row in table.rows}
    for q in SPEED_THRESHOLDS:
        speedups = speedup_over_euler({name: (schemes[name], seconds[name][q]) for name in seconds})
        for row in table.rows:
            ours = speedups[row.row]
            out[row.row][q] = Cell(ours, row.published.get(q), "runs: Euler's training seconds / this "
                                   "scheme's" if ours else "", None if ours else train_command(row, index.budget))
    return out


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def extra_params_cell(row: Row) -> Cell:
    from odenets.core.blocks import RKBlock
    from odenets.models import build_model

    model = build_model(compose_row(list(row.overrides)).model)
    learned = sum(p.numel() for m in model.modules() if isinstance(m, RKBlock) for p in m.learned_parameters().values())
    return Cell(learned, row.published.extra_params, "count")


ECG_COMMAND = "python train.py experiment=heunnet/ecg (downloads the MIT-BIH records with wfdb when online)"


def ecg_cells(table: Table) -> dict[str, dict[str, Cell]]:
    """HeunNet Table 1 from our MIT-BIH pipeline on the records present; without records (and no internet) each
    cell says how to get them. Any other error is a bug and surfaces."""
    from odenets.data import build_datamodule
    from odenets.errors import ConfigError

    cfg = compose_row(list(table.rows[0].overrides))
    dm = build_datamodule(cfg.dataset)
    try:
        dm.prepare_data()
        dm.setup()
    except ConfigError as e:  # the data module's one line: the records expected and where
        return {row.row: {"value": Cell(None, row.published.value, f"no records ({e})", ECG_COMMAND)}
                for row in table.rows}
    source = f"our ECG pipeline ({len(dm.record_beats())} records)"
    values = [len(dm.train) + len(dm.test), cfg.dataset.num_classes, cfg.dataset.get("fs", 125),
              "[" + ", ".join(f"{c}: {i}" for i, c in enumerate(("N", "S", "V", "F", "Q"))) + "]"]
    return {row.row: {"value": Cell(v, row.published.value, source)}
            for row, v in zip(table.rows, values, strict=True)}


def table_cells(table: Table, index: RunIndex | None, bench: dict | None, memory: bool) -> list[dict[str, Cell]]:
    """Every row's cells, by quantity."""
    quantities = table.quantities()
    special = speedup_cells(table, index) if "speedup_080" in quantities and index is not None else {}
    special.update(ecg_cells(table) if "value" in quantities else {})
    out = []
    for row in table.rows:
        pub = row.published
        cells = {**special.get(row.row, {}), **count_cells(row, table, memory)}
        if "memory" in quantities:
            cells.update(bench_cells(row, bench))
        if pub.lists("extra_params"):
            cells["extra_params"] = extra_params_cell(row)
        for q in RESULTS:
            if pub.lists(q) and index is not None:
                cells[q] = result_cell(row, table, index, q)
        if index is not None and row.overrides and (nfe := nfe_cell(row, index)) is not None:
            cells["nfe"] = nfe
        out.append(cells)
    return out
