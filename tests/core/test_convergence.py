"""Every scheme's order, two ways, without files outside the repository: Butcher's order conditions against
an in-repo table, and the measured slope of log(error) against log(h) on a smooth nonlinear ODE
(diffrax's test_ode_order). A new built-in tableau or a new conf/scheme/*.yaml is picked up by both."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from odenets.config import CONF_DIR
from odenets.core.blocks import RKBlock
from odenets.core.schemes import TABLEAUS, Scheme, scheme_from_config

# The order each built-in scheme has (Butcher 2016; Verner 1978; Dormand & Prince 1980): written here,
# checked against the order conditions and measured below.
EXPECTED_ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "ralston": 2, "rk3": 3, "rk4": 4, "rk4_38": 4, "dopri5": 5,
                  "rk8": 8, "heun_ext": 2, "rk2_family": 2, "rk3_family": 3}
YAML_SCHEMES = sorted(p.stem for p in (CONF_DIR / "scheme").glob("*.yaml") if "c" in OmegaConf.load(p))


def test_every_registered_scheme_has_an_expected_order():
    assert set(TABLEAUS) == set(EXPECTED_ORDER)


@pytest.mark.parametrize("name", sorted(EXPECTED_ORDER))
def test_order_conditions_give_the_expected_order(name):
    assert scheme_from_config(name).tableau.order == EXPECTED_ORDER[name]


class Logistic(nn.Module):
    """y' = y (1 - y): smooth and nonlinear, so the measured order is the scheme's true order."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y * (1 - y)


def exact(t: float, y0: float = 0.1) -> float:
    return 1 / (1 + (1 / y0 - 1) * math.exp(-t))


def measured_order(scheme: Scheme, horizon: float = 4.0) -> float:
    """Slope of log(error at t = horizon) against log(h), over the step sizes whose error is above round-off."""
    steps, errors = [], []
    for n in (4, 8, 16, 32, 64, 128, 256):
        block = RKBlock(Scheme(scheme.tableau, h=horizon), Logistic, stage_weights="shared")
        block.set_integration(substeps=n)
        y = block(torch.tensor([0.1], dtype=torch.float64))
        error = abs(float(y) - exact(horizon))
        if error > 1e-13:
            steps.append(horizon / n)
            errors.append(error)
    assert len(steps) >= 2, "too few step sizes above round-off to measure an order"
    slope = np.polyfit(np.log(steps[-3:]), np.log(errors[-3:]), 1)[0]
    return float(slope)


@pytest.mark.parametrize("name", sorted(EXPECTED_ORDER))
def test_measured_convergence_order(name):
    assert measured_order(scheme_from_config(name)) == pytest.approx(EXPECTED_ORDER[name], abs=0.35)


@pytest.mark.parametrize("name", YAML_SCHEMES)
def test_user_yaml_schemes_converge_at_their_order(name):
    scheme = scheme_from_config(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "scheme" / f"{name}.yaml")))
    assert measured_order(scheme) == pytest.approx(scheme.tableau.order, abs=0.35)
