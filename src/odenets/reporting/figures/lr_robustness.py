"""HO-ResNet Fig. 9: robustness to the initial learning rate, from result.json statuses.

A grid of schemes x initial learning rates (`config.optimizer.lr`): a cell is the final test
accuracy of the runs that converged, or "diverged" when training hit a non-finite loss (a run's
recorded `status`, not a crash). The paper (ResNet-86, CIFAR-10): Euler diverged at lr 0.13 and
above, midpoint converged up to about 0.2, RK-4 at 0.23 and Verner RK-8(9) at 0.4 "or even above";
a black bar after a cell marks that largest converging rate where it is on our grid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from odenets.reporting.figures.runs import by_label
from odenets.reporting.speed import scheme_key
from odenets.results import get

PAPER_LARGEST_CONVERGED_LR = {"euler": 0.1, "midpoint": 0.2, "rk4": 0.23, "rk8": 0.4}


def lr_outcomes(runs: Sequence[dict]) -> tuple[list[str], list[float], dict[tuple[str, float], dict]]:
    """(row labels, learning rates, cells): cells[(label, lr)] = {runs, diverged, failed, accuracy, scheme}.

    `accuracy` is the mean final test accuracy of the completed runs (None if none completed)."""
    cells: dict[tuple[str, float], dict] = defaultdict(lambda: {"runs": 0, "diverged": 0, "failed": 0, "acc": []})
    groups = by_label(runs)
    for label, group in groups.items():
        for run in group:
            cell = cells[(label, float(get(run["config"], "optimizer.lr")))]
            cell["scheme"] = scheme_key(run["config"])
            cell["runs"] += 1
            cell["diverged"] += run["status"] == "diverged"
            cell["failed"] += run["status"] == "failed"
            if run["status"] == "completed":
                cell["acc"].append(get(run, "metrics.final.test/acc"))
    for cell in cells.values():
        accs = [a for a in cell.pop("acc") if a is not None]
        cell["accuracy"] = float(np.mean(accs)) if accs else None
    return list(groups), sorted({lr for _, lr in cells}), dict(cells)


def cell_text(cell: dict | None) -> str:
    if cell is None:
        return "—"
    if cell["diverged"]:
        return "diverged" if cell["diverged"] == cell["runs"] else f"{cell['diverged']}/{cell['runs']} diverged"
    if cell["accuracy"] is None:
        return "failed" if cell["failed"] else "—"
    return f"{100 * cell['accuracy']:.1f}"


def plot_lr_robustness(runs: Sequence[dict], title: str = "") -> Figure:
    """Heat map: rows schemes, columns learning rates, colour = final test accuracy, grey = diverged."""
    labels, lrs, cells = lr_outcomes(runs)
    converged = lambda cell: cell is not None and not cell["diverged"] and cell["accuracy"] is not None
    acc = np.ma.masked_invalid([[100 * c["accuracy"] if converged(c := cells.get((label, lr))) else np.nan
                                 for lr in lrs] for label in labels])
    fig = Figure(figsize=(max(7.0, 1.1 * len(lrs) + 3), 0.6 * len(labels) + 2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(acc, cmap=colormaps["YlGn"].with_extremes(bad="lightgrey"), aspect="auto")
    for i, label in enumerate(labels):
        for j, lr in enumerate(lrs):
            cell = cells.get((label, lr))
            ax.text(j, i, cell_text(cell), ha="center", va="center", fontsize=8,
                    color="firebrick" if cell and cell["diverged"] else "black")
        scheme = next(c["scheme"] for (row, _), c in cells.items() if row == label)
        if PAPER_LARGEST_CONVERGED_LR.get(scheme) in lrs:
            j = lrs.index(PAPER_LARGEST_CONVERGED_LR[scheme])
            ax.plot([j + 0.5, j + 0.5], [i - 0.5, i + 0.5], color="k", lw=3)
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("initial learning rate")
    ax.set_title("grey: diverged or no run; black bar: the largest rate that converged in the paper", fontsize=8)
    fig.suptitle(title)
    fig.colorbar(image, ax=ax, label="final test accuracy (%)")
    return fig
