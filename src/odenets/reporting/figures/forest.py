"""Forest plots of the claims tested (`odenets.reporting.verdicts`), one per paper and budget.

One line per claim, top to bottom in the tables' order: our difference of means in the claim's direction (a dot;
right of the zero line = as claimed), Welch's 95% interval as a thick bar and the Holm-adjusted interval as a thin
one (clipped at the axis with an arrow where it runs off), the paper's own difference as a diamond (hollow where
it was measured on other data), and the verdict as the colour; the papers' protocol's verdict, where it differs,
is named at the right beside the numbers. Where differences span more than a few points the axis is symmetric-log
(linear within ±1). `forest_rows` is what the figure draws, so a test can check it against the records
(`digest`: its hash, kept in the PNG's metadata).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

from odenets.reporting.verdicts import Verdict

COLOURS = {"supported": "#1a9850", "contradicted": "#d73027", "inconclusive": "#7f7f7f", "n < 2": "#c7c7c7"}
LINEAR_WITHIN = 1.0  # points: symmetric-log beyond, when the differences reach past SYMLOG_BEYOND
SYMLOG_BEYOND = 5.0


def forest_rows(verdicts: Sequence[Verdict]) -> list[dict]:
    """The claims with runs on both sides, as drawn: text, difference, raw and adjusted interval (None with one
    seed a side), the paper's difference, whether it is on other data, the verdict and the protocol's."""
    rows = []
    for v in verdicts:
        c = v.free.comparison
        if c is None:
            continue
        raw, adjusted = c.interval() if c.p is not None else None, v.free.adjusted_interval()
        rows.append({"text": v.text, "difference": round(c.difference, 6),
                     "raw": None if raw is None else [round(x, 6) for x in raw],
                     "adjusted": None if adjusted is None else [round(x, 6) for x in adjusted],
                     "adjusted_p": None if v.free.adjusted is None else round(v.free.adjusted, 6),
                     "paper": None if v.paper_diff is None else round(v.paper_diff, 6),
                     "paper_other_data": bool(v.paper_data), "verdict": v.sign, "protocol": v.protocol.verdict})
    return rows


def digest(rows: Sequence[dict]) -> str:
    """A short hash of what a forest plot draws."""
    return hashlib.sha256(json.dumps(list(rows), sort_keys=True).encode()).hexdigest()[:16]


def _limits(rows: Sequence[dict]) -> tuple[float, float]:
    """The x range: every difference, raw interval and paper difference, and 0, with a margin (the adjusted
    intervals may run off it)."""
    xs = [0.0] + [r["difference"] for r in rows] + [x for r in rows if r["raw"] for x in r["raw"]] \
        + [r["paper"] for r in rows if r["paper"] is not None]
    low, high = min(xs), max(xs)
    pad = 0.08 * (high - low or 1.0)
    return low - pad, high + pad


def plot_forest(verdicts: Sequence[Verdict], title: str) -> Figure:
    rows = forest_rows(verdicts)
    fig = Figure(figsize=(13, 1.4 + 0.34 * max(len(rows), 1)), layout="constrained")
    ax = fig.subplots()
    low, high = _limits(rows)
    if max(abs(low), abs(high)) > SYMLOG_BEYOND:
        ax.set_xscale("symlog", linthresh=LINEAR_WITHIN)
        ax.xaxis.set_major_locator(SymmetricalLogLocator(linthresh=LINEAR_WITHIN, base=10, subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlim(low, high)
    ax.axvline(0, color="black", lw=0.8)
    for y, r in enumerate(rows):
        colour = COLOURS.get(r["verdict"], COLOURS["n < 2"])
        if r["adjusted"]:
            a, b = max(r["adjusted"][0], low), min(r["adjusted"][1], high)
            ax.plot([a, b], [y, y], color=colour, lw=1.2, solid_capstyle="butt")
            for end, edge, marker in ((r["adjusted"][0], low, "<"), (r["adjusted"][1], high, ">")):
                if (end < edge) if marker == "<" else (end > edge):
                    ax.plot([edge], [y], marker=marker, color=colour, ms=5)
        if r["raw"]:
            ax.plot(r["raw"], [y, y], color=colour, lw=5, alpha=0.55, solid_capstyle="butt")
        ax.plot([r["difference"]], [y], "o", color=colour, ms=5, mec="white", mew=0.6)
        if r["paper"] is not None:
            ax.plot([r["paper"]], [y], "D", ms=5, mec="black", mfc="none" if r["paper_other_data"] else "black")
        interval = "" if not r["raw"] else f" [{r['raw'][0]:+.2f}, {r['raw'][1]:+.2f}]"
        protocol = f"; protocol: {r['protocol']}" if r["protocol"] != r["verdict"] else ""
        p = "" if r["adjusted_p"] is None else f", p (Holm) {r['adjusted_p']:.3g}"
        ax.annotate(f"{r['difference']:+.2f}{interval}{p}: {r['verdict']}{protocol}", (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=7.5, color=colour)
    ax.set_yticks(np.arange(len(rows)), [r["text"] for r in rows], fontsize=8)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)
    if not rows:
        ax.text(0.5, 0, "no claim has runs on both sides yet", transform=ax.get_yaxis_transform(), ha="center",
                va="center", fontsize=9, color=COLOURS["n < 2"])
    scale = f" (symmetric log beyond ±{LINEAR_WITHIN:g})" if ax.get_xscale() == "symlog" else ""
    ax.set_xlabel(f"our difference of means in the claim's direction, points{scale}; right of 0: as claimed")
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=COLOURS[k], lw=5, alpha=0.55, label=k) for k in COLOURS
               if any(r["verdict"] == k for r in rows)]
    handles += [Line2D([], [], color="black", lw=5, alpha=0.3, label="95% Welch interval"),
                Line2D([], [], color="black", lw=1.2, label="Holm-adjusted interval")]
    if any(r["paper"] is not None and not r["paper_other_data"] for r in rows):
        handles.append(Line2D([], [], marker="D", ls="", mec="black", mfc="black", label="paper's difference"))
    if any(r["paper_other_data"] for r in rows):
        handles.append(Line2D([], [], marker="D", ls="", mec="black", mfc="none", label="paper's, other data"))
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=len(handles), frameon=False)
    ax.set_title(title, fontsize=10)
    return fig
