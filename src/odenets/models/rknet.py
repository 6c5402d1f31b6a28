"""RK-Net (Chen et al. 2018) and RKNN (Wang & Lin 1998) transplanted into the RKCNN framework (Sec. 4.1).

Each period is one classical RK4 step (RKCNN eq. 2-3 with the rk4 tableau) of one ODE function f,
evaluated at all four stages with the same weights (the spine's `RKBlock(stage_weights="shared")`):
RKNN and RK-Net approximate the ODE itself and apply the RK formula exactly (Sec. 1-2). f is Chen
et al.'s `ODEfunc`: norm-ReLU-conv3x3-norm-ReLU-conv3x3-norm, convs with bias.
* RK-Net: each conv also sees the time t_n + c_i h as a constant extra input channel (time-variant).
* RKNN: the time input is dropped (time-invariant, Sec. 4.1); weights are shared across stages as in
  Wang & Lin's RKNN, where one network approximates f -- the published counts confirm it: one f per
  period gives RKNN 52.36K and RK-Net 52.94K on MNIST (k=32), 0.846M and 0.853M on CIFAR-10 (Tables 2-3).
Dropout (SVHN) follows every conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from odenets.core.blocks import RKBlock
from odenets.models.registry import register_model
from odenets.models.rkcnn import PeriodNet, channel_list, norm2d


class ODEFunc(nn.Module):
    """f(t, y): norm-ReLU-conv-norm-ReLU-conv-norm; with `time_input` each conv gets t as an extra channel.
    `nfe` counts its evaluations (the task resets and reads it around every forward pass)."""

    def __init__(self, k: int, time_input: bool = True, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        self.time_input = time_input
        self.nfe = 0
        c_in = k + time_input
        self.norms = nn.ModuleList(norm2d(norm, k) for _ in range(3))
        self.convs = nn.ModuleList(nn.Conv2d(c_in, k, 3, padding=1) for _ in range(2))
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, y: Tensor, t: float | Tensor = 0.0) -> Tensor:
        self.nfe += 1
        for i, conv in enumerate(self.convs):
            y = torch.relu(self.norms[i](y))
            if self.time_input:
                y = torch.cat([torch.ones_like(y[:, :1]) * t, y], 1)
            y = self.drop(conv(y))
        return self.norms[-1](y)


def rk4_period(k: int, time_input: bool, norm: str, dropout: float) -> RKBlock:
    return RKBlock("rk4", lambda: ODEFunc(k, time_input, norm, dropout), stage_weights="shared", time_input=time_input)


def _rk4_net(channels, time_input: bool, norm: str, dropout: float, framework: dict) -> PeriodNet:
    channels = channel_list(channels)
    periods = [rk4_period(k, time_input, norm, dropout) for k in channels]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout, **framework)


@register_model
def rknet(channels: int | Sequence[int] = (120, 120, 120), norm: str = "batch", dropout: float = 0.0,
          **framework) -> PeriodNet:
    """RK-Net: one RK4 step per period of a time-dependent ODE function (time channel concatenated)."""
    return _rk4_net(channels, True, norm, dropout, framework)


@register_model
def rknn(channels: int | Sequence[int] = (120, 120, 120), norm: str = "batch", dropout: float = 0.0,
         **framework) -> PeriodNet:
    """RKNN: one RK4 step per period of a time-invariant ODE function (no time input)."""
    return _rk4_net(channels, False, norm, dropout, framework)
