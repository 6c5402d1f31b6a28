"""Ours (not the papers'): the stability region of each scheme, drawn from its tableau, and the h lambda of every
trained block against it (`odenets-diagnose`, its `eval.json` entries), at initialisation and after training.

`plot_regions` draws the regions {z : |R(z)| <= 1} of the schemes the papers stack (`odenets.core.stability`).
`plot_stability` gives one panel per diagnosed run: its blocks' tableau region, shaded, and the computed h lambda
of every block and stage sub-network, open grey at initialisation and filled after training; the corner says the
step's spectral norm (whether the step expands) and that of the whole stack of blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from odenets.core.schemes import Scheme, get_tableau
from odenets.core.stability import stability_function
from odenets.core.stage_plan import StagePlan
from odenets.reporting.figures import scheme_label
from odenets.reporting.figures.runs import run_label
from odenets.results import get

REGION_SCHEMES = ("euler", "midpoint", "rk3", "rk4", "dopri5", "rk8")
KINDS = ("LM", "LR", "SR")


def diagnostics(run: dict) -> dict | None:
    """The run's latest `odenets-diagnose` entry (of best.ckpt where there is one), or None."""
    entries = [e for e in run.get("evaluations") or [] if e.get("kind") == "diagnostics"]
    entries.sort(key=lambda e: (e["checkpoint"] == "best.ckpt", e.get("evaluated", "")))
    return entries[-1] if entries else None


def h_lambdas(blocks: Sequence[dict]) -> np.ndarray:
    """Every computed h lambda of the blocks' stage sub-networks (blocks without a step size left out)."""
    return np.array([b["h"] * complex(*z) for b in blocks if b["h"] for s in b["stages"] for k in KINDS
                     for z in s[k]], dtype=complex)


def _grid(extent: float, n: int = 401) -> np.ndarray:
    x = np.linspace(-extent, extent, n)
    return x[None, :] + 1j * x[:, None]


def plot_regions(schemes: Sequence[str] = REGION_SCHEMES) -> Figure:
    """The regions' boundaries |R(z)| = 1, each scheme's region shaded lightly."""
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.subplots()
    z = _grid(7.0)
    for i, name in enumerate(schemes):
        t = get_tableau(name)
        modulus = np.abs(stability_function(t.A, t.b, z))
        ax.contourf(z.real, z.imag, modulus, levels=[0, 1], colors=[f"C{i}"], alpha=0.08)
        ax.contour(z.real, z.imag, modulus, levels=[1], colors=[f"C{i}"], linewidths=1.2)
        stages = StagePlan.of(Scheme(t)).stages
        ax.plot([], [], color=f"C{i}", label=f"{scheme_label(name)} (order {t.order}, {stages} stages)")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="Re z", ylabel="Im z", aspect="equal",
           title="Stability regions |R(z)| <= 1, R(z) = 1 + z b^T (I - zA)^-1 1")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_stability(runs: Sequence[dict], title: str = "") -> Figure:
    """One panel per run with a diagnosis: h lambda of every block at initialisation and after training, over the
    region of the tableau its blocks step with."""
    found = [(run, diagnostics(run)) for run in runs]
    found = [(run, entry) for run, entry in found if entry is not None]
    fig = Figure(figsize=(4.4 * len(found), 4.4), layout="constrained")
    for ax, (run, entry) in zip(fig.subplots(1, len(found), squeeze=False)[0], found, strict=True):
        states = entry["states"]
        blocks = states["trained"]["blocks"]
        points = {state: h_lambdas(states[state]["blocks"]) for state in ("initial", "trained") if state in states}
        extent = 1.15 * max([4.0, *(float(np.abs(p).max()) for p in points.values() if len(p))])
        tableau = next(((b["A"], b["b"]) for b in blocks if b["A"]), None)
        if tableau is not None:
            z = _grid(extent, 801)
            modulus = np.abs(stability_function(*tableau, z))
            ax.contourf(z.real, z.imag, modulus, levels=[0, 1], colors=["C0"], alpha=0.25)
            ax.contour(z.real, z.imag, modulus, levels=[1], colors=["C0"], linewidths=1)
            reach = float(np.abs(z[modulus <= 1]).max(initial=1.0))
            if extent > 4 * reach:  # far-out h lambda: linear within the region's reach, logarithmic beyond
                _symlog(ax, 1.5 * reach, extent)
        if "initial" in points:
            ax.plot(points["initial"].real, points["initial"].imag, "o", mfc="none", mec="0.5", ms=5,
                    label="initialisation")
        ax.plot(points["trained"].real, points["trained"].imag, "o", color="C3", ms=4, label="trained")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.text(0.02, 0.02, _norms(states), transform=ax.transAxes, fontsize=7, va="bottom")
        h = next((b["h"] for b in blocks if b["h"]), None)
        weights = blocks[0]["weights"]
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal", xlabel="Re h lambda",
               ylabel="Im h lambda", title=f"{run_label(run['config'])}, {len(blocks)} block(s), "
                                           f"{weights} weights{f', h = {h:g}' if h else ''}, "
                                           f"seed {get(run['config'], 'seed')}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title + " (shaded: the blocks' stability region)", fontsize=10)
    return fig


def _symlog(ax, linear: float, extent: float) -> None:
    """Both axes linear within +-`linear`, logarithmic beyond; ticks at 0 and at 1, 2, 5 x 10^k past `linear`."""
    steps = [m * 10.0**e for e in range(int(np.log10(extent)) + 1) for m in (1, 2, 5)]
    ticks = sorted([0.0, *(sign * t for t in steps if linear < t <= extent for sign in (-1, 1))])
    ax.set_xscale("symlog", linthresh=linear)
    ax.set_yscale("symlog", linthresh=linear)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _norms(states: dict) -> str:
    """The largest step norm over the blocks, and the stack's, per state."""
    lines = []
    for state in ("initial", "trained"):
        if state in states:
            step = np.nanmax([b["step_norm"]["value"] for b in states[state]["blocks"]])  # nan: not converged
            stack = states[state].get("stack")
            stacked = f", stack {stack['norm']['value']:.3g}" if stack else ""
            lines.append(f"{state}: step norm <= {step:.3g}{stacked}")
    return "\n".join(lines)
