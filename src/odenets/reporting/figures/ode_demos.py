"""The schemes on a scalar ODE, integrated with the networks' own `RKBlock` (`odenets.core.ode.integrate`).

HeunNet Fig. 1: Euler, Heun and extended Heun (alpha = 0.75, 0.8, 1.0; HeunNet eq. 6-7) on
x' = 2 sqrt(x), x(0) = 1, steps h = 0.6 and 0.9 while n h <= 6, against x(t) = (t + 1)^2 (the
values of ../shared/reference/heun_fig1_values.json).

HO-ResNet Fig. 3 ("various schemes with a simple case"), at equal cost: the same ODE on [0, 6]
with the same number of function evaluations per scheme. The budget is 28 evaluations, HO-ResNet-58's
layout: 28 Euler steps, 14 midpoint, 7 RK-4 and 2 Verner RK-8 steps of 14 evaluated stages (the
two of its 16 stages that only the error estimate uses are skipped, as in the network). A second
panel gives the error at t = 6 against the budget (28 x 2^k evaluations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from odenets.core.ode import integrate
from odenets.core.schemes import scheme_from_config
from odenets.core.stage_plan import StagePlan
from odenets.reporting.figures import scheme_label

T_END = 6.0
HEUN_FIG1_STEPS = (0.6, 0.9)
# reference-file key -> (scheme, legend label)
HEUN_FIG1_SCHEMES: dict[str, tuple[str | Mapping, str]] = {
    "euler": ("euler", "Euler"),
    "heun": ("heun", "Heun"),
    **{f"ext_heun_alpha_{a}": ({"name": "heun_ext", "alpha": a}, f"extended Heun, α = {a}") for a in (0.75, 0.8, 1.0)},
}
EQUAL_COST_SCHEMES = ("euler", "midpoint", "rk4", "rk8")
EQUAL_COST_BUDGET = 28


def sqrt_field(x: Tensor) -> Tensor:
    """x' = 2 sqrt(x), whose solution from x(0) = 1 is (t + 1)^2."""
    return 2 * torch.sqrt(x)


def exact_solution(t: np.ndarray) -> np.ndarray:
    return (t + 1.0) ** 2


def solve(scheme: str | Mapping, h: float, n_steps: int, f: Callable[[Tensor], Tensor] = sqrt_field) -> np.ndarray:
    """[x_0, ..., x_n] of x' = f(x), x(0) = 1."""
    return integrate(scheme, f, 1.0, h, n_steps).numpy()


def heun_fig1_solutions(h: float) -> dict:
    """HeunNet Fig. 1 at step h: `t`, `exact` and `schemes` (reference key -> x_n), whole steps to t <= 6."""
    n_steps = int(T_END / h + 1e-9)
    t = np.arange(n_steps + 1) * h
    return {"t": t, "exact": exact_solution(t),
            "schemes": {key: solve(scheme, h, n_steps) for key, (scheme, _) in HEUN_FIG1_SCHEMES.items()}}


def plot_heun_fig1() -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    t_fine = np.linspace(0.0, T_END, 200)
    for ax, h in zip(fig.subplots(1, 2), HEUN_FIG1_STEPS, strict=True):
        sol = heun_fig1_solutions(h)
        ax.plot(t_fine, exact_solution(t_fine), color="red", lw=2, label="exact (t + 1)²")
        for key, (_, label) in HEUN_FIG1_SCHEMES.items():
            ax.plot(sol["t"], sol["schemes"][key], marker="o", ms=3, lw=1, label=label)
        ax.set(title=f"h = {h}", xlabel="t", ylabel="x(t)")
        ax.legend(fontsize=8)
    fig.suptitle("x' = 2√x, x(0) = 1 (HeunNet Fig. 1)")
    return fig


def equal_cost_solution(scheme: str, evaluations: int) -> tuple[np.ndarray, np.ndarray]:
    """(t, x) on [0, 6] with `evaluations` function evaluations: evaluations / stages steps."""
    stages = StagePlan.of(scheme_from_config(scheme)).stages
    n_steps = evaluations // stages
    if n_steps * stages != evaluations:
        raise ValueError(f"{evaluations} evaluations is not a whole number of {scheme} steps ({stages} stages)")
    h = T_END / n_steps
    return np.arange(n_steps + 1) * h, solve(scheme, h, n_steps)


def plot_horesnet_fig3(budgets: tuple[int, ...] = tuple(EQUAL_COST_BUDGET * 2**k for k in range(5))) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_sol, ax_err = fig.subplots(1, 2)
    t_fine = np.linspace(0.0, T_END, 200)
    ax_sol.plot(t_fine, exact_solution(t_fine), color="k", lw=2, label="exact (t + 1)²")
    for scheme in EQUAL_COST_SCHEMES:
        t, x = equal_cost_solution(scheme, budgets[0])
        line, = ax_sol.plot(t, x, "o", ms=4, label=f"{scheme_label(scheme)}: {len(t) - 1} steps")
        errors = [abs(equal_cost_solution(scheme, b)[1][-1] - exact_solution(T_END)) for b in budgets]
        ax_err.loglog(budgets, errors, marker="o", color=line.get_color(), label=scheme_label(scheme))
    ax_sol.set(title=f"{budgets[0]} function evaluations each", xlabel="t", ylabel="x(t)")
    ax_sol.legend(fontsize=8)
    ax_err.set_xticks(budgets, [str(b) for b in budgets])
    ax_err.set_xticks([], minor=True)
    ax_err.set(title=f"error at t = {T_END:g}", xlabel="function evaluations", ylabel="|x_N - x(6)|")
    ax_err.legend(fontsize=8)
    fig.suptitle("Schemes at equal cost on x' = 2√x, x(0) = 1 (HO-ResNet Fig. 3)")
    return fig
