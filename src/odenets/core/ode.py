"""Fixed-step integration of an autonomous ODE x' = f(x) with the same `RKBlock` the networks use
(one shared F = f): HeunNet Fig. 1 (x' = 2 sqrt(x)) and HO-ResNet Fig. 3."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from odenets.core.blocks import RKBlock
from odenets.core.schemes import Scheme, scheme_from_config


class _Fn(nn.Module):
    def __init__(self, f: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: Tensor) -> Tensor:
        return self.f(x)


@torch.no_grad()
def integrate(scheme: Scheme | Mapping | str, f: Callable[[Tensor], Tensor], x0: float, h: float,
              n_steps: int) -> Tensor:
    """[x_0, x_1, ..., x_n] (float64) after n fixed steps of size h."""
    spec = scheme_from_config(scheme)
    block = RKBlock(Scheme(spec.tableau, h=h), lambda: _Fn(f), stage_weights="shared")
    xs = [torch.tensor([x0], dtype=torch.float64)]
    for _ in range(n_steps):
        xs.append(block(xs[-1]))
    return torch.cat(xs)
