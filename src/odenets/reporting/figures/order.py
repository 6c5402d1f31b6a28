"""Ours (not the papers'): the measured order of weight-shared networks (`odenets-diagnose`, Krishnapriyan et al.
2022), beside the integration figure (`integration`).

One panel per test scheme: the hidden states' relative error against the fine reference, against the test-time
step h / n, one line per run (solid: trained weights, dashed: initial ones), the fitted slope and its 95% interval
in the legend. A network that is an ODE falls along its scheme's order; one that learned its solver does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from odenets.reporting.figures import scheme_label, scheme_rank
from odenets.reporting.figures.runs import run_label
from odenets.reporting.figures.stability import diagnostics
from odenets.results import get


def orders(run: dict) -> dict[str, dict]:
    """{state: measured order} of the run's diagnosis, where one was measured."""
    entry = diagnostics(run)
    if entry is None:
        return {}
    return {state: d["order"] for state, d in entry["states"].items() if (d.get("order") or {}).get("schemes")}


def plot_measured_order(runs: Sequence[dict], title: str = "") -> Figure:
    measured = [(run, orders(run)) for run in runs]
    measured = [(run, m) for run, m in measured if m]
    schemes = sorted({s for _, m in measured for o in m.values() for s in o["schemes"]}, key=scheme_rank)
    fig = Figure(figsize=(4.2 * len(schemes), 3.8), layout="constrained")
    for ax, scheme in zip(fig.subplots(1, len(schemes), squeeze=False)[0], schemes, strict=True):
        expected = next(o["schemes"][scheme]["expected"] for _, m in measured for o in m.values()
                        if scheme in o["schemes"])
        for i, (run, m) in enumerate(measured):
            for state, order in m.items():
                fit = order["schemes"].get(scheme)
                if fit is None:
                    continue
                steps = [order["h"] / n for n in order["substeps"]]
                slope = "n/a" if fit["order"] is None else \
                    f"p = {fit['order']:.2f} [{fit['interval'][0]:.2f}, {fit['interval'][1]:.2f}]"
                ax.plot(steps, fit["errors"], "o-" if state == "trained" else "s--", color=f"C{i % 10}", ms=4,
                        label=f"{run_label(run['config'])} s{get(run['config'], 'seed')}, {state}: {slope}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set(title=f"tested with {scheme_label(scheme)} (order {expected})", xlabel="test-time step h / n",
               ylabel="hidden-state error (relative)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    reference = measured[0][1][next(iter(measured[0][1]))]["reference"]
    fig.suptitle(f"{title} (against {scheme_label(reference['scheme'])} with n = {reference['substeps']})",
                 fontsize=10)
    return fig
