"""The results summary: a verdict table per paper (its claims tested on our seeds), then every trained row of
the budget's tables (the results columns of the one table rendering), then the training time; from run records
alone (no counts, no measurements), so the committed records determine it. docs/results.md holds it whole
(`results_summary`); the README, between markers (`odenets.reporting.report`), the verdicts
(`verdict_summary`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from odenets.reporting.cells import RESULTS
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table
from odenets.reporting.reproduce import trained_rows
from odenets.reporting.render import VERDICT_LEGEND, RenderedTable, footer, grid, verdict_grid
from odenets.reporting.stats import markdown_grid
from odenets.reporting.tables import render
from odenets.results import get

PAPERS = {"heunnet": "HeunNet (Maleki et al.)", "horesnet": "HO-ResNet (Luo et al.)",
          "rkcnn": "RKCNN (Zhu et al.)"}


def _hours(runs: Iterable[dict]) -> float:
    return sum(r.get("wall_time_s") or 0 for r in runs) / 3600


def rendered_tables(names: Sequence[str], index: RunIndex) -> list[RenderedTable]:
    """The tables' result rows (runs only: no counts or measurements)."""
    return [render(name, index, memory=False) for name in names if _has_results(name)]


def _has_results(name: str) -> bool:
    return any(q in (r.get("published") or {}) for r in load_table(name)["rows"] for q in RESULTS)


def verdict_section(tables: Sequence[RenderedTable]) -> list[str]:
    lines = []
    for paper, title in PAPERS.items():
        tested = [v for t in tables if load_table(t.name)["paper"] == paper for v in t.verdicts]
        if not tested:
            continue
        g = verdict_grid(tested)
        lines += [f"**{title}: the claims, tested** (budget {tables[0].budget})", "",
                  markdown_grid(g.texts(), g.columns), ""]
    if lines:
        lines += [VERDICT_LEGEND + ".", ""]
    return lines


def _time_line(index: RunIndex) -> str:
    every = index.runs()
    return (f"All {len(every)} runs of budget {index.budget} (the tables' and the figures' sweeps): "
            f"{_hours(every):.2f} h of training wall time.")


def coverage(names: Sequence[str], index: RunIndex) -> dict[str, list[str]]:
    """The rows the budget trains, by what the records hold for them: `complete` (every planned seed, current
    code), `partial` (some), `stale` (only runs of code changed since, shown marked STALE) and `missing`."""
    groups: dict[str, list[str]] = {"complete": [], "partial": [], "stale": [], "missing": []}
    for overrides, seeds in trained_rows(names, index.budget):
        runs = [r for r in index.runs_for({"overrides": overrides}) if r["status"] == "completed"]
        group = ("missing" if not runs else "stale" if runs[0].get("stale_modules")
                 else "complete" if len(runs) >= len(seeds or (0,)) else "partial")
        groups[group].append(" ".join(overrides))
    return groups


def _coverage_line(names: Sequence[str], index: RunIndex, listed: bool) -> str:
    groups = coverage(names, index)
    line = (f"Of the {sum(map(len, groups.values()))} rows budget {index.budget} trains, {len(groups['complete'])} "
            f"have every planned seed run on the current code, {len(groups['partial'])} some of them, "
            f"{len(groups['stale'])} only runs of older code (marked STALE) and {len(groups['missing'])} none yet.")
    todo = groups["partial"] + groups["stale"] + groups["missing"]
    return line + ("".join(f"\n- `{r}`" for r in todo) if listed and todo else "")


def verdict_summary(names: Sequence[str], index: RunIndex) -> str:
    """The verdict tables, how complete the records are and the training time: the README's block."""
    return "\n".join([*verdict_section(rendered_tables(names, index)), _coverage_line(names, index, False), "",
                      _time_line(index)])


def results_summary(names: Sequence[str], index: RunIndex) -> str:
    tables = rendered_tables(names, index)
    parts = verdict_section(tables)
    for t in tables:
        g = grid(t, [q for q in t.quantities if q in RESULTS], trained_only=True)
        runs = {r["fingerprint"]: r for _, cells, _ in t.rows for q in RESULTS if q in cells for r in cells[q].runs}
        if not g.rows:
            continue
        threads = "/".join(map(str, sorted({get(r, "device.torch_threads") for r in runs.values()} - {None})))
        parts += [f"**{t.title}** (`{t.name}`, budget {t.budget})", "", markdown_grid(g.texts(), g.columns),
                  *footer(g), "",
                  f"{len(runs)} runs, {_hours(runs.values()):.2f} h of training wall time "
                  f"({threads or '?'} torch thread(s) each).", ""]
    parts += [_coverage_line(names, index, True), "", _time_line(index)]
    return "\n".join(parts)
