"""Where each number of a table comes from: one registry entry per quantity (`QUANTITIES`).

A cell holds ours, the paper's, where ours comes from (runs, a count, a measurement, the ECG pipeline) and,
when ours is missing, the command that fills it. The sources:

* results (`accuracy`, `error`): the row's runs of the index's budget (`odenets.reporting.index`), best over
  epochs (or the last epoch's, `statistic: final`), the best seed as the headline, with mean ± sample std, n,
  epochs, the budget's note and the commits; the papers report the best test value over epochs, so do we;
* counts (`params`, `flops`) and one-image inference memory (`memory_mib`): measured on the row's model
  (`odenets.reporting.model_stats`);
* HO-ResNet Table 2 (`memory`, `time` relative to Euler): `make bench`'s JSON;
* HO-ResNet Table 4 (`speedup_080`, `speedup_085`): Euler's training seconds to the threshold over the scheme's;
  `extra_params`: the learned step sizes counted;
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
from odenets.reporting.stats import Spread, spread
from odenets.results import SPEED_THRESHOLDS, get, scheme_key, speedup_over_euler, time_to_accuracy


@dataclass
class Cell:
    ours: float | str | None = None
    paper: float | str | None = None
    source: str = ""  # where `ours` comes from: "runs", "count", "make bench", "our ECG pipeline"
    command: str | None = None  # what fills a missing `ours`
    paper_spread: str | None = None  # the paper's mean ± std over runs, where it gives one
    agrees: bool | None = None  # counts: equal within tolerance or at the paper's rounding
    paper_is_bound: bool = False  # the paper gives only a lower bound ("> 19.49M")
    runs: tuple[dict, ...] = ()  # the runs behind a result cell
    spread: Spread | None = None  # their values over seeds
    left_out: str = ""  # stale or diverged runs not counted

    @property
    def diff(self) -> float | None:
        numbers = isinstance(self.ours, (int, float)) and isinstance(self.paper, (int, float))
        return self.ours - self.paper if numbers else None


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


def train_command(row: dict, budget: str) -> str:
    return "python train.py " + " ".join([*row["overrides"], f"budget={budget}"])


def trains(row: dict, quantity: str) -> bool:
    """Whether runs fill the row's `quantity` (accuracy or error): it has overrides, and the paper published that
    quantity or the row asks to be trained anyway (`train: true`)."""
    pub = row.get("published") or {}
    return bool(row.get("overrides")) and (pub.get(quantity) is not None or bool(row.get("train")))


# --------------------------------------------------------------------------- results from runs
def result_cell(row: dict, index: RunIndex, metric: str) -> Cell:
    pub = row.get("published") or {}
    cell = Cell(paper=pub.get(metric), command=train_command(row, index.budget))
    if pub.get(f"{metric}_mean") is not None:
        cell.paper_spread = f"{pub[f'{metric}_mean']} ± {pub.get(f'{metric}_std')}"
    if not trains(row, metric):
        cell.source, cell.command = ("not trained" if row.get("overrides") else "not built here"), None  # UNTRAINED
        return cell
    values, completed = row_values(row, index, metric)
    diverged = sum(r["status"] == "diverged" for r in index.runs_for(row))
    stale = len(index.stale_for(row))
    cell.left_out = ", ".join(s for s in (f"{diverged} diverged" if diverged else "",
                                          f"{stale} stale left out" if stale else "") if s)
    if completed:
        cell.spread = spread(values, higher_is_better=metric != "error")
        cell.ours, cell.runs, cell.source, cell.command = cell.spread.best, tuple(completed), "runs", None
    return cell


def nfe_cell(row: dict, index: RunIndex) -> Cell | None:
    values = [get(r, "metrics.final")["test/nfe"] for r in index.runs_for(row)
              if "test/nfe" in (get(r, "metrics.final") or {})]
    return Cell(statistics.mean(values), None, "runs: F-evaluations per test forward pass, last epoch") \
        if values else None


# --------------------------------------------------------------------------- counts and measurements
def count_cells(row: dict, table: dict, memory: bool) -> dict[str, Cell]:
    pub = row.get("published") or {}
    wanted = [q for q in ("params", "flops", "memory_mib") if q in pub]
    if not wanted:
        return {}
    if not row.get("overrides"):
        return {q: Cell(paper=pub.get(q), source="not built here") for q in wanted}
    stats = row_stats(row, table, flops="flops" in pub, memory=memory and "memory_mib" in pub)
    cells = {"params": Cell(stats["params"], stats["paper_params"], "count", agrees=stats["params_ok"])} \
        if "params" in pub else {}
    if "flops" in pub:
        paper = pub.get("flops") if pub.get("flops") is not None else pub.get("flops_min")
        cells["flops"] = Cell(stats["flops"], paper, "count (FlopCounterMode)", agrees=stats["flops_ok"],
                              paper_is_bound=pub.get("flops") is None and paper is not None)
    if "memory_mib" in pub:
        cells["memory_mib"] = Cell(stats.get("memory_mib"), pub.get("memory_mib"),
                                   "measured, CPU, no CUDA context" if memory else "",
                                   None if memory else "python scripts/tables.py")
    return cells


def bench_cells(row: dict, bench: dict | None) -> dict[str, Cell]:
    """HO-ResNet Table 2: training memory and time per step relative to Euler at equal depth, from the deepest
    depth `make bench` measured (its `schemes` rows)."""
    rows = [r for r in (bench or {}).get("schemes", {}).get("rows", []) if r.get("scheme") == row["scheme"]
            and "time_ratio" in r]
    ours = max(rows, key=lambda r: r["depth"], default=None)
    source = f"make bench (depth {ours['depth']}, outputs/bench/bench.json)" if ours else ""
    return {q: Cell(None if ours is None else ours[f"{q}_ratio"], row["published"].get(q), source,
                    None if ours else "make bench") for q in ("memory", "time")}


def speedup_cells(table: dict, index: RunIndex) -> dict[str, dict[str, Cell]]:
    """HO-ResNet Table 4: Euler's training seconds to each threshold (`SPEED_THRESHOLDS`) over each scheme's."""
    seconds = {}
    for row in table["rows"]:
        runs = [r for r in index.runs_for(row) if r["status"] == "completed"]
        seconds[row["row"]] = {q: _mean([time_to_accuracy(r["history"], th) for r in runs])
                               for q, th in SPEED_THRESHOLDS.items()}
    schemes = {row["row"]: scheme_key(OmegaConf.to_container(compose_row(row["overrides"]), resolve=True))
               for row in table["rows"]}
    out = {row["row"]: {} for row in table["rows"]}
    for q in SPEED_THRESHOLDS:
        speedups = speedup_over_euler({name: (schemes[name], seconds[name][q]) for name in seconds})
        for row in table["rows"]:
            ours = speedups[row["row"]]
            out[row["row"]][q] = Cell(ours, row["published"].get(q), "runs: Euler's training seconds / this "
                                      "scheme's" if ours else "", None if ours else train_command(row, index.budget))
    return out


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def extra_params_cell(row: dict) -> Cell:
    from odenets.models import build_model

    model = build_model(compose_row(row["overrides"]).model)
    learned = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".h") or ".learned." in n)
    return Cell(learned, row["published"].get("extra_params"), "count")


ECG_COMMAND = "python train.py experiment=heunnet/ecg (downloads the MIT-BIH records with wfdb when online)"


def ecg_cells(table: dict) -> dict[str, dict[str, Cell]]:
    """HeunNet Table 1 from our MIT-BIH pipeline on the records present; without records (and no internet) each
    cell says how to get them. Any other error is a bug and surfaces."""
    from odenets.data import build_datamodule
    from odenets.errors import ConfigError

    cfg = compose_row(table["rows"][0]["overrides"])
    dm = build_datamodule(cfg.dataset)
    try:
        dm.prepare_data()
        dm.setup()
    except ConfigError as e:  # the data module's one line: the records expected and where
        return {row["row"]: {"value": Cell(None, row["published"]["value"], f"no records ({e})", ECG_COMMAND)}
                for row in table["rows"]}
    source = f"our ECG pipeline ({len(dm.record_beats())} records)"
    values = [len(dm.train) + len(dm.test), cfg.dataset.num_classes, cfg.dataset.get("fs", 125),
              "[" + ", ".join(f"{c}: {i}" for i, c in enumerate(("N", "S", "V", "F", "Q"))) + "]"]
    return {row["row"]: {"value": Cell(v, row["published"]["value"], source)}
            for row, v in zip(table["rows"], values, strict=True)}


def table_cells(table: dict, index: RunIndex | None, bench: dict | None, memory: bool) -> list[dict[str, Cell]]:
    """Every row's cells, by quantity."""
    quantities = {q for r in table["rows"] for q in (r.get("published") or {})}
    special = speedup_cells(table, index) if "speedup_080" in quantities and index is not None else {}
    special.update(ecg_cells(table) if "value" in quantities else {})
    out = []
    for row in table["rows"]:
        pub = row.get("published") or {}
        cells = {**special.get(row["row"], {}), **count_cells(row, table, memory)}
        if "memory" in quantities:
            cells.update(bench_cells(row, bench))
        if "extra_params" in pub:
            cells["extra_params"] = extra_params_cell(row)
        for q in RESULTS:
            if q in pub and index is not None:
                cells[q] = result_cell(row, index, q)
        if index is not None and row.get("overrides") and (nfe := nfe_cell(row, index)) is not None:
            cells["nfe"] = nfe
        out.append(cells)
    return out
