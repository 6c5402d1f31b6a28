"""HO-ResNet (Luo et al., "Rethinking ResNets"): VGG-style sub-nets stacked as RK steps.

As the paper's text describes it (the defaults, `block=paper trunk=paper init=paper`):
conv3x3(in -> 64)-BN-ReLU stem, then RK blocks at 64 channels with no down-sampling (Sec. 3.1:
"we directly stacked blocks 64 dim after a conv(3, 64)"), then ReLU, global average pooling and a
linear classifier. Each stage function F is the paper's "VGG-style two-layer sub-net":
conv3x3-BN-ReLU-conv3x3-BN (bias-free convolutions). There is no ReLU after a block's additions,
so every block is exactly the RK step of eq. 8-11/14-15 (forward Euler gives the pre-activation-free
ResNet x + F(x)). Table 3's parameter counts fit this text.

Depth counts weight layers: depth = 2 + 2 * stages * blocks (stem and classifier are the 2), so a
block has 2, 4, 8 and 28 layers for Euler, midpoint, RK4 and RK8 (14 of Verner's 16 stages).

The authors' code (github.com/zlannnn/HO-ResNet, `HO-ResNet.py`) differs; each difference is an
option here, and every block of every option is still one step of the shared `RKBlock`:

1. Sub-net composition (`block=authors`). Theirs is pre-activated, F(z) = conv(ReLU(BN(conv(ReLU(BN(z))))))
   (`BasicBlock.forward`, `RK4Block.forward`: conv2(relu(bn2(conv1(relu(bn1(x))))))), with bn1 over the
   stage input's channels; ours is conv-BN-ReLU-conv-BN. Same weights per sub-net (2 convolutions,
   2 BatchNorms of the same width), so parameter counts are equal.
2. Nonlinearity after the block (`block=authors`). Every block of theirs ends `out = func.relu(outx +
   shortcut)`: a ReLU after the final addition, so their block is ReLU(RK step), not the RK step. Here
   the RK step is computed by `RKBlock` and the ReLU applied to its output (`TrunkBlock`). Their stage
   inputs (0.5 * k1 + shortcut, ...) carry no ReLU: exactly y + h sum_j a_ij k_j.
3. Normalisation. Both use BatchNorm with torch's defaults, bias-free convolutions; theirs normalises
   each stage input first (pre-activation), ours each convolution's output.
4. Initialisation (`init=authors`). Theirs: `_weights_init`, `init.kaiming_normal_(m.weight)` on every
   Conv2d and Linear (fan_in, gain sqrt(2)); the Linear bias and BatchNorm keep torch's defaults. Ours:
   He normal over fan_out on the convolutions (the paper's [22]), torch's default for the Linear.
5. Step size h. Theirs is 1, written into the coefficients (`0.5 * out + shortcut`, `1 / 6. * out`);
   ours is `scheme.h` (1 by default; `model.equal_time` below). Their `RKFehlberg` block with an
   adaptive h is unfinished, as their README says (it cannot run: `(...)^0.25` is XOR, and a tensor
   is compared in an `if`).
6. Trunk (`trunk=authors`). Their `CFResNet`: conv3x3(3 -> 16, stride 2)-BN-ReLU stem, three stages of
   16, 32 and 64 channels (`num_blocks = [n, n, n]`), the first block of stages 2 and 3 down-sampling:
   its first stage's sub-net reads the block input x with a stride-2, channel-doubling first conv,
   and its shortcut (the y the RK step starts from) is option A, x[:, :, ::2, ::2] zero-padded to the
   new width; the later stages start from that shortcut. Here `trunk=authors` builds that with widths
   width/4, width/2, width (16/32/64 at width 64) and the block count split equally over the stages
   (so it must be a multiple of 3; `depth=10` with RK4, one block, is not possible in it). The
   stride-2 stem and the down-sampling are not in the paper's text ("directly stacked blocks 64 dim
   after a conv(3, 64)") and Table 3's counts do not fit them.
7. Head (`trunk=authors`). Theirs: average pooling over the whole map and a Linear, no ReLU before it
   (each block already ends in one); ours: ReLU, global average pooling, Linear.
8. Tableaus. Their Euler, midpoint and RK4 blocks are exactly the tableaus of `odenets.core.schemes`.
   Their `Verner89Block` is not Verner's method: it adds +27/140 k8 (`outx -= -27 / 140. * k8`; b8 is
   -27/140, so its weights sum to 1.386), has a61 = 0.0533 (Verner's 3/50 - sqrt(6)/150 = 0.0437) and the
   row-12 entries 847.88 and 605.73 the paper prints (413.49 and -241.54): by Butcher's order
   conditions its tableau has order 0 (order 4 with a61 alone wrong, 1 with row 12 alone). Ours uses
   Verner's values, so `scheme=rk8` is not their RK8 block. (`RK2Block`, Ralston, feeds 0.666666 *
   shortcut, without k1, to its second stage; `ImprovedEuler` adds a module, `outx += self.shortcut`.)
9. Recipe. The repository holds no training script; the paper's recipe (Sec. 3.1: SGD 0.1, momentum 0.9,
   wd 1e-4, batch 128, AutoAugment, 260 epochs) is `experiment=horesnet/cifar10`.

`equal_time=true` makes every block step h = scheme.h x (sub-nets per block), i.e. one unit of
scheme.h per sub-net: at a given depth every scheme then integrates over the same total time,
blocks x h = (depth - 2) / 2 x scheme.h, Euler's. With h = 1 instead, Euler X4 covers t in [0, 4]
and RK4 X1 t in [0, 1] (`experiment=horesnet/orderings_equal_time`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from odenets.allowed import check, integer, one_of
from odenets.core.blocks import STAGE_WEIGHTS, RKBlock
from odenets.core.schemes import Scheme, scheme_from_config
from odenets.core.stage_plan import StagePlan
from odenets.errors import ConfigError
from odenets.models.registry import register_model

BLOCKS = ("paper", "authors")
TRUNKS = ("paper", "authors")
INITS = ("paper", "authors")
AUTHORS_STAGES = 3  # their CFResNet: three stages of width/4, width/2, width channels
# what the family's options allow (`odenets.allowed`; lm_resnet and momentum_resnet inherit them); depth and the
# scheme are checked against each other by `blocks_for_depth`
ALLOWED = {"width": integer(1), "stage_weights": STAGE_WEIGHTS, "block": one_of(*BLOCKS), "trunk": one_of(*TRUNKS),
           "init": one_of(*INITS)}


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class VGGSubNet(nn.Sequential):
    """F (the paper's text): conv3x3-BN-ReLU-conv3x3-BN at `width` channels; the first conv may read
    `c_in` channels with `stride` (a down-sampling block of `trunk=authors`)."""

    def __init__(self, width: int, c_in: int | None = None, stride: int = 1) -> None:
        super().__init__(conv3x3(c_in or width, width, stride), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                         conv3x3(width, width), nn.BatchNorm2d(width))


class PreActSubNet(nn.Sequential):
    """F (the authors' code): BN-ReLU-conv3x3-BN-ReLU-conv3x3, pre-activated, at `width` channels; the first
    BN and conv read `c_in` channels, the conv with `stride`."""

    def __init__(self, width: int, c_in: int | None = None, stride: int = 1) -> None:
        c_in = c_in or width
        super().__init__(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), conv3x3(c_in, width, stride),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=True), conv3x3(width, width))


SUBNETS = {"paper": VGGSubNet, "authors": PreActSubNet}


class ShortcutA(nn.Module):
    """He et al.'s option A (the authors' down-sampling shortcut): every other pixel, the new channels zero."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.pad = ((c_out - c_in) // 2, c_out - c_in - (c_out - c_in) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, *self.pad))


class DownsamplingStage(nn.Module):
    """A stage function of a down-sampling block, F(z, x): the first stage reads the block input x (its
    sub-net's first conv strided and widening), the others their stage input z = y + h sum_j a_ij k_j."""

    def __init__(self, subnet: nn.Module, reads_block_input: bool) -> None:
        super().__init__()
        self.subnet, self.reads_block_input = subnet, reads_block_input

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return self.subnet(x if self.reads_block_input else z)


def downsampling_stages(subnet: Callable[..., nn.Module], c_in: int, c_out: int) -> Callable[[], nn.Module]:
    """`make_F` of a down-sampling `RKBlock`: its first call (stage 1) builds the strided sub-net."""
    built = []

    def make() -> nn.Module:
        first = not built
        built.append(first)
        return DownsamplingStage(subnet(c_out, c_in, 2) if first else subnet(c_out), reads_block_input=first)
    return make


class TrunkBlock(nn.Module):
    """One RK step (`step`, the shared `RKBlock`) plus what the authors' code puts around it: a down-sampling
    shortcut (the y the step starts from, the block input x passed on to the stages) and/or a ReLU after
    the step's final addition (`post_relu`)."""

    def __init__(self, step: RKBlock, shortcut: nn.Module | None = None, post_relu: bool = False) -> None:
        super().__init__()
        self.step, self.shortcut, self.post_relu = step, shortcut, post_relu

    def forward(self, x: Tensor) -> Tensor:
        y = self.step(x) if self.shortcut is None else self.step(self.shortcut(x), x)
        return F.relu(y) if self.post_relu else y

    def extra_repr(self) -> str:
        return "post_relu=True" if self.post_relu else ""


def layers_per_block(scheme: Scheme, stage_weights: str = "separate") -> int:
    """Weight layers in one block: two per sub-net, one sub-net per stage unless weights are shared."""
    return 2 * (StagePlan.of(scheme).stages if stage_weights == "separate" else 1)


def blocks_for_depth(scheme: Scheme, depth: int, stage_weights: str = "separate", groups: int = 1) -> int:
    """Number of blocks for `depth` weight layers, or a one-line error naming the nearest valid depths.
    With `groups` > 1 (the authors' trunk: 3 stages of equal length) the blocks must divide into the groups."""
    per = layers_per_block(scheme, stage_weights)
    step = per * groups
    rule = f"depth = 2 + {per} x blocks" + (f", blocks a multiple of {groups} (trunk=authors)" if groups > 1 else "")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError(f"depth={depth!r} must be an integer (weight layers, {rule} for {scheme.name})")
    n, rem = divmod(depth - 2, step)
    if depth >= 2 + step and rem == 0:
        return n * groups
    lower, upper = 2 + step * max(n, 1), 2 + step * (max(n, 0) + 1)
    nearest = f"{upper}" if depth < 2 + step else f"{lower} or {upper}"
    raise ConfigError(f"depth={depth} is not valid for scheme={scheme.name} ({per} layers per block, "
                      f"{rule}); nearest valid depths: {nearest}")


class HOResNet(nn.Module):
    def __init__(self, scheme: Scheme | Mapping | str, depth: int, num_classes: int = 10, in_channels: int = 3,
                 width: int = 64, stage_weights: str = "separate", checkpoint: bool = False, block: str = "paper",
                 trunk: str = "paper", init: str = "paper", equal_time: bool = False) -> None:
        super().__init__()
        check({"block": block, "trunk": trunk, "init": init}, ALLOWED, prefix="model.")
        scheme = scheme_from_config(scheme)
        groups = AUTHORS_STAGES if trunk == "authors" else 1
        if trunk == "authors" and stage_weights == "shared":
            raise ConfigError("model.trunk=authors needs model.stage_weights=separate: its down-sampling blocks' "
                              "first stage has its own (strided) sub-net")
        if trunk == "authors" and width % 4:
            raise ConfigError(f"model.width={width}: trunk=authors needs a multiple of 4 (stages of width/4, "
                              f"width/2, width)")
        n_blocks = blocks_for_depth(scheme, depth, stage_weights, groups)
        if equal_time:  # one unit of scheme.h per sub-net: blocks x h = (depth - 2) / 2 x scheme.h for every scheme
            scheme = dataclasses.replace(scheme, h=scheme.h * (layers_per_block(scheme, stage_weights) // 2))

        def make(c_in: int, c_out: int) -> nn.Module:
            return make_block(scheme, block, c_in, c_out, stage_weights, checkpoint)

        if trunk == "paper":
            self.stem = nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            self.blocks = nn.Sequential(*(make(width, width) for _ in range(n_blocks)))
            self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        else:
            widths = [width // 4, width // 2, width]
            self.stem = nn.Sequential(conv3x3(in_channels, widths[0], stride=2), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU(inplace=True))
            c_ins = [widths[0], *widths[:-1]]  # each stage's first block reads the previous stage's width
            self.blocks = nn.Sequential(*(make(c_in if i == 0 else c_out, c_out)
                                          for c_in, c_out in zip(c_ins, widths, strict=True)
                                          for i in range(n_blocks // groups)))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        for m in self.modules():
            if init == "paper" and isinstance(m, nn.Conv2d):  # He initialisation (the paper's [22])
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif init == "authors" and isinstance(m, (nn.Conv2d, nn.Linear)):  # their _weights_init
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def make_block(scheme: Scheme, block: str, c_in: int, c_out: int, stage_weights: str = "separate",
               checkpoint: bool = False) -> nn.Module:
    """One RK block of `block`'s sub-nets from c_in to c_out channels (down-sampling when they differ): a bare
    `RKBlock` for the paper's block at constant width, else the `RKBlock` inside a `TrunkBlock`."""
    subnet = SUBNETS[block]
    make_F = (lambda: subnet(c_out)) if c_in == c_out else downsampling_stages(subnet, c_in, c_out)
    step = RKBlock(scheme, make_F, stage_weights=stage_weights, checkpoint=checkpoint)
    shortcut = None if c_in == c_out else ShortcutA(c_in, c_out)
    if block == "paper" and shortcut is None:
        return step
    return TrunkBlock(step, shortcut, post_relu=block == "authors")


@register_model
def horesnet(scheme: Scheme | Mapping | str = "euler", depth: int = 18, **kwargs) -> HOResNet:
    """HO-ResNet-`depth` with blocks stacked as `scheme` (`horesnet("rk4", 58)` is 7 RK4 blocks)."""
    return HOResNet(scheme, depth, **kwargs)
