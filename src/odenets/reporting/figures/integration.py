"""Ours (not the papers'): trained weights integrated with other schemes and step sizes (Ott et al. 2021).

One panel per test-time scheme; x is the test-time step h / n (n sub-steps per step of the trained h),
y the test metric; one line per trained model (its training scheme), and a star where the test-time
integration is the training one. A model that learned an ODE keeps its accuracy as h / n shrinks and
across schemes; one fitted to its training solver loses it away from the star.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from odenets.reporting.figures import scheme_label, scheme_rank
from odenets.reporting.figures.runs import run_label
from odenets.results import get


def evaluations(run: dict) -> list[dict]:
    """The run's test-time evaluations (`eval.json`, or inline in a committed record); other kinds of entry
    (`odenets-diagnose`'s) are left out."""
    return [e for e in run.get("evaluations") or [] if "kind" not in e]


def plot_step_sweep(runs: Sequence[dict], metric: str = "test/acc", title: str = "") -> Figure:
    schemes = sorted({e["scheme"] for run in runs for e in evaluations(run)}, key=scheme_rank)
    fig = Figure(figsize=(4.2 * len(schemes), 3.6), layout="constrained")
    axes = fig.subplots(1, len(schemes), squeeze=False)[0]
    for ax, scheme in zip(axes, schemes, strict=True):
        for i, run in enumerate(runs):
            h = float(get(run["config"], "scheme.h", 1.0) or 1.0)
            points = sorted((h / e["substeps"], e["metrics"].get(metric), e) for e in evaluations(run)
                            if e["scheme"] == scheme and e["checkpoint"] == "best.ckpt" and not e["overrides"])
            points = [(x, 100 * y if "acc" in metric else y, e) for x, y, e in points if y is not None]
            if not points:
                continue
            colour = f"C{i % 10}"
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color=colour, ms=4,
                    label=f"trained: {run_label(run['config'])}")
            for x, y, e in points:
                if e["scheme"] == e["trained_scheme"] and e["substeps"] == 1:
                    ax.plot([x], [y], "*", color=colour, ms=14, mec="k", zorder=3)
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
        ax.set(title=f"tested with {scheme_label(scheme)}", xlabel="test-time step h / n",
               ylabel=f"{metric}{' (%)' if 'acc' in metric else ''}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title + " (star: the training integration)", fontsize=10)
    return fig
