"""The papers' tables with our numbers beside the published ones: `render` tables from a run index, `write_all` of
them as Markdown, CSV and LaTeX (`odenets.reporting.render`).

Every published table (`src/odenets/reporting/published/*.yaml`) is rendered for the index's budget; each cell
says where its number comes from (`odenets.reporting.cells`), a missing one names the command that fills it,
and the claims the paper makes are tested on our seeds (`odenets.reporting.verdicts`), Holm-corrected within
each paper's claims in the budget: the family of a table rendered is every table of its paper the budget lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from odenets.errors import ConfigError
from odenets.reporting.budget import load_budget
from odenets.reporting.cells import QUANTITIES, table_cells
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table, table_names
from odenets.reporting.render import RenderedTable, to_frame, to_latex, to_markdown
from odenets.reporting.verdicts import test_claims


def render(name: str, index: RunIndex | None, bench: dict | None = None, memory: bool = True) -> RenderedTable:
    """Table `name` with its cells (`render_all`)."""
    return render_all([name], index, bench, memory)[0]


def render_all(names: Sequence[str], index: RunIndex | None, bench: dict | None = None,
               memory: bool = True) -> list[RenderedTable]:
    """Tables `names` with their cells, for the index's budget (`index=None`: counts and measurements only), and
    their claims tested within the families of the budget's tables."""
    tables = [load_table(name) for name in names]
    verdicts = {}
    if index is not None:
        papers = {t.paper for t in tables}
        listed = [load_table(n) for n in load_budget(index.budget).tables if n not in names]
        verdicts = test_claims([*tables, *(t for t in listed if t.paper in papers)], index)
    out = []
    for table in tables:
        cells = table_cells(table, index, bench, memory)
        rendered = RenderedTable(table, index.budget if index else "paper",
                                 [q for q in QUANTITIES if any(q in c for c in cells)])
        rendered.rows = [(row.row, c, row.note) for row, c in zip(table.rows, cells, strict=True)]
        rendered.verdicts = verdicts.get(table.name, [])
        out.append(rendered)
    return out


def write_all(out_dir: str | Path, index: RunIndex, names: Sequence[str], bench_path: str | Path | None = None,
              memory: bool = True, log: Callable[[str], None] = print) -> list[RenderedTable]:
    """Markdown, CSV and LaTeX of every table under `out_dir`; one `tables.csv` with all of them."""
    unknown = [n for n in names if n not in table_names()]
    if unknown:
        raise ConfigError(f"unknown table {unknown[0]!r}; available: {', '.join(table_names())}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = index.stale_left_out()
    if stale:
        log(f"warning: {stale} run(s) ran code that has changed since (a module they imported differs); they are "
            f"left out (--allow-stale shows them, marked STALE, where no current run covers their row; force=true "
            f"reruns them)")
    bench = json.loads(Path(bench_path).read_text()) if bench_path and Path(bench_path).is_file() else None
    rendered = render_all(names, index, bench, memory)
    frames = []
    for t in rendered:
        (out_dir / f"{t.name}.md").write_text(to_markdown(t))
        (out_dir / f"{t.name}.tex").write_text(to_latex(t))
        frame = to_frame(t)
        frame.to_csv(out_dir / f"{t.name}.csv", index=False)
        frames.append(frame)
        filled = sum(c.ours is not None for _, cells, _ in t.rows for c in cells.values())
        log(f"{t.name}: {filled}/{sum(len(cells) for _, cells, _ in t.rows)} cells filled")
    pd.concat(frames).to_csv(out_dir / "tables.csv", index=False)
    return rendered
