"""Is it an ODE? Evaluate trained weights under another tableau or step size (Ott et al., ICLR 2021).

A network that really learned an ODE keeps working when its vector field is integrated more finely or
with another scheme; one that learned a discrete map tuned to its training solver does not. That
question only makes sense where the same weights serve every stage and step:

* `ode_rnn` (HeunNet): each time step's `RKBlock` with one shared cell F;
* RK-Net / RKNN: one RK4 step of one shared f per period;
* ODE-Net: torchdiffeq's solver over [0, 1] per period, replaced by a fixed grid of our tableau;
* any HO-ResNet built with `model.stage_weights=shared`.

`substeps` = n runs every step as n steps of h / n (a recurrent layer holds its input over the n).
Separate-weight stacks (HO-ResNet as in the paper, RKCNN, DenseNet, pre-act ResNet) have one sub-net
per stage of their own tableau: another tableau's stages have no weights, so they are refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from odenets.core.blocks import RKBlock
from odenets.core.schemes import Scheme
from odenets.errors import ConfigError
from odenets.models.odenet import ODEBlock


def ode_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of `model` that integrate an ODE: RK blocks and ODE-Net blocks."""
    return [m for m in model.modules() if isinstance(m, (RKBlock, ODEBlock))]


def reintegrate(model: nn.Module, scheme: Scheme | Mapping | str | None = None, substeps: int = 1,
                name: str = "this model") -> int:
    """Make every ODE block of `model` step with `scheme` (None: its own) in `substeps` sub-steps; returns how
    many blocks changed. A ConfigError (one line) when the model has none, or stacks separate sub-nets."""
    blocks = ode_blocks(model)
    if not blocks:
        raise ConfigError(f"{name} integrates no ODE (no RK or ODE block): there is no scheme or step to change")
    separate = [b for b in blocks if isinstance(b, RKBlock) and not b.shared]
    if separate and scheme is not None:
        raise ConfigError(f"{name} stacks a separate sub-net per stage (HO-ResNet, RKCNN): another scheme's stages "
                          f"have no weights; only shared-weight models (ode_rnn, rknet, rknn, odenet, "
                          f"model.stage_weights=shared) can be evaluated with another scheme")
    if separate:
        raise ConfigError(f"{name} stacks a separate sub-net per stage (HO-ResNet, RKCNN): each stage's weights "
                          f"belong to one step of one tableau, so sub-steps would reuse them out of place")
    for block in blocks:
        block.set_integration(scheme, substeps)
    return len(blocks)
