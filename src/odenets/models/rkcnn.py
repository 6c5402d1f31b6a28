"""RKCNN (Zhu, Chang & Fu, "Convolutional neural networks combined with Runge-Kutta methods").

The framework (Sec. 3.2, Fig. 1), shared with every comparison model of Sec. 4 (`PeriodNet`):

    preprocessor -> period 1 -> transition -> period 2 -> ... -> period P -> postprocessor -> linear

* Preprocessor, SVHN/CIFAR (`cliquenet`): one bias-free conv3x3 (in -> k_1) as CliqueNet's, but with
  k_1 outputs instead of 64 (Sec. 4.1.2). MNIST (`rknet`): the RK-Net/ODE-Net downsampling of Chen et
  al. [3x3, k; 4x4, k, /2, 1; 4x4, k, /2, 1] (Sec. 4.1.1): conv-norm-ReLU-conv-norm-ReLU-conv with biases
  and an unpadded first conv (28 -> 26 -> 13 -> 6) as in torchdiffeq's `odenet_mnist.py`; this is what
  makes pre-act ResNet k=32 cost 8.43 MFLOPs and 52.23K parameters (Table 2).
* Transition (attentional, CliqueNet's): norm-ReLU-conv1x1 (bias-free) -> dropout -> channel attention
  (global pool, FC c -> c/2, ReLU, FC c/2 -> c, sigmoid, rescale; torchvision's SqueezeExcitation) ->
  2x2 average pool. The 1x1 conv outputs the next period's k, not its input width (Sec. 4.1.2).
* Postprocessor (multiscale): each period's output goes through norm-ReLU-global average pooling and
  the pooled vectors are concatenated into the linear classifier (Fig. 1's dotted lines).
* Norm: BatchNorm with eps=1e-3, momentum=0.01 (the authors' code, after CliqueNet's TensorFlow
  defaults), or GroupNorm(min(32, c), c) (`norm="group"`, Chen et al.'s `norm`, with gcd(32, c) groups
  where 32 does not divide c > 32; used on MNIST, where every model is built in RK-Net's framework).
  Both have 2c parameters, so counts do not depend on it.
* Init (Sec. 4.1.2): He normal (fan-in) convolutions, Xavier-uniform fully connected layers with zero
  bias, norms at (1, 0).
* Dropout (SVHN, Sec. 4.1.2): after every convolution of the periods and transitions (not the
  preprocessor's), as the authors' code places it.

The RK block, one time step of a period (Sec. 3.3, Algorithm 1, Fig. 2, Table 1). Every layer is the
bottleneck [1x1, k; 3x3, k], each conv pre-activated (norm-ReLU-conv, bias-free):
* Phase I is a restricted dense block (Rules a, b / 1, 2): x_i = E(y_n, x_1..x_{i-1}) from the
  concatenation {y_n, x_1, ..., x_{i-1}} (eq. 17, 26), i = 1..s; all widths are k.
* `E`: e_i = x_i (eq. 17).
* `R`: e_i = I(y_n, x_1..x_{i-1}, x_{i+1}..x_s) (eq. 27): Phase II without replacement.
* `I`: e_i = I(y_n, e_1..e_{i-1}, x_{i+1}..x_s) (eq. 28): Phase II updating with replacement, in
  stage order, as CliqueNet's alternate update. y_n enters Phase II (Rule 4) and Phase II has its own
  weights (Rule 5): per stage a 1x1 conv from s*k channels and a 3x3 conv.
* Output y_{n+1} = y_n + sum_i e_i (eq. 7); nothing follows the addition (the postprocessor and
  transitions pre-activate).

Each period holds r time steps (`steps`, 1 in all of the paper's experiments, Sec. 4), h, A, b, c are
learned implicitly (Sec. 3.2). Names follow Sec. 3.2: `RKCNN-R-3_4_4` is variant R with 3, 4 and 4
stages in three periods; k per period is given separately (`channels`). These choices reproduce every
parameter count of Tables 2, 3 and 5 (see `scripts/model_stats.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from odenets.allowed import BOOL, Allowed, check, integer, number, one_of, optional
from odenets.errors import ConfigError
from odenets.models.registry import register_model

VARIANTS = ("E", "I", "R")
PREPROCESSORS = ("cliquenet", "rknet")
NORMS = ("batch", "group")
# what the framework's options allow, for every model built on `PeriodNet` (`odenets.allowed`)
ALLOWED = {
    "dropout": number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "steps": Allowed(lambda v: integer(1)(v) or (isinstance(v, (list, tuple)) and all(integer(1)(x) for x in v)),
                     "an integer >= 1, or a list of them per period"),
    "attention": BOOL,
    "multiscale": BOOL,
    "norm": one_of(*NORMS),
    "variant": optional(one_of(*VARIANTS)),  # null: read from the paper name
    "preprocessor": one_of(*PREPROCESSORS),
}


# --------------------------------------------------------------------------- layers
def norm2d(kind: str, c: int) -> nn.Module:
    check({"norm": kind}, ALLOWED, prefix="model.")
    if kind == "batch":
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)
    return nn.GroupNorm(c if c <= 32 else math.gcd(32, c), c)  # Chen et al.'s GroupNorm(min(32, c)), groups dividing c


def preact_conv(c_in: int, c_out: int, kernel: int, norm: str, dropout: float = 0.0) -> nn.Sequential:
    """norm-ReLU-conv (same padding, no bias), then dropout when dropout > 0."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(norm2d(norm, c_in), nn.ReLU(inplace=True), conv, *([nn.Dropout(dropout)] if dropout else []))


class Bottleneck(nn.Sequential):
    """The layer of RK, dense and clique blocks: [1x1, k; 3x3, k], pre-activated (Sec. 4, 4.1)."""

    def __init__(self, c_in: int, k: int, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__(preact_conv(c_in, k, 1, norm, dropout), preact_conv(k, k, 3, norm, dropout))


class DenseLayers(nn.Module):
    """n layers, each fed the concatenation of the input and all earlier outputs; returns the outputs."""

    def __init__(self, c_in: int, k: int, n: int, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Bottleneck(c_in + i * k, k, norm, dropout) for i in range(n))

    def forward(self, y: Tensor) -> list[Tensor]:
        xs: list[Tensor] = []
        for layer in self.layers:
            xs.append(layer(torch.cat([y, *xs], 1)))
        return xs


# --------------------------------------------------------------------------- the RK block
class RKCNNBlock(nn.Module):
    """One time step y_n -> y_n + sum_i e_i of variant E, I or R (Algorithm 1) with s stages of width k."""

    def __init__(self, k: int, stages: int, variant: str = "R", norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        check({"variant": variant}, {"variant": one_of(*VARIANTS)}, prefix="model.")
        if stages < (1 if variant == "E" else 2):
            raise ConfigError(f"RKCNN-{variant} needs at least {1 if variant == 'E' else 2} stages per period "
                              f"(got {stages}; Phase II updates alternately, Rule 2)")
        self.variant, self.stages = variant, stages
        self.phase1 = DenseLayers(k, k, stages, norm, dropout)
        self.phase2 = None if variant == "E" else nn.ModuleList(
            Bottleneck(stages * k, k, norm, dropout) for _ in range(stages))

    def forward(self, y: Tensor) -> Tensor:
        xs = self.phase1(y)  # eq. 26
        if self.variant == "E":
            es = xs  # eq. 17
        elif self.variant == "R":  # eq. 27
            es = [f(torch.cat([y, *xs[:i], *xs[i + 1:]], 1)) for i, f in enumerate(self.phase2)]
        else:  # eq. 28: es[:i] are already updated, es[i+1:] are still Phase-I outputs
            es = list(xs)
            for i, f in enumerate(self.phase2):
                es[i] = f(torch.cat([y, *es[:i], *es[i + 1:]], 1))
        return sum(es, y)  # eq. 7

    def extra_repr(self) -> str:
        return f"variant={self.variant}, stages={self.stages}"


# --------------------------------------------------------------------------- the framework
def rknet_preprocessor(in_channels: int, k: int, norm: str) -> nn.Sequential:
    """[3x3, k; 4x4, k, /2, 1; 4x4, k, /2, 1] with biases, as Chen et al.'s MNIST downsampling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, k, 3), norm2d(norm, k), nn.ReLU(inplace=True),
        nn.Conv2d(k, k, 4, 2, 1), norm2d(norm, k), nn.ReLU(inplace=True),
        nn.Conv2d(k, k, 4, 2, 1),
    )


def transition(c_in: int, c_out: int, norm: str, dropout: float = 0.0, attention: bool = True) -> nn.Sequential:
    """norm-ReLU-conv1x1 (c_in -> next period's k), dropout, channel attention, 2x2 average pool."""
    return nn.Sequential(preact_conv(c_in, c_out, 1, norm, dropout),
                         *([SqueezeExcitation(c_out, c_out // 2)] if attention else []), nn.AvgPool2d(2))


def global_pool(c: int, norm: str) -> nn.Sequential:
    return nn.Sequential(norm2d(norm, c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class PeriodNet(nn.Module):
    """Preprocessor, periods joined by attentional transitions, multiscale postprocessor, linear classifier.

    `periods[i]` maps `channels[i]` channels to a tensor (the period's final state) or to a pair
    (features for the transition, features for the postprocessor), of `out_channels[i]` and
    `post_channels[i]` channels (default: `channels[i]` and `out_channels[i]`).
    """

    def __init__(self, periods: Sequence[nn.Module], channels: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3, preprocessor: str = "cliquenet", norm: str = "batch", dropout: float = 0.0,
                 attention: bool = True, multiscale: bool = True, out_channels: Sequence[int] | None = None,
                 post_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        check({"preprocessor": preprocessor}, ALLOWED, prefix="model.")
        n = len(channels)
        out_channels = list(out_channels or channels)
        post_channels = list(post_channels or out_channels)
        self.multiscale = multiscale
        self.pre = (nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False) if preprocessor == "cliquenet"
                    else rknet_preprocessor(in_channels, channels[0], norm))
        self.periods = nn.ModuleList(periods)
        self.transitions = nn.ModuleList(
            transition(out_channels[i], channels[i + 1], norm, dropout, attention) for i in range(n - 1))
        pooled = range(n) if multiscale else [n - 1]
        self.pools = nn.ModuleList(global_pool(post_channels[i], norm) for i in pooled)
        self.fc = nn.Linear(sum(post_channels[i] for i in pooled), num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        y, pooled, last = self.pre(x), [], len(self.periods) - 1
        for i, period in enumerate(self.periods):
            out = period(y)
            out, post = out if isinstance(out, tuple) else (out, out)
            if self.multiscale or i == last:
                pooled.append(self.pools[len(pooled)](post))
            if i < last:
                y = self.transitions[i](out)
        return self.fc(torch.cat(pooled, 1))


def init_weights(model: nn.Module) -> None:
    """He normal (fan-in) convolutions; Xavier-uniform, zero-bias fully connected layers (attention too)."""
    fully_connected = {id(m) for se in model.modules() if isinstance(se, SqueezeExcitation) for m in (se.fc1, se.fc2)}
    for m in model.modules():
        if getattr(m, "weight", None) is not None and m.weight.is_meta:
            continue  # built on the meta device (shapes only, for counting): there are no values to set
        if isinstance(m, nn.Linear) or id(m) in fully_connected:
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


def per_period(value: int | Sequence[int], n: int, what: str) -> list[int]:
    """`value` for each of n periods: an int is repeated, a list must have n entries."""
    values = [value] * n if isinstance(value, int) else list(value)
    if len(values) != n or not all(isinstance(v, int) and v > 0 for v in values):
        raise ConfigError(f"{what}={value!r}: give a positive integer or a list of {n} (one per period)")
    return values


def channel_list(channels: int | Sequence[int]) -> list[int]:
    """k per period from a list, or an int meaning a single period."""
    return per_period(channels, 1 if isinstance(channels, int) else len(channels), "channels")


# --------------------------------------------------------------------------- RKCNN and its names
_NAME = re.compile(r"RKCNN-([EIR])-(\d+(?:_\d+)*)")


def parse_paper_name(name: str) -> tuple[str, list[int]]:
    """'RKCNN-R-3_4_4' -> ('R', [3, 4, 4]): the variant and the stages per period (Sec. 3.2)."""
    m = _NAME.fullmatch(str(name).strip())
    if m is None:
        raise ConfigError(f"cannot parse paper name {name!r}; expected RKCNN-<E|I|R>-<stages per period joined "
                          f"by _>, e.g. RKCNN-R-3_4_4")
    return m.group(1), [int(s) for s in m.group(2).split("_")]


def format_paper_name(variant: str, stages: Sequence[int]) -> str:
    return f"RKCNN-{variant}-{'_'.join(str(s) for s in stages)}"


class RKCNN(PeriodNet):
    def __init__(self, variant: str, stages: Sequence[int], channels: Sequence[int], steps: Sequence[int],
                 norm: str = "batch", dropout: float = 0.0, **framework) -> None:
        periods = [nn.Sequential(*(RKCNNBlock(k, s, variant, norm, dropout) for _ in range(r)))
                   for k, s, r in zip(channels, stages, steps, strict=True)]
        super().__init__(periods, channels, norm=norm, dropout=dropout, **framework)
        self.variant, self.stages, self.channels = variant, list(stages), list(channels)

    @property
    def paper_name(self) -> str:
        return format_paper_name(self.variant, self.stages)

    def extra_repr(self) -> str:
        return f"{self.paper_name}, k={self.channels}"


@register_model
def rkcnn(variant: str | None = None, stages: int | Sequence[int] | None = None,
          channels: int | Sequence[int] = (120, 120, 120), steps: int | Sequence[int] = 1,
          paper_name: str | None = None, **kwargs) -> RKCNN:
    """RKCNN-`variant` with `stages` and k=`channels` per period, or named as the paper: `paper_name="RKCNN-R-3_4_4"`.

    Defaults: variant R, 2 stages per period; the number of periods is that of the list given.
    """
    if paper_name is not None:
        named_variant, named_stages = parse_paper_name(paper_name)
        if variant not in (None, named_variant) or stages not in (None, named_stages):
            raise ConfigError(f"paper_name={paper_name} disagrees with variant={variant}, stages={stages}; "
                              f"give one or the other")
        variant, stages = named_variant, named_stages
    variant = "R" if variant is None else str(variant).upper()
    n = len(stages) if isinstance(stages, Sequence) else (1 if isinstance(channels, int) else len(channels))
    stages = per_period(2 if stages is None else stages, n, "stages")
    return RKCNN(variant, stages, per_period(channels, n, "channels"), per_period(steps, n, "steps"), **kwargs)
