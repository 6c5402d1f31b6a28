"""One rendering of a table, written out as Markdown, CSV, LaTeX and HTML (and the README's block).

`grid(t)` lays a rendered table out once: a row's label (with the numbers of its footnotes), then per
quantity ours / paper / Δ (a result: our mean ± sample std over the n seeds, the paper's number saying what it
is, and our mean less the paper's mean where it gives one, else its number), then the provenance of its runs in
columns (our best seed where the paper's number is a best of runs, the selection-free value, epochs or steps, the
budget's note, commit). Each shown cell carries a hover text (where its number comes from: runs with their
directories and commits, a count, a measurement, what the paper's number is), which HTML shows as a tooltip. Long
notes and the commands that fill missing cells become numbered footnotes under the table. Every format is that
grid. `verdict_grid` lays out the claims tested (`odenets.reporting.verdicts`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from odenets.formatting import markdown_grid
from odenets.reporting.cells import QUANTITIES, RESULTS, Cell
from odenets.reporting.published import Table
from odenets.reporting.stats import Spread
from odenets.reporting.verdicts import ALPHA, Verdict
from odenets.results import commits, get

MISSING = "—"
BEST_OF = "best of n"
PROVENANCE = (BEST_OF, "selection-free", "epochs", "budget note", "commit")
UNTRAINED = ("not trained", "not built here")
VERDICT_LEGEND = (
    "Δ: the difference of our means in the claim's direction, of the selection-free values (each seed's test value "
    "at its validation-best epoch, or its last epoch's: no epoch chosen on the test set), with Welch's 95% "
    "interval; p: Welch's two-sided p-value; p (Holm): adjusted within the paper's claims of this budget (one family "
    "per paper, over the claims with two or more seeds a side); verdict: supported / contradicted when the Holm "
    f"p is below {ALPHA} and our difference is positive / negative, else inconclusive; size: whether the paper's "
    "own difference lies inside our Holm-adjusted interval (Welch's at the level of the claim's Holm step); seeds "
    f"to decide: per side, for 80% power at the observed difference and spread, two-sided at {ALPHA} / m (m claims "
    "in the family); p (perm.): a permutation test of the same difference, a check on Welch's normal assumption "
    "with few seeds; protocol: the papers' protocol, each seed's best test value over epochs (the last epoch's "
    "where the row says so), tested the same way in its own family, ≠ where its verdict differs; STALE: runs of "
    "code that has changed since (their rerun is pending), shown only where no run of the current code covers "
    "the row")


@dataclass
class RenderedTable:
    table: Table
    budget: str
    quantities: list[str]
    rows: list[tuple[str, dict[str, Cell], str | None]] = field(default_factory=list)  # (row, cells, note)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def title(self) -> str:
        return self.table.title

    @property
    def paper(self) -> str:
        return self.table.paper


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


def _mean_std(s: Spread | None) -> str:
    if s is None:
        return MISSING
    return f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else f"{s.mean:.2f}"


def _ours(q: str, c: Cell) -> str:
    """A result cell's mean ± std (n); any other cell's value."""
    return f"{_mean_std(c.spread)} (n={c.spread.n})" if c.spread else _fmt(q, c.ours)


def _paper(q: str, c: Cell) -> Shown:
    text = (">" if c.paper_is_bound else "") + _fmt(q, c.paper)
    r = c.reported if q in RESULTS and c.paper is not None else None
    said = [f"best of {r.n or 'several'}"] if r and r.best_of_runs else []
    said += [f"mean {c.paper_spread}"] if c.paper_spread else []
    return Shown(text + (f" ({'; '.join(said)})" if said else ""),
                 f"the paper's number: {r.describe()} ({r.quote})" if r else "")


def provenance_columns(c: Cell | None, best_of: bool) -> list[Shown]:
    """Our best seed (`best_of`: where the paper's number is its best run's), the selection-free values, epochs, the
    budget's note, commit of a result cell's runs."""
    shown = PROVENANCE if best_of else PROVENANCE[1:]
    if c is None or not c.runs:
        return [Shown(MISSING, c.left_out if c else "")] + [Shown(MISSING)] * (len(shown) - 1)
    runs = c.runs
    stale = sum(bool(r.get("stale_modules")) for r in runs)
    dirs = "\n".join(r.get("run_dir", "") for r in runs)
    commit = commits(runs, label=False) + (f" (STALE: {stale})" if stale else "")
    best = c.reported is not None and c.reported.best_of_runs and c.paper is not None
    out = [Shown(f"{c.spread.best:.2f}" if best else MISSING,
                 f"our best of the {c.spread.n} seeds, beside the paper's best of its runs" if best else "")] \
        if best_of else []
    return out + [Shown(_mean_std(c.free), "each seed's test value at its validation-best epoch, or its last "
                                           "epoch's (what the verdicts test); mean ± sample std" + (
                                               f"; {c.left_out}" if c.left_out else "")),
                  Shown(epochs_or_steps(runs)), Shown(str(get(runs[0], "config.budget.note") or "")),
                  Shown(commit, dirs)]


def grid(t: RenderedTable, quantities: Sequence[str] | None = None, trained_only: bool = False) -> Grid:
    """The table laid out once (see the module docstring); `quantities` and `trained_only` (rows with a result
    cell) select what the README's block shows."""
    quantities = list(quantities or t.quantities)
    results = [q for q in quantities if q in RESULTS]
    shown_rows = [(row, cells, note) for row, cells, note in t.rows
                  if not trained_only or any(q in cells and cells[q].source not in UNTRAINED for q in results)]
    result_cells = [next((cells[q] for q in results if q in cells), None) for _, cells, _ in shown_rows]
    best_of = any(c is not None and c.reported is not None and c.reported.best_of_runs for c in result_cells)
    columns = ["Row"] + [f"{QUANTITIES[q].label} {part}" for q in quantities for part in ("ours", "paper", "Δ")]
    columns += list(PROVENANCE if best_of else PROVENANCE[1:]) if results else []
    out = Grid(columns, [], [], [], [])
    for (row, cells, note), result in zip(shown_rows, result_cells, strict=True):
        label = row
        if note:
            out.notes.append(f"{row}: {note}")
            label += f" [{len(out.notes)}]"
        shown = [Shown(label)]
        for q in quantities:
            c = cells.get(q, Cell())
            ours = _ours(q, c)
            if c.ours is None and c.command:
                if c.command not in out.commands:
                    out.commands.append(c.command)
                ours += f" [{_letter(out.commands.index(c.command))}]"
            shown += [Shown(ours, c.source), _paper(q, c), Shown(_diff(q, c))]
        if results:
            shown += provenance_columns(result, best_of)
        out.rows.append(shown)
    sources = sorted({c.source for _, cells, _ in t.rows for q, c in cells.items()
                      if q in quantities and c.source and c.source != "runs"})
    if results:
        out.legend.append(f"ours: mean ± sample std over the n seeds of each seed's best test value over epochs (the "
                          f"papers' protocol; the last epoch's where a note says so), runs of budget {t.budget}; Δ: "
                          f"our mean less the paper's mean over its runs where it gives one, else its number; "
                          f"selection-free: the same seeds' test value at the validation-best epoch, or the last "
                          f"epoch's (what the verdicts test)" + (f"; {BEST_OF}: our best seed, where the paper's "
                                                                 f"number is the best of its runs" if best_of else ""))
        if t.table.reports is not None:
            out.legend.append(f"paper: {t.table.reports.describe()} (\"{t.table.reports.quote}\")"
                              + ("; some rows say otherwise (their hover text)" if any(
                                  r.reports is not None for r in t.table.rows) else ""))
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
    """Claim, the paper's numbers, ours (mean ± std, n), the difference with its interval, the p-values (Welch's,
    Holm-adjusted, permutation), the verdicts, the seeds to decide, and the papers' protocol beside."""
    columns = ["claim", "paper (better / worse)", "ours: better", "ours: worse", "Δ [95% CI]", "p", "p (Holm)",
               "p (perm.)", "verdict", "size", "seeds to decide", "protocol: Δ", "protocol: verdict"]
    rows = []
    for v in verdicts:
        pb, pw = v.paper
        paper = MISSING if pb is None or pw is None else f"{pb:.2f} / {pw:.2f} ({v.paper_diff:+.2f})"
        side = lambda s, stale: MISSING if s is None else f"{_mean_std(s)} (n={s.n}{', STALE' if stale else ''})"
        f, c = v.free, v.free.comparison
        interval = MISSING if c is None else (f"{c.difference:+.2f}" + ("" if c.low is None else
                                                                         f" [{c.low:+.2f}, {c.high:+.2f}]"))
        adjusted = f.adjusted_interval()
        held = f"Holm-adjusted interval [{adjusted[0]:+.2f}, {adjusted[1]:+.2f}] (level {1 - f.level:.4f})" \
            if adjusted else ""
        pc = v.protocol.comparison
        rows.append([Shown(v.text, f"{v.claim.better} above {v.claim.worse}"), Shown(paper),
                     Shown(side(f.ours[0], v.stale[0]), v.claim.better),
                     Shown(side(f.ours[1], v.stale[1]), v.claim.worse),
                     Shown(interval, "difference of our selection-free means in the claim's direction, 95% Welch "
                                     "interval" + (f"; {held}" if held else "")),
                     Shown(p_value(c.p if c else None), "Welch's two-sided p"),
                     Shown(p_value(f.adjusted), f"Holm within {f.family} claims" if f.family else ""),
                     Shown(p_value(f.permutation)), Shown(v.sign), Shown(v.size),
                     Shown(v.decide, f"seeds per side for 80% power at the observed difference and spread, at "
                                     f"{ALPHA} / {f.family}" if v.decide else ""),
                     Shown(MISSING if pc is None else f"{pc.difference:+.2f}",
                           "the papers' protocol: each seed's best test value over epochs"),
                     Shown(v.protocol.verdict + (" ≠" if v.differs else ""),
                           f"p (Holm) {p_value(v.protocol.adjusted)}; differs from the selection-free verdict"
                           if v.differs else f"p (Holm) {p_value(v.protocol.adjusted)}")])
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
