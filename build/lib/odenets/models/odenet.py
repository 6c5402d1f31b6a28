"""ODE-Net (Chen et al. 2018) transplanted into the RKCNN framework (RKCNN Sec. 4.1), through torchdiffeq.

Each period integrates RK-Net's time-dependent ODE function f (`rknet.ODEFunc`, same parameters: 52.94K
on MNIST, 0.853M on CIFAR-10) from t=0 to 1 with `odeint` (plain backpropagation, no adjoint):
* `explicit_adams`: the 4th-order explicit multistep method, torchdiffeq's Adams-Bashforth (`AdamsBashforth`).
* `implicit_adams`: the 4th-order implicit Adams method, torchdiffeq's Adams-Bashforth-Moulton with
  fixed-point corrector iterations (at most four, Sec. 4.1) stopped at rtol = atol = `tol`: 0.5 on MNIST
  and 0.9 on SVHN/CIFAR (Sec. 4.1.1-4.1.2).
* `dopri5`: adaptive Dormand-Prince 5(4) with rtol = atol = `tol` (Chen et al.'s default 1e-3). The paper's
  "RK-Net (5th-order IRK)", "the only [IRK] method provided in the code of Chen et al." (Sec. 4.1), can
  only be this solver (torchdiffeq has no implicit RK); it is listed as too memory-hungry to train.

Multistep methods use `steps` equal steps per period (r > 1, Sec. 4.1.3; default 3). torchdiffeq starts
them with the RK4 3/8 rule until three past values of f exist, so r = 3 is the smallest r that takes any
Adams step: two starter steps then one Adams step, exactly the minimum the paper's Table 2-3 footnotes
describe for the implicit method (torchdiffeq's defaults otherwise). Every Adams step first evaluates
f at the current state to extend the history: the paper's explicit-method FLOPs (8 f-evaluations per
period, i.e. the two starter steps) leave that evaluation out, ours (9) include it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from odenets.errors import ConfigError
from odenets.models import register_model
from odenets.models.rkcnn import PeriodNet, channel_list
from odenets.models.rknet import ODEFunc

METHODS = ("explicit_adams", "implicit_adams", "dopri5")


class ODEBlock(nn.Module):
    """y(1) of dy/dt = f(t, y), y(0) = y_0, solved by `method` over `steps` fixed steps (multistep) or adaptively."""

    def __init__(self, func: nn.Module, method: str, steps: int = 3, tol: float = 0.5) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"method={method!r}; allowed: {', '.join(METHODS)}")
        if method != "dopri5" and steps < 1:
            raise ConfigError(f"steps={steps}: a multistep ODE-Net needs at least one step per period")
        self.func, self.method, self.tol = func, method, float(tol)
        self.register_buffer("t", torch.linspace(0.0, 1.0, 2 if method == "dopri5" else steps + 1), persistent=False)

    def forward(self, y: Tensor) -> Tensor:
        f = lambda t, z: self.func(z, t)
        return odeint(f, y, self.t.to(y.dtype), rtol=self.tol, atol=self.tol, method=self.method)[-1]

    def extra_repr(self) -> str:
        return f"method={self.method}, steps={len(self.t) - 1}, tol={self.tol:g}"


@register_model
def odenet(channels: int | Sequence[int] = (120, 120, 120), method: str = "explicit_adams", steps: int = 3,
           tol: float = 0.5, norm: str = "batch", dropout: float = 0.0, **framework) -> PeriodNet:
    """ODE-Net: per period, RK-Net's f integrated over [0, 1] by `method` (explicit_adams, implicit_adams, dopri5)."""
    channels = channel_list(channels)
    periods = [ODEBlock(ODEFunc(k, True, norm, dropout), method, steps, tol) for k in channels]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout, **framework)
