"""The papers' tables with our numbers beside the published ones, cell by cell.

Every published table (`src/odenets/reporting/published/*.yaml`) is rendered for one budget. Each quantity
gets three columns, ours, the paper's and the difference, and every value says where it comes
from:

* results (accuracy, error): the runs under `outputs/runs` whose config equals the row's
  (`python train.py <row overrides> budget=<budget>`) up to the seed. The papers report the best
  test value over epochs; so do we (`metrics.best`), with mean ± std over seeds when there are
  several, and the best seed as the headline number. Runs of another budget never match.
* params, FLOPs, inference memory: counted/measured on the row's model (`odenets.reporting.model_stats`).
* times to an accuracy (HO-ResNet Table 4): from the runs' per-epoch training time, relative to
  the table's Euler row; memory/time ratios (Table 2): from `make bench`'s JSON.
* dataset figures (HeunNet Table 1): from our ECG pipeline.

A cell without a source shows "—" and the command that fills it; rendering never fails because
a result is missing.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from odenets.config import compose_row
from odenets.errors import ConfigError
from odenets.provenance import stale_modules
from odenets.reporting.model_stats import row_stats
from odenets.reporting.published import load_table, table_names
from odenets.reporting.stats import Comparison, markdown_grid, spread, welch
from odenets.results import commits, comparison_key, get, load_runs, scheme_key, speedup_over_euler, time_to_accuracy

MISSING = "—"
RESULT_TABLES = ("horesnet_table2", "horesnet_table3", "horesnet_table4", "horesnet_orderings", "rkcnn_table2",
                 "rkcnn_table3", "rkcnn_table4", "rkcnn_table5", "heunnet_results", "heunnet_table1")


@dataclass
class Cell:
    ours: float | str | None = None
    paper: float | str | None = None
    source: str = ""  # where `ours` comes from: "run: ...", "count", "bench", "ECG pipeline"
    command: str | None = None  # what fills a missing `ours`
    paper_spread: str | None = None  # the paper's mean ± std over runs, where it gives one
    agrees: bool | None = None  # counts: equal within tolerance or at the paper's rounding
    paper_is_bound: bool = False  # the paper gives only a lower bound ("> 19.49M")

    @property
    def diff(self) -> float | None:
        numbers = isinstance(self.ours, (int, float)) and isinstance(self.paper, (int, float))
        return self.ours - self.paper if numbers else None


@dataclass
class RenderedTable:
    name: str
    title: str
    budget: str
    quantities: list[str]
    rows: list[tuple[str, dict[str, Cell], str | None]] = field(default_factory=list)  # (row, cells, note)
    claims: list[tuple[dict, Comparison | None]] = field(default_factory=list)  # the paper's orderings, tested


def trains(row: dict, quantity: str) -> bool:
    """Whether our runs fill the row's `quantity` (accuracy or error): it has overrides, and the paper
    published that quantity or the row asks to be trained anyway (`train: true`)."""
    pub = row.get("published") or {}
    return bool(row.get("overrides")) and (pub.get(quantity) is not None or bool(row.get("train")))


def train_command(row: dict, budget: str) -> str:
    return "python train.py " + " ".join([*row["overrides"], f"budget={budget}"])


# --------------------------------------------------------------------------- results from runs
class RunIndex:
    """Completed and diverged runs keyed by their experiment (the defining config without the seed), from
    every root (the runs under outputs/runs and the committed ones), one per fingerprint (the newest).

    A run whose code has changed since it ran (`odenets.provenance.stale_modules`) is left out and counted
    in `stale`, unless `allow_stale`, which keeps it and marks its cells."""

    def __init__(self, *roots: str | Path, allow_stale: bool = False) -> None:
        self.by_key: dict[str, list[dict]] = defaultdict(list)
        self.stale: dict[str, list[dict]] = defaultdict(list)
        self.allow_stale = allow_stale
        for run in load_runs(*roots):
            if run.get("status") not in ("completed", "diverged"):
                continue
            key = comparison_key(run["config"], ())
            run["stale_modules"] = stale_modules(run)
            if run["stale_modules"] and not allow_stale:
                self.stale[key].append(run)
            else:
                self.by_key[key].append(run)

    def _key(self, row: dict, budget: str) -> str:
        cfg = compose_row([*row["overrides"], f"budget={budget}"])
        return comparison_key(OmegaConf.to_container(cfg, resolve=True), ())

    def runs_for(self, row: dict, budget: str) -> list[dict]:
        return self.by_key.get(self._key(row, budget), [])

    def stale_for(self, row: dict, budget: str) -> list[dict]:
        return self.stale.get(self._key(row, budget), [])


def row_values(row: dict, budget: str, index: RunIndex, metric: str) -> tuple[list[float], list[dict]]:
    """The row's result per completed seed (%, best over epochs; error = 100 - accuracy), and those runs."""
    key = row.get("metric", "test/acc")
    runs = [r for r in index.runs_for(row, budget) if r["status"] == "completed" and key in get(r, "metrics.best", {})]
    values = [100 * r["metrics"]["best"][key] for r in runs]
    return ([100 - v for v in values] if metric == "error" else values), runs


def result_cell(row: dict, budget: str, index: RunIndex, metric: str, paper: float | None) -> Cell:
    """accuracy or error (%) of the row's runs: best over epochs, best over seeds (mean ± sample std, n),
    with the commits they ran at and, for a shortened budget, what it shortened."""
    values, completed = row_values(row, budget, index, metric)
    runs = index.runs_for(row, budget)
    diverged = len([r for r in runs if r["status"] == "diverged"])
    stale = len(index.stale_for(row, budget))
    cell = Cell(paper=paper, command=train_command(row, budget))
    left_out = f"{stale} stale run(s) left out (--allow-stale shows them)" if stale else ""
    if not completed:
        cell.source = "; ".join(s for s in (f"{diverged} diverged run(s)" if diverged else "", left_out) if s)
        return cell
    summary = spread(values, higher_is_better=metric != "error")
    cell.ours = summary.best
    epochs = {r.get("epochs") for r in completed}
    note = get(completed[0], "config.budget.note")
    marked = sum(bool(r.get("stale_modules")) for r in completed)
    parts = (f"runs ({budget}{': ' + note if note and budget != 'paper' else ''}; "
             f"{'/'.join(map(str, sorted(epochs)))} epochs, best over epochs)",
             summary.describe() if summary.n > 1 else "1 seed", commits(completed),
             f"{diverged} diverged" if diverged else "", f"STALE: {marked} run(s) ran older code" if marked else "",
             left_out)
    cell.source = "; ".join(s for s in parts if s)
    cell.command = None
    return cell


def claims(table: dict, budget: str, index: RunIndex) -> list[tuple[dict, Comparison | None]]:
    """The orderings a table claims (`claims`: better row, worse row), each with Welch's comparison of our
    seeds (None where a side has no runs)."""
    rows = {r["row"]: r for r in table["rows"]}
    metric = table.get("metric", "accuracy")
    out = []
    for claim in table.get("claims", ()):
        a, _ = row_values(rows[claim["better"]], budget, index, metric)
        b, _ = row_values(rows[claim["worse"]], budget, index, metric)
        if metric == "error":
            a, b = b, a  # lower error is better: compare the worse row's error minus the better's
        out.append((claim, welch(a, b) if a and b else None))
    return out


# --------------------------------------------------------------------------- counted quantities
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


# --------------------------------------------------------------------------- table-specific sources
def speedup_cells(table: dict, budget: str, index: RunIndex) -> dict[str, dict[str, Cell]]:
    """HO-ResNet Table 4: Euler's seconds to 0.80 / 0.85 training accuracy over each scheme's."""
    seconds: dict[str, dict[str, float | None]] = {}
    for row in table["rows"]:
        runs = [r for r in index.runs_for(row, budget) if r["status"] == "completed"]
        seconds[row["row"]] = {q: _mean([time_to_accuracy(r["history"], th) for r in runs])
                               for q, th in (("speedup_080", 0.80), ("speedup_085", 0.85))}
    schemes = {row["row"]: scheme_key(OmegaConf.to_container(compose_row(row["overrides"]), resolve=True))
               for row in table["rows"]}
    out = {row["row"]: {} for row in table["rows"]}
    for q in ("speedup_080", "speedup_085"):
        speedups = speedup_over_euler({name: (schemes[name], seconds[name][q]) for name in seconds})
        for row in table["rows"]:
            ours = speedups[row["row"]]
            out[row["row"]][q] = Cell(ours, row["published"].get(q), f"runs ({budget}): Euler's training seconds / "
                                      "this scheme's" if ours else "", None if ours else train_command(row, budget))
    return out


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def extra_params_cell(row: dict) -> Cell:
    from odenets.models import build_model

    cfg = compose_row(row["overrides"])
    model = build_model(cfg.model)
    learned = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".h") or ".learned." in n)
    return Cell(learned, row["published"].get("extra_params"), "count")


def bench_cells(row: dict, bench: dict | None) -> dict[str, Cell]:
    """HO-ResNet Table 2: training memory and time per step relative to Euler at equal depth, from the
    deepest depth `make bench` measured (its `schemes` rows)."""
    rows = [r for r in (bench or {}).get("schemes", {}).get("rows", []) if r.get("scheme") == row["scheme"]
            and "time_ratio" in r]
    ours = max(rows, key=lambda r: r["depth"], default=None)
    source = f"make bench (depth {ours['depth']}, outputs/bench/bench.json)" if ours else ""
    return {q: Cell(None if ours is None else ours[f"{q}_ratio"], row["published"].get(q), source,
                    None if ours else "make bench") for q in ("memory", "time")}


def ecg_cells(table: dict) -> dict[str, dict[str, Cell]]:
    """HeunNet Table 1 from our MIT-BIH pipeline (whatever records are present)."""
    from odenets.data import build_datamodule

    command = "python train.py experiment=heunnet/ecg (downloads the MIT-BIH records with wfdb when online)"
    try:
        cfg = compose_row(table["rows"][0]["overrides"])
        dm = build_datamodule(cfg.dataset)
        dm.prepare_data()
        dm.setup()
    except Exception as e:  # no records here and no internet: every cell says how to fill it
        return {row["row"]: {"value": Cell(None, row["published"]["value"], f"no records ({e})", command)}
                for row in table["rows"]}
    records = dm.record_beats()
    source = f"our ECG pipeline ({len(records)} records)"
    values = [len(dm.train) + len(dm.test), cfg.dataset.num_classes, cfg.dataset.get("fs", 125),
              "[" + ", ".join(f"{c}: {i}" for i, c in enumerate(("N", "S", "V", "F", "Q"))) + "]"]
    return {row["row"]: {"value": Cell(v, row["published"]["value"], source)}
            for row, v in zip(table["rows"], values, strict=True)}


# --------------------------------------------------------------------------- one table
def render(name: str, budget: str = "paper", index: RunIndex | None = None, bench: dict | None = None,
           memory: bool = True) -> RenderedTable:
    table = load_table(name)
    quantities = [q for q in ("params", "flops", "memory_mib", "memory", "time", "speedup_080", "speedup_085",
                              "extra_params", "value", "accuracy", "error")
                  if any(q in (r.get("published") or {}) for r in table["rows"])]
    out = RenderedTable(name, table.get("title", name), budget, quantities)
    special = speedup_cells(table, budget, index) if "speedup_080" in quantities else {}
    special.update(ecg_cells(table) if "value" in quantities else {})
    for row in table["rows"]:
        pub = row.get("published") or {}
        cells = {**special.get(row["row"], {}), **count_cells(row, table, memory)}
        if "memory" in quantities:
            cells.update(bench_cells(row, bench))
        if "extra_params" in pub:
            cells["extra_params"] = extra_params_cell(row)
        for q in ("accuracy", "error"):
            if q in pub:
                if trains(row, q):
                    cells[q] = result_cell(row, budget, index, q, pub[q])
                else:
                    cells[q] = Cell(None, pub.get(q), "not trained" if row.get("overrides") else "not built here")
                if pub.get(f"{q}_mean") is not None:
                    cells[q].paper_spread = f"{pub[f'{q}_mean']} ± {pub.get(f'{q}_std')}"
        if index is not None and row.get("overrides") and (nfe := nfe_cell(row, budget, index)) is not None:
            cells["nfe"] = nfe
        out.rows.append((row["row"], cells, row.get("note")))
    if any("nfe" in cells for _, cells, _ in out.rows):
        out.quantities.append("nfe")
    if index is not None:
        out.claims = claims(table, budget, index)
    return out


def nfe_cell(row: dict, budget: str, index: RunIndex) -> Cell | None:
    """ODE-Net / RK-Net: F-evaluations per test forward pass in the last epoch (mean over seeds), where logged."""
    values = [get(r, "metrics.final")["test/nfe"] for r in index.runs_for(row, budget)
              if "test/nfe" in (get(r, "metrics.final") or {})]
    if not values:
        return None
    return Cell(statistics.mean(values), None, "runs: F-evaluations per test forward pass, last epoch")


# --------------------------------------------------------------------------- output formats

LABELS = {"params": "Params", "flops": "FLOPs", "memory_mib": "Memory (MiB)", "memory": "Memory ×Euler",
          "time": "Time ×Euler", "speedup_080": "Speed to 0.80", "speedup_085": "Speed to 0.85",
          "extra_params": "Extra params", "value": "Value", "accuracy": "Accuracy (%)", "error": "Error (%)",
          "nfe": "NFE"}


def _fmt(q: str, v) -> str:
    if v is None:
        return MISSING
    if isinstance(v, str):
        return v
    if q in ("params", "extra_params", "value"):
        return f"{v:,.0f}" if abs(v) >= 1000 or q == "extra_params" else f"{v:g}"
    if q == "flops":
        return f"{v / 1e6:,.2f}M"
    return f"{v:.2f}"


def to_frame(t: RenderedTable) -> pd.DataFrame:
    """One line per row and quantity: ours, paper, difference, where ours comes from, how to fill it."""
    lines = []
    for row, cells, note in t.rows:
        for q in t.quantities:
            c = cells.get(q)
            if c is None:
                continue
            lines.append({"table": t.name, "budget": t.budget, "row": row, "quantity": q, "ours": c.ours,
                          "paper": c.paper, "diff": c.diff, "paper_spread": c.paper_spread,
                          "source": c.source, "command": c.command, "note": note})
    return pd.DataFrame(lines)


def to_markdown(t: RenderedTable) -> str:
    head = ["Row"] + [f"{LABELS[q]} {part}" for q in t.quantities for part in ("ours", "paper", "Δ")]
    grid, commands, notes = [], [], []
    for row, cells, note in t.rows:
        out = [row]
        for q in t.quantities:
            c = cells.get(q, Cell())
            paper = (">" if c.paper_is_bound else "") + _fmt(q, c.paper) + \
                (f" ({c.paper_spread})" if c.paper_spread else "")
            diff = MISSING if c.diff is None else f"{100 * c.diff / c.paper:+.2f}%" if q in ("params", "flops") \
                else f"{c.diff:+,}" if isinstance(c.diff, int) else f"{c.diff:+.2f}"
            diff += {True: " ✓", False: " ✗", None: ""}[c.agrees]
            ours = _fmt(q, c.ours)
            if c.ours is None and c.command:
                if c.command not in commands:
                    commands.append(c.command)
                ours += f" [{commands.index(c.command) + 1}]"
            out += [ours, paper, diff]
        grid.append(out)
        if note:
            notes.append(f"- {row}: {note}")
    lines = [f"### {t.name}: {t.title} (budget: {t.budget})", "", markdown_grid(grid, head)]
    sources = sorted({c.source for _, cells, _ in t.rows for c in cells.values() if c.source})
    lines += ["", "Sources: " + "; ".join(sources) if sources else ""]
    if any(c.agrees is not None for _, cells, _ in t.rows for c in cells.values()):
        lines += ["", "✓ / ✗: within 0.5% (params; or equal at the paper's rounding) or 2% (FLOPs), or not."]
    if t.claims:
        lines += ["", "Orderings the paper claims, on our runs (mean difference in points, 95% Welch interval over "
                      "seeds):"]
        for claim, comparison in t.claims:
            verdict = comparison.describe() if comparison else "no runs yet"
            lines.append(f"- {claim['better']} above {claim['worse']}: {verdict}")
    if notes:
        lines += ["", "Notes:", *notes]
    if commands:
        lines += ["", "Missing cells are filled by:", *[f"{i}. `{c}`" for i, c in enumerate(commands, 1)]]
    return "\n".join(lines) + "\n"


def _wall_hours(runs: Iterable[dict]) -> float:
    return sum(r.get("wall_time_s") or 0 for r in runs) / 3600


def results_summary(names: Sequence[str], budget: str, index: RunIndex) -> str:
    """The README's "Results" block: for each table, every trained row's result (best over epochs, best
    seed; mean ± sample std over seeds), the paper's, the difference, the epochs and commits; then the
    orderings the paper claims, tested on our seeds. Built from runs only (no counts, no measurements),
    so the committed records alone determine it."""
    parts = []
    for name in names:
        table = load_table(name)
        grid, used = [], {}
        for row in table["rows"]:
            pub = row.get("published") or {}
            for q in ("accuracy", "error"):
                if q not in pub or not trains(row, q):
                    continue
                values, runs = row_values(row, budget, index, q)
                if not values:
                    grid.append([row["row"], MISSING, MISSING, _fmt(q, pub.get(q)), MISSING, MISSING, MISSING])
                    continue
                used.update((r["fingerprint"], r) for r in runs)
                s = spread(values, higher_is_better=q != "error")
                diff = MISSING if pub.get(q) is None else f"{s.best - pub[q]:+.2f}"
                std = f"{s.mean:.2f} ± {s.std:.2f} (n={s.n})" if s.n > 1 else "n=1"
                epochs = "/".join(map(str, sorted({r.get("epochs") for r in runs})))
                grid.append([row["row"], f"{s.best:.2f}", std, _fmt(q, pub.get(q)), diff, epochs,
                             commits(runs, label=False)])
        if not grid:
            continue
        metric = "error (%)" if any("error" in (r.get("published") or {}) for r in table["rows"]) else "accuracy (%)"
        hours = _wall_hours(used.values())
        threads = "/".join(map(str, sorted({get(r, "device.torch_threads") for r in used.values()} - {None})))
        parts += [f"**{table.get('title', name)}** (`{name}`, budget {budget}; {metric})", "",
                  markdown_grid(grid, ["row", "ours", "mean ± std", "paper", "Δ", "epochs", "commit"]), "",
                  f"{len(used)} runs, {hours:.2f} h of training wall time ({threads} torch thread(s) each).", ""]
        tested = claims(table, budget, index)
        if tested:
            parts += [f"- {c['better']} above {c['worse']}: {cmp.describe() if cmp else 'no runs yet'}"
                      for c, cmp in tested] + [""]
    every = [r for runs in index.by_key.values() for r in runs if get(r, "config.budget.name") == budget]
    parts.append(f"All {len(every)} runs of budget {budget} (the tables' and the figures' sweeps): "
                 f"{_wall_hours(every):.2f} h of training wall time.")
    return "\n".join(parts)


def to_latex(t: RenderedTable) -> str:
    wide = to_frame(t)
    if wide.empty:
        return ""
    columns = zip(wide["quantity"], wide["ours"], wide["paper"], strict=True)
    wide["cell"] = [f"{_fmt(q, o)} / {_fmt(q, p)}" for q, o, p in columns]
    pivot = wide.pivot_table(index="row", columns="quantity", values="cell", aggfunc="first", sort=False)
    pivot = pivot[[q for q in t.quantities if q in pivot.columns]].rename(columns=LABELS).fillna(MISSING)
    return pivot.to_latex(caption=f"{t.title} (ours / paper, budget: {t.budget})", label=f"tab:{t.name}")


def write_all(out_dir: str | Path, budget: str = "paper", runs_dirs: tuple[str | Path, ...] = ("outputs/runs",),
              bench_path: str | Path = "outputs/bench/bench.json", names: tuple[str, ...] = RESULT_TABLES,
              memory: bool = True, log: Callable[[str], None] = print,
              allow_stale: bool = False) -> list[RenderedTable]:
    """Markdown, CSV and LaTeX of every table under `out_dir`; one `tables.csv` with all cells."""
    unknown = [n for n in names if n not in table_names()]
    if unknown:
        raise ConfigError(f"unknown table {unknown[0]!r}; available: {', '.join(table_names())}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = RunIndex(*runs_dirs, allow_stale=allow_stale)
    stale = sum(len(v) for v in index.stale.values())
    if stale:
        log(f"warning: {stale} run(s) ran code that has changed since (a module they imported differs); their cells "
            f"are left out (--allow-stale shows them, marked STALE; force=true reruns them)")
    bench = json.loads(Path(bench_path).read_text()) if Path(bench_path).is_file() else None
    rendered, frames = [], []
    for name in names:
        t = render(name, budget, index, bench, memory)
        (out_dir / f"{name}.md").write_text(to_markdown(t))
        (out_dir / f"{name}.tex").write_text(to_latex(t))
        frame = to_frame(t)
        frame.to_csv(out_dir / f"{name}.csv", index=False)
        frames.append(frame)
        filled = sum(c.ours is not None for _, cells, _ in t.rows for c in cells.values())
        total = sum(len(cells) for _, cells, _ in t.rows)
        log(f"{name}: {filled}/{total} cells filled")
        rendered.append(t)
    pd.concat(frames).to_csv(out_dir / "tables.csv", index=False)
    return rendered
