"""CliqueNet (Yang et al. 2018) transplanted into the RKCNN framework (RKCNN Sec. 4.1).

Each period is one clique block of T/P layers (`layers`) with the bottleneck [1x1, k; 3x3, k] of the
RK blocks (Sec. 4.1), as in CliqueNet's code: a 1x1 weight W_ji from every layer j to every other
layer i (plus W_0i from the block input), one 3x3 conv per layer, both shared by the two stages, and
separate norms per stage.
* Stage I (a dense block): x_i = g_i(concat(y, x_1..x_{i-1})), 1x1 weights {W_0i, W_1i, ..., W_(i-1)i}.
* Stage II (alternate update, latest values): x_i <- g_i(concat(x_j, j != i)), weights {W_ji, j != i};
  y is not an input here (RKCNN's Rule 4 adds it; CliqueNet does not).
The Stage-II features go to the transition (T/P * k channels -> next k); they and the block input go
to the multiscale postprocessor (Sec. 4.1.2). 57.55K parameters on MNIST (T=2, k=32) and 1.061M /
1.158M for T=6, k=120 on CIFAR-10/100 (Tables 2-3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odenets.errors import ConfigError
from odenets.models.registry import register_model
from odenets.models.rkcnn import PeriodNet, channel_list, norm2d, per_period


class CliqueBlock(nn.Module):
    """Returns (Stage-II features, concat(input, Stage-II features))."""

    def __init__(self, c_in: int, k: int, n: int, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        if n < 2:
            raise ConfigError(f"layers={n}: a clique block needs at least 2 layers per period to update alternately")
        self.k, self.n = k, n
        # He-normal (fan-in) init per 1x1 weight W_ji, as CliqueNet initialises each pair's kernel.
        self.w_in = nn.Parameter(torch.randn(n, k, c_in) * math.sqrt(2 / c_in))  # W_0i
        self.w = nn.Parameter(torch.randn(n, k, (n - 1) * k) * math.sqrt(2 / k))  # W_ji, j != i ascending
        self.conv3 = nn.ModuleList(nn.Conv2d(k, k, 3, padding=1, bias=False) for _ in range(n))
        self.stage1_norms = nn.ModuleList(
            nn.ModuleList([norm2d(norm, c_in + i * k), norm2d(norm, k)]) for i in range(n))
        self.stage2_norms = nn.ModuleList(nn.ModuleList([norm2d(norm, (n - 1) * k), norm2d(norm, k)]) for _ in range(n))
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out_channels, self.post_channels = n * k, c_in + n * k

    def _layer(self, i: int, x: Tensor, weight: Tensor, norms: nn.ModuleList) -> Tensor:
        x = self.drop(F.conv2d(torch.relu(norms[0](x)), weight[..., None, None]))
        return self.drop(self.conv3[i](torch.relu(norms[1](x))))

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        xs: list[Tensor] = []
        for i in range(self.n):  # Stage I
            weight = torch.cat([self.w_in[i], self.w[i, :, : i * self.k]], 1)
            xs.append(self._layer(i, torch.cat([y, *xs], 1), weight, self.stage1_norms[i]))
        for i in range(self.n):  # Stage II
            xs[i] = self._layer(i, torch.cat(xs[:i] + xs[i + 1:], 1), self.w[i], self.stage2_norms[i])
        features = torch.cat(xs, 1)
        return features, torch.cat([y, features], 1)


@register_model
def cliquenet(channels: int | Sequence[int] = (120, 120, 120), layers: int | Sequence[int] = 2, norm: str = "batch",
              dropout: float = 0.0, **framework) -> PeriodNet:
    """CliqueNet with `layers` (T/P) bottleneck layers of k=`channels` per period, one Stage-II loop."""
    channels = channel_list(channels)
    layers = per_period(layers, len(channels), "layers")
    periods = [CliqueBlock(k, k, n, norm, dropout) for k, n in zip(channels, layers, strict=True)]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout, out_channels=[p.out_channels for p in periods],
                     post_channels=[p.post_channels for p in periods], **framework)
