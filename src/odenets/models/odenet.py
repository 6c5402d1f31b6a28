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

`adjoint=True` backpropagates with torchdiffeq's `odeint_adjoint` (Chen et al.'s adjoint method: the
state is integrated backwards instead of kept, memory independent of the number of steps) at the same
tolerances. `ODEFunc.nfe` counts f-evaluations; the task logs them per forward pass (`train/nfe`,
`test/nfe`). `set_integration` evaluates a trained ODE-Net with one of our tableaus on a fixed grid
(`odenets.run.integration`).

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
from torchdiffeq import odeint, odeint_adjoint

from odenets.allowed import check, number, one_of
from odenets.core.blocks import RKBlock
from odenets.core.schemes import Scheme, scheme_from_config
from odenets.errors import ConfigError
from odenets.models.registry import register_model
from odenets.models.rkcnn import PeriodNet, channel_list
from odenets.models.rknet import ODEFunc

METHODS = ("explicit_adams", "implicit_adams", "dopri5")
ALLOWED = {"tol": number(lambda v: v > 0, "a number > 0 (solver tolerance)"),  # and PeriodNet's (rkcnn)
           "method": one_of(*METHODS)}


class _TimeFirst(nn.Module):
    """f(t, z) for torchdiffeq from our f(z, t)."""

    def __init__(self, func: nn.Module) -> None:
        super().__init__()
        self.func = func

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.func(z, t)


class ODEBlock(nn.Module):
    """y(1) of dy/dt = f(t, y), y(0) = y_0, solved by `method` over `steps` fixed steps (multistep) or adaptively."""

    def __init__(self, func: nn.Module, method: str, steps: int = 3, tol: float = 0.5, adjoint: bool = False) -> None:
        super().__init__()
        check({"method": method}, ALLOWED, prefix="model.")
        if method != "dopri5" and steps < 1:
            raise ConfigError(f"steps={steps}: a multistep ODE-Net needs at least one step per period")
        self.func, self.method, self.tol, self.steps, self.adjoint = func, method, float(tol), steps, adjoint
        self.register_buffer("t", torch.linspace(0.0, 1.0, 2 if method == "dopri5" else steps + 1), persistent=False)
        self._fixed: tuple[RKBlock, ...] = ()  # a test-time tableau's stepper (not a submodule: f is ours)
        self._time_first = (_TimeFirst(func),)  # likewise not a submodule

    def forward(self, y: Tensor) -> Tensor:
        if self._fixed:
            return self._fixed[0](y)
        t = self.t.to(y.dtype)
        if self.adjoint:
            return odeint_adjoint(self._time_first[0], y, t, rtol=self.tol, atol=self.tol, method=self.method,
                                  adjoint_params=tuple(self.func.parameters()))[-1]
        return odeint(self._time_first[0], y, t, rtol=self.tol, atol=self.tol, method=self.method)[-1]

    def set_integration(self, scheme=None, substeps: int = 1) -> None:
        """Integrate [0, 1] with one of our tableaus on a fixed grid of `steps` x `substeps` steps (dopri5:
        `substeps` steps), or, without a scheme, the multistep method on a grid `substeps` times finer."""
        if not (isinstance(substeps, int) and substeps >= 1):
            raise ConfigError(f"substeps={substeps!r}; allowed: an integer >= 1")
        n = (1 if self.method == "dopri5" else self.steps) * substeps
        if scheme is None:
            if self.method == "dopri5":
                raise ConfigError("dopri5 chooses its own steps (model.tol); give a scheme to evaluate on a fixed grid")
            self.t = torch.linspace(0.0, 1.0, n + 1, device=self.t.device)
            return
        spec = scheme_from_config(scheme)
        block = RKBlock(Scheme(spec.tableau, h=1.0), lambda: self.func, stage_weights="shared", time_input=True)
        block.set_integration(substeps=n)
        self._fixed = (block,)

    def extra_repr(self) -> str:
        fixed = f", evaluated with {self._fixed[0].scheme.name} x{self._fixed[0].substeps}" if self._fixed else ""
        adjoint = ", adjoint" if self.adjoint else ""
        return f"method={self.method}, steps={len(self.t) - 1}, tol={self.tol:g}{adjoint}{fixed}"


@register_model
def odenet(channels: int | Sequence[int] = (120, 120, 120), method: str = "explicit_adams", steps: int = 3,
           tol: float = 0.5, adjoint: bool = False, norm: str = "batch", dropout: float = 0.0,
           **framework) -> PeriodNet:
    """ODE-Net: per period, RK-Net's f integrated over [0, 1] by `method` (explicit_adams, implicit_adams, dopri5)."""
    channels = channel_list(channels)
    periods = [ODEBlock(ODEFunc(k, True, norm, dropout), method, steps, tol, adjoint) for k in channels]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout, **framework)
