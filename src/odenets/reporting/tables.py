"""The papers' tables with our numbers beside the published ones: `render` one table from a run index,
`write_all` of them as Markdown, CSV and LaTeX (`odenets.reporting.render`).

Every published table (`src/odenets/reporting/published/*.yaml`) is rendered for the index's budget; each cell
says where its number comes from (`odenets.reporting.cells`), a missing one names the command that fills it,
and the claims the paper makes are tested on our seeds (`odenets.reporting.verdicts`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from odenets.errors import ConfigError
from odenets.reporting.cells import QUANTITIES, table_cells
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table, table_names
from odenets.reporting.render import RenderedTable, to_frame, to_latex, to_markdown
from odenets.reporting.verdicts import verdicts


def render(name: str, index: RunIndex | None, bench: dict | None = None, memory: bool = True) -> RenderedTable:
    """Table `name` with its cells, for the index's budget (`index=None`: counts and measurements only)."""
    table = load_table(name)
    cells = table_cells(table, index, bench, memory)
    quantities = [q for q in QUANTITIES if any(q in c for c in cells)]
    out = RenderedTable(name, table.get("title", name), index.budget if index else "paper", quantities)
    out.rows = [(row["row"], c, row.get("note")) for row, c in zip(table["rows"], cells, strict=True)]
    out.verdicts = verdicts(table, index) if index is not None else []
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
    rendered, frames = [], []
    for name in names:
        t = render(name, index, bench, memory)
        (out_dir / f"{name}.md").write_text(to_markdown(t))
        (out_dir / f"{name}.tex").write_text(to_latex(t))
        frame = to_frame(t)
        frame.to_csv(out_dir / f"{name}.csv", index=False)
        frames.append(frame)
        filled = sum(c.ours is not None for _, cells, _ in t.rows for c in cells.values())
        log(f"{name}: {filled}/{sum(len(cells) for _, cells, _ in t.rows)} cells filled")
        rendered.append(t)
    pd.concat(frames).to_csv(out_dir / "tables.csv", index=False)
    return rendered
