"""The results summary: per paper, the verdict table (its claims tested on our seeds) and its forest plot, then every
trained row of the budget's tables (the results columns of the one table rendering), then the training time; from
run records alone (no counts, no measurements), so the committed records determine it. docs/results.md holds it
whole (`results_summary`); the README, between markers (`odenets.reporting.report`), the verdicts
(`verdict_summary`). The forest plots are linked under `figures` (`odenets.reporting.report.write_forests` draws
them from the same verdicts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from odenets.formatting import markdown_grid
from odenets.reporting.budget import load_budget
from odenets.reporting.cells import RESULTS
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table
from odenets.reporting.render import VERDICT_LEGEND, RenderedTable, footer, grid, verdict_grid
from odenets.reporting.tables import render_all
from odenets.reporting.verdicts import Verdict
from odenets.results import get

PAPERS = {"heunnet": "HeunNet (Maleki et al.)", "horesnet": "HO-ResNet (Luo et al.)",
          "rkcnn": "RKCNN (Zhu et al.)"}


def _hours(runs: Iterable[dict]) -> float:
    return sum(r.get("wall_time_s") or 0 for r in runs) / 3600


def rendered_tables(names: Sequence[str], index: RunIndex) -> list[RenderedTable]:
    """The tables' result rows (runs only: no counts or measurements)."""
    return render_all([name for name in names if _has_results(name)], index, memory=False)


def _has_results(name: str) -> bool:
    return any(r.published.lists(q) for r in load_table(name).rows for q in RESULTS)


def by_paper(verdicts: Iterable[Verdict]) -> dict[str, list[Verdict]]:
    """`verdicts` per paper, in `PAPERS`' order (papers with none left out)."""
    verdicts = list(verdicts)
    out = {paper: [v for v in verdicts if v.paper_name == paper] for paper in PAPERS}
    return {paper: tested for paper, tested in out.items() if tested}


def forest_name(paper: str, budget: str) -> str:
    """The file name (without suffix) of a paper's forest plot for `budget`."""
    return f"verdicts_{paper}_{budget}"


def verdict_section(tables: Sequence[RenderedTable], figures: str | None = None) -> list[str]:
    """Per paper its verdict table, and its forest plot where `figures` names the folder they are linked from."""
    lines = []
    for paper, tested in by_paper(v for t in tables for v in t.verdicts).items():
        g = verdict_grid(tested)
        title = f"{PAPERS[paper]}: the claims, tested"
        lines += [f"**{title}** (budget {tables[0].budget})", "", markdown_grid(g.texts(), g.columns), ""]
        if figures is not None:
            lines += [f"![{title}, budget {tables[0].budget}]({figures}/{forest_name(paper, tables[0].budget)}.png)",
                      ""]
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
    for overrides, seeds in load_budget(index.budget).trained_rows(names):
        runs = [r for r in index.runs_for(overrides) if r["status"] == "completed"]
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


def verdict_summary(names: Sequence[str], index: RunIndex, tables: Sequence[RenderedTable] | None = None,
                    figures: str | None = None) -> str:
    """The verdict tables (and forest plots, linked from `figures`), how complete the records are and the training
    time: the README's block. `tables`: `rendered_tables(names, index)`, when rendered already."""
    tables = rendered_tables(names, index) if tables is None else tables
    return "\n".join([*verdict_section(tables, figures), _coverage_line(names, index, False), "", _time_line(index)])


def results_summary(names: Sequence[str], index: RunIndex, tables: Sequence[RenderedTable] | None = None,
                    figures: str | None = None) -> str:
    """docs/results.md: the verdicts (forest plots linked from `figures`), every trained row, the coverage."""
    tables = rendered_tables(names, index) if tables is None else tables
    parts = verdict_section(tables, figures)
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
