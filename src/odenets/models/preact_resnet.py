"""Pre-activation ResNet (He et al. 2016b) transplanted into the RKCNN framework (RKCNN Sec. 4.1).

Each period is one residual block y + F(y), i.e. one forward-Euler step (RKCNN eq. 5), built with the
spine's `RKBlock("euler")`. F is He et al.'s full pre-activation unit, every conv bias-free:
* plain: [3x3, k; 3x3, k] (norm-ReLU-conv twice), Chen et al.'s `ResBlock` on MNIST;
* bottleneck: [1x1, k/4; 3x3, k/4; 1x1, k] ("retains its original structure", Sec. 4.1).
Dropout (SVHN) follows every conv. Preprocessor, transitions and postprocessor are RKCNN's (`PeriodNet`):
52.23K / 34.86K parameters on MNIST (k=32) and 0.845M / 0.113M on CIFAR-10 (k=120), Tables 2-3.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from odenets.core.blocks import RKBlock
from odenets.errors import ConfigError
from odenets.models.registry import register_model
from odenets.models.rkcnn import PeriodNet, channel_list, preact_conv


def residual_unit(k: int, bottleneck: bool, norm: str, dropout: float) -> nn.Sequential:
    """F of one pre-activation residual block at width k."""
    if not bottleneck:
        return nn.Sequential(preact_conv(k, k, 3, norm, dropout), preact_conv(k, k, 3, norm, dropout))
    if k < 4:
        raise ConfigError(f"channels={k}: the bottleneck block needs k >= 4 (its inner width is k/4)")
    return nn.Sequential(preact_conv(k, k // 4, 1, norm, dropout), preact_conv(k // 4, k // 4, 3, norm, dropout),
                         preact_conv(k // 4, k, 1, norm, dropout))


@register_model
def preact_resnet(channels: int | Sequence[int] = (120, 120, 120), bottleneck: bool = False, norm: str = "batch",
                  dropout: float = 0.0, **framework) -> PeriodNet:
    """One pre-activation residual block per period at k=`channels`; `bottleneck=True` for [1x1; 3x3; 1x1]."""
    channels = channel_list(channels)
    periods = [RKBlock("euler", lambda k=k: residual_unit(k, bottleneck, norm, dropout)) for k in channels]
    return PeriodNet(periods, channels, norm=norm, dropout=dropout, **framework)
