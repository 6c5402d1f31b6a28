"""RKBlock against the papers' equations written out by hand, and the HeunNet Fig. 1 values."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from torch import nn

from odenets.core.blocks import RKBlock
from odenets.core.ode import integrate
from odenets.core.schemes import TABLEAUS

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


class Sub(nn.Module):
    """A small random nonlinear sub-net standing in for F."""

    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        return torch.tanh(self.lin(x))


def block(scheme, **kw) -> RKBlock:
    torch.manual_seed(0)
    return RKBlock(scheme, Sub, **kw)


@pytest.fixture
def x():
    return torch.randn(4, 6, generator=torch.Generator().manual_seed(1))


def test_euler_is_heunnet_eq4(x):
    b = block("euler")
    F = b.F[0]
    assert torch.allclose(b(x), x + F(x), atol=1e-14)  # X_{k+1} = X_k + F(X_k)


def test_two_euler_blocks_are_horesnet_eq5_6(x):
    b1, b2 = block("euler"), RKBlock("euler", Sub)
    F1, F2 = b1.F[0], b2.F[0]
    n_mid = F1(x)  # eq. 5
    # eq. 6 prints F(N_mid + N_in) + N_mid; the identity term N_in of the block-level shortcut is
    # implied (two stacked Euler blocks are y1 = x + F1(x), y2 = y1 + F2(y1)).
    n_out = F2(n_mid + x) + n_mid + x
    assert torch.allclose(b2(b1(x)), n_out, atol=1e-14)


def test_midpoint_is_horesnet_eq8_9(x):
    b = block("midpoint")
    F1, F2 = b.F
    n_mid = F1(x)  # eq. 8
    assert torch.allclose(b(x), F2(0.5 * n_mid + x) + x, atol=1e-14)  # eq. 9


def test_rk4_is_horesnet_eq10_11(x):
    b = block("rk4")
    F1, F2, F3, F4 = b.F
    k1 = F1(x)
    k2 = F2(0.5 * k1 + x)
    k3 = F3(0.5 * k2 + x)
    k4 = F4(k3 + x)
    assert torch.allclose(b(x), x + (k1 + 2 * k2 + 2 * k3 + k4) / 6, atol=1e-14)


def test_heun_is_heunnet_eq5_with_shared_weights(x):
    b = block("heun", stage_weights="shared")
    (F,) = b.F
    x_tilde = x + F(x)  # eq. 5a
    assert torch.allclose(b(x), x + 0.5 * (F(x) + F(x_tilde)), atol=1e-14)  # eq. 5b


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_extended_heun_is_heunnet_eq6_7(x, alpha):
    b = block({"name": "heun_ext", "alpha": alpha}, stage_weights="shared")
    (F,) = b.F
    x_tilde = x + F(x)  # eq. 6
    assert torch.allclose(b(x), x + (1 - alpha) * F(x) + alpha * F(x_tilde), atol=1e-14)  # eq. 7


def test_verner_block_uses_fourteen_subnets_and_the_step(x):
    b = block({"name": "rk8", "h": 0.5})
    assert b.stages == 14 and len(b.F) == 14
    t = TABLEAUS["rk8"]
    ks = []
    for i in range(14):
        ks.append(b.F[i](x + 0.5 * sum(t.A[i][j] * ks[j] for j in range(i))))
    assert torch.allclose(b(x), x + 0.5 * sum(t.b[i] * ks[i] for i in range(14)), atol=1e-12)


def test_learnable_step_is_one_parameter_per_block_and_gets_gradients(x):
    b = block({"name": "rk8", "learn_h": True})
    fixed = block("rk8")
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(b) == n(fixed) + 1
    assert torch.allclose(b(x), fixed(x), atol=1e-12)  # h starts at 1
    b(x).sum().backward()
    assert b.h.grad is not None and b.h.grad.abs() > 0


def test_learnable_alpha_keeps_both_stages_even_from_alpha_zero(x):
    b = block({"name": "heun_ext", "alpha": 0.0, "learn_alpha": True}, stage_weights="shared")
    assert b.stages == 2  # at alpha = 0 the second stage has weight 0, but learning can change that
    (F,) = b.F
    assert torch.allclose(b(x), x + F(x), atol=1e-14)
    b(x).sum().backward()
    assert b.learned["alpha"].grad.abs() > 0


def test_shared_weights_build_one_subnet():
    assert len(block("rk4", stage_weights="shared").F) == 1


@pytest.mark.parametrize("name,alive", [("euler", 0), ("midpoint", 1), ("rk4", 1), ("rk4_38", 3), ("rk8", 9)])
def test_stage_tensors_are_released_after_their_last_use(name, alive, x):
    """At each stage, only the k_j that a later row of A still needs are alive (the output is
    accumulated as stages finish): one for RK4, all earlier ones for the 3/8 rule."""
    outputs: list[weakref.ref] = []
    peak = 0

    class Probe(nn.Module):
        def forward(self, z):
            nonlocal peak
            peak = max(peak, sum(r() is not None for r in outputs))
            k = torch.sin(z) + 0.0
            outputs.append(weakref.ref(k))
            return k

    with torch.no_grad():
        RKBlock(name, Probe)(x)
    assert peak == alive


@pytest.mark.parametrize("h", ["0.6", "0.9"])
@pytest.mark.parametrize("name", ["euler", "heun", "ext_heun_alpha_0.75", "ext_heun_alpha_0.8", "ext_heun_alpha_1.0",
                                  "midpoint", "rk4", "ralston2", "kutta3", "rk4_38", "dopri5", "verner89"])
def test_heunnet_figure1_values(fig1_reference, name, h):
    """x' = 2 sqrt(x), x(0) = 1 with every tableau, against 60-digit reference values."""
    table = fig1_reference["fig1"][h]
    ref = table["schemes"].get(name) or fig1_reference["additional_schemes"]["fig1"][h]["schemes"][name]
    registry = {"ralston2": "ralston", "kutta3": "rk3", "verner89": "rk8"}
    scheme = ({"name": "heun_ext", "alpha": float(name.rsplit("_", 1)[1])} if name.startswith("ext_heun")
              else registry.get(name, name))
    xs = integrate(scheme, lambda v: 2 * torch.sqrt(v), 1.0, table["h"], table["n_steps"])
    assert xs.tolist() == pytest.approx(ref["x"], rel=1e-13, abs=1e-13)


def test_figure1_alpha_that_zeroes_the_final_error(fig1_reference):
    alpha = fig1_reference["alpha_giving_zero_final_error"]["h_0_6"]
    xs = integrate({"name": "heun_ext", "alpha": alpha}, lambda v: 2 * torch.sqrt(v), 1.0, 0.6, 10)
    assert math.isclose(xs[-1].item(), 49.0, abs_tol=1e-9)
