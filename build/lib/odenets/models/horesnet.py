"""HO-ResNet (Luo et al., "Rethinking ResNets"): VGG-style sub-nets stacked as RK steps.

conv3x3(in -> 64)-BN-ReLU stem, then RK blocks at 64 channels with no down-sampling (Sec. 3.1),
then ReLU, global average pooling and a linear classifier. Each stage function F is the paper's
"VGG-style two-layer sub-net": conv3x3-BN-ReLU-conv3x3-BN (bias-free convolutions). There is no
ReLU after a block's additions, so every block is exactly the RK step of eq. 8-11/14-15
(forward Euler gives the pre-activation-free ResNet x + F(x)). The authors' public code uses a
16/32/64 three-stage trunk instead; Table 3's parameter counts fit the text, which we follow.

Depth counts weight layers: depth = 2 + 2 * stages * blocks (stem and classifier are the 2), so a
block has 2, 4, 8 and 28 layers for Euler, midpoint, RK4 and RK8 (14 of Verner's 16 stages).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from odenets.blocks import RKBlock
from odenets.errors import ConfigError
from odenets.models import register_model
from odenets.schemes import Scheme, scheme_from_config


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class VGGSubNet(nn.Sequential):
    """F: conv3x3-BN-ReLU-conv3x3-BN at constant width."""

    def __init__(self, width: int) -> None:
        super().__init__(conv3x3(width, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                         conv3x3(width, width), nn.BatchNorm2d(width))


def layers_per_block(scheme: Scheme, stage_weights: str = "separate") -> int:
    """Weight layers in one block: two per sub-net, one sub-net per stage unless weights are shared."""
    return 2 * (scheme.stages if stage_weights == "separate" else 1)


def blocks_for_depth(scheme: Scheme, depth: int, stage_weights: str = "separate") -> int:
    """Number of blocks for `depth` weight layers, or a one-line error naming the nearest valid depths."""
    per = layers_per_block(scheme, stage_weights)
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError(f"depth={depth!r} must be an integer (weight layers, 2 + {per} x blocks for {scheme.name})")
    n, rem = divmod(depth - 2, per)
    if depth >= 2 + per and rem == 0:
        return n
    lower, upper = 2 + per * max(n, 1), 2 + per * (max(n, 0) + 1)
    nearest = f"{upper}" if depth < 2 + per else f"{lower} or {upper}"
    raise ConfigError(f"depth={depth} is not valid for scheme={scheme.name} ({per} layers per block, "
                      f"depth = 2 + {per} x blocks); nearest valid depths: {nearest}")


class HOResNet(nn.Module):
    def __init__(self, scheme: Scheme | Mapping | str, depth: int, num_classes: int = 10, in_channels: int = 3,
                 width: int = 64, stage_weights: str = "separate", checkpoint: bool = False) -> None:
        super().__init__()
        scheme = scheme_from_config(scheme)
        n_blocks = blocks_for_depth(scheme, depth, stage_weights)
        self.stem = nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(
            RKBlock(scheme, lambda: VGGSubNet(width), stage_weights=stage_weights, checkpoint=checkpoint)
            for _ in range(n_blocks)
        ))
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        for m in self.modules():  # He initialisation (the paper's [22])
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


@register_model
def horesnet(scheme: Scheme | Mapping | str = "euler", depth: int = 18, **kwargs) -> HOResNet:
    """HO-ResNet-`depth` with blocks stacked as `scheme` (`horesnet("rk4", 58)` is 7 RK4 blocks)."""
    return HOResNet(scheme, depth, **kwargs)
