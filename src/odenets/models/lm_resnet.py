"""LM-ResNet (Lu et al. 2018, "Beyond finite layer neural networks"): a linear two-step scheme in the HO-ResNet trunk.

    x_{n+1} = (1 - k_n) x_n + k_n x_{n-1} + F_n(x_n)

with one learnable scalar k_n per block, initialised uniformly in [-0.1, 0] as Lu et al. do. The first
block has no x_{-1} and is a plain residual step x_1 = x_0 + F_0(x_0) (x_{-1} = x_0 makes k_0 drop out),
so there are blocks - 1 coefficients. Stem, sub-nets F_n (VGG-style) and head are HO-ResNet's
(`HOResNet` with forward Euler), and so is the depth: depth = 2 + 2 x blocks weight layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odenets.models.horesnet import HOResNet
from odenets.models.registry import register_model


class LMResNet(HOResNet):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__("euler", depth, num_classes=num_classes, in_channels=in_channels, width=width)
        self.k = nn.Parameter(torch.empty(len(self.blocks) - 1).uniform_(-0.1, 0.0))

    def forward(self, x: Tensor) -> Tensor:
        prev, x = None, self.stem(x)
        for n, block in enumerate(self.blocks):
            F = block.F[0](x)
            prev, x = x, x + F if prev is None else (1 - self.k[n - 1]) * x + self.k[n - 1] * prev + F
        return self.head(x)


@register_model
def lm_resnet(depth: int = 18, **kwargs) -> LMResNet:
    """LM-ResNet-`depth` (weight layers, 2 + 2 x blocks) in the HO-ResNet trunk."""
    return LMResNet(depth, **kwargs)
