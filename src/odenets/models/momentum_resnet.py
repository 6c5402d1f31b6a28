"""Momentum ResNet (Sander et al. 2021) in the HO-ResNet trunk.

    v_{n+1} = gamma v_n + (1 - gamma) F_n(x_n),    x_{n+1} = x_n + v_{n+1},    v_0 = 0

a discretised second-order ODE with a fixed momentum `gamma` (0.9 in Sander et al.'s CIFAR runs).
Gradients are backpropagated through stored activations; Sander et al.'s memory saving (recomputing
activations backwards by inverting the update) is not implemented. Stem, sub-nets F_n (VGG-style) and
head are HO-ResNet's (`HOResNet` with forward Euler), and so is the depth: depth = 2 + 2 x blocks.
"""

from __future__ import annotations

from torch import Tensor

from odenets.errors import ConfigError
from odenets.models.horesnet import HOResNet
from odenets.models.registry import register_model


class MomentumResNet(HOResNet):
    def __init__(self, depth: int, gamma: float = 0.9, num_classes: int = 10, in_channels: int = 3,
                 width: int = 64) -> None:
        if not 0.0 <= gamma < 1.0:
            raise ConfigError(f"gamma={gamma} must be in [0, 1) (0 gives a ResNet; momentum decays by gamma per block)")
        super().__init__("euler", depth, num_classes=num_classes, in_channels=in_channels, width=width)
        self.gamma = float(gamma)

    def forward(self, x: Tensor) -> Tensor:
        x, v = self.stem(x), 0.0
        for block in self.blocks:
            v = self.gamma * v + (1 - self.gamma) * block.F[0](x)
            x = x + v
        return self.head(x)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


@register_model
def momentum_resnet(depth: int = 18, gamma: float = 0.9, **kwargs) -> MomentumResNet:
    """Momentum ResNet-`depth` (weight layers, 2 + 2 x blocks) in the HO-ResNet trunk."""
    return MomentumResNet(depth, gamma, **kwargs)
