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


def verdict_summary(names: Sequence[str], index: RunIndex) -> str:
    """The verdict tables and the training time: the README's block."""
    return "\n".join([*verdict_section(rendered_tables(names, index)), _time_line(index)])


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
    parts.append(_time_line(index))
    return "\n".join(parts)
