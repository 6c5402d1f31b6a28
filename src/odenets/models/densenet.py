"""DenseNet (Huang et al. 2017) transplanted into the RKCNN framework (RKCNN Sec. 4.1).

Each period is one dense block of T/P layers (`layers`), each the bottleneck [1x1, k; 3x3, k] of the RK
blocks (Sec. 4.1) fed all earlier features; it is RKCNN-E's Phase I without the final sum (Sec. 3.3).
As in DenseNet, the block's input and all generated features, k (1 + T/P) channels, go to the
transition, whose 1x1 conv maps them to the next period's k; the multiscale strategy is added, so the
same features also go to the postprocessor (Sec. 4.1.2). This gives 1.044M / 1.141M parameters for
T=6, k=120 on CIFAR-10/100 (Table 3). On MNIST (Table 2, T=2, k=32) it gives 56.27K: the paper's
57.55K is exactly its CliqueNet's count (our CliqueNet = this DenseNet + 1,280 Stage-II weights),
so we read that cell as repeated from the row below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from odenets.models.registry import register_model
from odenets.models.rkcnn import DenseLayers, PeriodNet, channel_list, per_period


class DenseBlock(nn.Module):
    """concat(y, x_1, ..., x_n), x_i = bottleneck_i(concat(y, x_1..x_{i-1}))."""

    def __init__(self, c_in: int, k: int, n: int, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        self.grow = DenseLayers(c_in, k, n, norm, dropout)
        self.out_channels = c_in + n * k

    def forward(self, y: Tensor) -> Tensor:
        return torch.cat([y, *self.grow(y)], 1)


@register_model
def densenet(channels: int | Sequence[int] = (120, 120, 120), layers: int | Sequence[int] = 2, norm: str = "batch",
             dropout: float = 0.0, **framework) -> PeriodNet:
    """DenseNet with `layers` (T/P) bottleneck layers of growth rate k=`channels` per period."""
    channels = channel_list(channels)
    layers = per_period(layers, len(channels), "layers")
    periods = [DenseBlock(k, k, n, norm, dropout) for k, n in zip(channels, layers, strict=True)]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout,
                     out_channels=[p.out_channels for p in periods], **framework)
