"""One rendering of a table, written out as Markdown, CSV, LaTeX and HTML (and the README's block).

`grid(t)` lays a rendered table out once: a row's label (with the numbers of its footnotes), then per
quantity ours / paper / Δ, then the provenance of its runs in columns (n, mean ± sample std, epochs or
steps, the budget's note, commit). Each shown cell carries a hover text (where its number comes from: runs
with their directories and commits, a count, a measurement), which HTML shows as a tooltip. Long notes and
the commands that fill missing cells become numbered footnotes under the table. Every format is that grid.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from odenets.reporting.cells import QUANTITIES, RESULTS, Cell
from odenets.reporting.stats import markdown_grid
from odenets.reporting.verdicts import Verdict
from odenets.results import commits, get

MISSING = "—"
PROVENANCE = ("n", "mean ± std", "epochs", "budget note", "commit")
UNTRAINED = ("not trained", "not built here")
VERDICT_LEGEND = ("sign: supported / contradicted when the 95% Welch interval of the difference of our means (in "
                  "the claim's direction) lies above / below 0, else inconclusive; size: whether the paper's own "
                  "difference lies inside that interval; seeds to decide: per side, for 80% power (two-sided 5%) at "
                  "the observed difference and spread; p (perm.): a permutation test of the same difference, a check "
                  "with few seeds; STALE: runs of code that has changed since (their rerun is pending), shown only where "
                  "no run of the current code covers the row")


@dataclass
class RenderedTable:
    name: str
    title: str
    budget: str
    quantities: list[str]
    rows: list[tuple[str, dict[str, Cell], str | None]] = field(default_factory=list)  # (row, cells, note)
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass(frozen=True)
class Shown:
    text: str
    hover: str = ""


@dataclass
class Grid:
    columns: list[str]
    rows: list[list[Shown]]
    notes: list[str]  # footnote i + 1
    commands: list[str]  # missing cells' commands, [a], [b], ...
    legend: list[str]

    def texts(self) -> list[list[str]]:
        return [[c.text for c in row] for row in self.rows]


def _fmt(q: str, v) -> str:
    if v is None:
        return MISSING
    return v if isinstance(v, str) else QUANTITIES[q].fmt(v)


def _diff(q: str, c: Cell) -> str:
    if c.diff is None:
        text = MISSING
    elif q in ("params", "flops"):
        text = f"{100 * c.diff / c.paper:+.2f}%"
    else:
        text = f"{c.diff:+,}" if isinstance(c.diff, int) else f"{c.diff:+.2f}"
    return text + {True: " ✓", False: " ✗", None: ""}[c.agrees]


def _letter(i: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[i] if i < 26 else f"z{i - 25}"


def epochs_or_steps(runs: Sequence[dict]) -> str:
    """The runs' training length: epochs, or optimiser steps where evaluations fell between epoch ends."""
    ends = {r["history"][-1].get("epoch") for r in runs if r.get("history")}
    if any(isinstance(e, float) and not e.is_integer() for e in ends):
        steps = sorted({r["history"][-1].get("step") for r in runs if r.get("history")})
        return "/".join(map(str, steps)) + " steps"
    return "/".join(str(int(e)) for e in sorted(e for e in ends if e is not None)) or MISSING


def provenance_columns(c: Cell | None) -> list[Shown]:
    """n, mean ± std, epochs, the budget's note, commit of a result cell's runs."""
    if c is None or not c.runs:
        return [Shown(MISSING, c.left_out if c else "")] + [Shown(MISSING)] * (len(PROVENANCE) - 1)
    s, runs = c.spread, c.runs
    stale = sum(bool(r.get("stale_modules")) for r in runs)
    dirs = "\n".join(r.get("run_dir", "") for r in runs)
    commit = commits(runs, label=False) + (f" (STALE: {stale})" if stale else "")
    return [Shown(str(s.n), c.left_out), Shown(f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else MISSING,
                                                 "sample std over seeds"),
            Shown(epochs_or_steps(runs)), Shown(str(get(runs[0], "config.budget.note") or "")),
            Shown(commit, dirs)]


def grid(t: RenderedTable, quantities: Sequence[str] | None = None, trained_only: bool = False) -> Grid:
    """The table laid out once (see the module docstring); `quantities` and `trained_only` (rows with a result
    cell) select what the README's block shows."""
    quantities = list(quantities or t.quantities)
    results = [q for q in quantities if q in RESULTS]
    columns = ["Row"] + [f"{QUANTITIES[q].label} {part}" for q in quantities for part in ("ours", "paper", "Δ")]
    columns += list(PROVENANCE) if results else []
    out = Grid(columns, [], [], [], [])
    for row, cells, note in t.rows:
        if trained_only and not any(q in cells and cells[q].source not in UNTRAINED for q in results):
            continue
        label = row
        if note:
            out.notes.append(f"{row}: {note}")
            label += f" [{len(out.notes)}]"
        shown = [Shown(label)]
        for q in quantities:
            c = cells.get(q, Cell())
            ours = _fmt(q, c.ours)
            if c.ours is None and c.command:
                if c.command not in out.commands:
                    out.commands.append(c.command)
                ours += f" [{_letter(out.commands.index(c.command))}]"
            paper = (">" if c.paper_is_bound else "") + _fmt(q, c.paper) + \
                (f" ({c.paper_spread})" if c.paper_spread else "")
            shown += [Shown(ours, c.source), Shown(paper, "the paper's mean ± std over its runs in brackets"
                                                   if c.paper_spread else ""), Shown(_diff(q, c))]
        if results:
            shown += provenance_columns(next((cells[q] for q in results if q in cells), None))
        out.rows.append(shown)
    sources = sorted({c.source for _, cells, _ in t.rows for q, c in cells.items()
                      if q in quantities and c.source and c.source != "runs"})
    if results:
        out.legend.append(f"ours: the best seed's best test value over epochs (or the last epoch's, where a note says "
                          f"so); mean ± sample std over the n seeds; runs of budget {t.budget}")
    if sources:
        out.legend.append("other cells: " + "; ".join(sources))
    if any(c.agrees is not None for _, cells, _ in t.rows for c in cells.values()):
        out.legend.append("✓ / ✗: within 0.5% (params; or equal at the paper's rounding) or 2% (FLOPs), or not")
    return out


def footer(g: Grid) -> list[str]:
    lines = []
    if g.legend:
        lines += ["", *(f"{line}." for line in g.legend)]
    if g.notes:
        lines += ["", *(f"{i}. {note}" for i, note in enumerate(g.notes, 1))]
    if g.commands:
        lines += ["", "Missing cells are filled by:", *(f"[{_letter(i)}] `{c}`" for i, c in enumerate(g.commands))]
    return lines


def verdict_grid(verdicts: Sequence[Verdict]) -> Grid:
    """Claim, the paper's numbers, ours (mean ± std, n), the difference with its interval, and the verdicts."""
    columns = ["claim", "paper (better / worse)", "ours: better", "ours: worse", "Δ [95% CI]", "p (perm.)", "sign",
               "size", "seeds to decide"]
    rows = []
    for v in verdicts:
        pb, pw = v.paper
        paper = MISSING if pb is None or pw is None else f"{pb:.2f} / {pw:.2f} ({v.paper_diff:+.2f})"
        side = lambda s, stale: MISSING if s is None else (
            (f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else f"{s.mean:.2f}") + f" (n={s.n}{', STALE' if stale else ''})")
        c = v.comparison
        interval = MISSING if c is None else (f"{c.difference:+.2f}" + ("" if c.low is None else
                                                                         f" [{c.low:+.2f}, {c.high:+.2f}]"))
        rows.append([Shown(v.text, f"{v.claim['better']} above {v.claim['worse']}"), Shown(paper),
                     Shown(side(v.ours[0], v.stale[0]), v.claim["better"]),
                     Shown(side(v.ours[1], v.stale[1]), v.claim["worse"]),
                     Shown(interval, "difference of our means in the claim's direction, 95% Welch interval"),
                     Shown(p_value(v.permutation)), Shown(v.sign),
                     Shown(v.size), Shown(v.decide, "seeds per side for 80% power at the observed difference "
                                                    "and spread" if v.decide else "")])
    return Grid(columns, rows, [], [], [VERDICT_LEGEND])


def p_value(p: float | None) -> str:
    """A p-value to three decimals; one that rounds to zero says so ("< 0.001") instead of printing 0.000."""
    return MISSING if p is None else ("< 0.001" if p < 0.0005 else f"{p:.3f}")


def to_markdown(t: RenderedTable) -> str:
    g = grid(t)
    lines = [f"### {t.name}: {t.title} (budget: {t.budget})", "", markdown_grid(g.texts(), g.columns), *footer(g)]
    if t.verdicts:
        v = verdict_grid(t.verdicts)
        lines += ["", "Claims tested on our seeds:", "", markdown_grid(v.texts(), v.columns), *footer(v)]
    return "\n".join(lines) + "\n"


def to_frame(t: RenderedTable) -> pd.DataFrame:
    """The grid as a DataFrame (what the CSV holds), with the table and budget in every line."""
    g = grid(t)
    frame = pd.DataFrame(g.texts(), columns=g.columns)
    frame.insert(0, "budget", t.budget)
    frame.insert(0, "table", t.name)
    return frame


def to_latex(t: RenderedTable) -> str:
    g = grid(t)
    return pd.DataFrame(g.texts(), columns=g.columns).to_latex(
        index=False, caption=f"{t.title} (budget: {t.budget})", label=f"tab:{t.name}")


def to_html(g: Grid, caption: str = "") -> str:
    """A grid as an HTML table: every cell's hover text is its tooltip; notes and commands below it."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in g.columns)
    body = "".join("<tr>" + "".join(f'<td title="{esc(c.hover)}">{esc(c.text)}</td>' if c.hover else
                                    f"<td>{esc(c.text)}</td>" for c in row) + "</tr>\n" for row in g.rows)
    foot = "".join(f"<p class='legend'>{esc(line)}.</p>" for line in g.legend)
    foot += "".join(f"<p class='note'>{i}. {esc(n)}</p>" for i, n in enumerate(g.notes, 1))
    foot += "".join(f"<p class='note'>[{_letter(i)}] <code>{esc(c)}</code></p>" for i, c in enumerate(g.commands))
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n{foot}"
