"""One block for every explicit scheme: a Runge-Kutta step whose stage function is a sub-network.

    k_i = F_i(y_n + h * sum_{j<i} a_ij k_j)          (HO-ResNet eq. 10, 14; HeunNet eq. 5a, 6)
    y_{n+1} = y_n + h * sum_i b_i k_i                 (HO-ResNet eq. 11, 15; HeunNet eq. 5b, 7)

`stage_weights="separate"` gives every stage its own F_i (HO-ResNet stacking: an s-stage block
holds s sub-nets); `"shared"` evaluates one F at every stage (a true ODE step: HeunNet, RK-Net).
The step h is 1 or a learnable scalar per block (the paper's "adaptive" RK8); a family parameter
such as extended Heun's alpha can be learned too. Only the stages the propagated solution needs
are built (14 of Verner's 16). The output is accumulated as stages finish, and each k_j is
dropped right after its last use, so at most the stages still referenced by later rows of A are
alive at once (one for RK4): the block's `StagePlan`, which the recurrent scan reads too.

`checkpoint=True` checkpoints every stage evaluation F_i(z_i): only the stage input z_i is kept
for backward, and F_i runs again there. Per stage rather than per block, so a 14-stage RK8 block
never holds all its stages' activations at once. BatchNorm running statistics are left alone
during the re-run, so they are updated once per step, as without checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from odenets.allowed import check, one_of
from odenets.core.schemes import Scheme, scheme_from_config
from odenets.core.stage_plan import StagePlan
from odenets.errors import ConfigError

STAGE_WEIGHTS = one_of("separate", "shared")  # a separate F per stage, or one F shared by the stages


class RKBlock(nn.Module):
    """An explicit RK step y -> y + h sum_i b_i k_i with stage functions built by `make_F()`.

    Extra positional arguments of `forward` are passed to every F (e.g. a recurrent cell's input
    x_t); with `time_input=True`, F also receives `t=t_n + c_i h`.
    """

    def __init__(
        self,
        scheme: Scheme | Mapping | str,
        make_F: Callable[[], nn.Module],
        stage_weights: str = "separate",
        time_input: bool = False,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        check({"stage_weights": stage_weights}, {"stage_weights": STAGE_WEIGHTS})
        self.scheme = scheme = scheme_from_config(scheme)
        self.time_input, self.checkpoint = time_input, checkpoint
        self.learned = nn.ParameterDict(
            {p: nn.Parameter(torch.tensor(float(scheme.tableau.params[p]))) for p in scheme.learn_params}
        )
        self.h = nn.Parameter(torch.tensor(scheme.h)) if scheme.learn_h else scheme.h
        self.substeps, self.shared = 1, stage_weights == "shared"
        self._plan()
        n_F = self.stages if stage_weights == "separate" else 1
        self.F = nn.ModuleList(make_F() for _ in range(n_F))

    def _plan(self) -> None:
        """The stage plan of a (sub-)step, and its coefficients unless some are learned."""
        learned = self.scheme.learn_h or self.scheme.learn_params
        self._static = None if learned else self._scaled(self.scheme.tableau.coefficients(), self.scheme.h)
        self.plan = StagePlan.of(self.scheme, None if learned else self.coefficients()[2])

    @property
    def stages(self) -> int:
        return self.plan.stages

    def learned_parameters(self) -> dict[str, nn.Parameter]:
        """What the block learns besides its sub-nets: the tableau coefficients (`learned`, e.g. alpha) and, with
        `learn_h`, the step size `h` (the "+2" of HO-ResNet's adaptive RK8 rows)."""
        return {**self.learned, **({"h": self.h} if isinstance(self.h, nn.Parameter) else {})}

    def set_integration(self, scheme: Scheme | Mapping | str | None = None, substeps: int = 1) -> None:
        """Step with another tableau and/or in `substeps` sub-steps of h / substeps (test-time integration, Ott
        et al. 2021). Only a block whose stages share one F can: with separate sub-nets per stage (HO-ResNet),
        another tableau's stages have no weights. The step size h (learned or not) is kept; learned tableau
        coefficients apply only while the tableau is the one they were learned for."""
        if not (isinstance(substeps, int) and substeps >= 1):
            raise ConfigError(f"substeps={substeps!r}; allowed: an integer >= 1")
        if scheme is not None:
            if not self.shared:
                raise ConfigError("another scheme needs the stages to share one F; this block has one sub-net per "
                                  "stage, trained for its own tableau's stages (HO-ResNet, RKCNN)")
            new = scheme_from_config(scheme)
            if new.learn_params or new.learn_h:
                raise ConfigError(f"scheme {new.name!r}: a test-time scheme cannot learn coefficients")
            if new.tableau != self.scheme.tableau:
                self.learned = nn.ParameterDict()
            self.scheme = Scheme(new.tableau, h=self.scheme.h, learn_h=self.scheme.learn_h,
                                 learn_params=tuple(self.learned))
        self.substeps = substeps
        self._plan()

    @staticmethod
    def _scaled(coeffs, h):
        c, A, b = coeffs
        return [ci * h for ci in c], [[a * h for a in row] for row in A], [bi * h for bi in b]

    def coefficients(self):
        """(h c, h A, h b) of one sub-step (h / substeps): floats, or tensors where a coefficient or h is learned."""
        coeffs = self._static if self._static is not None else \
            self._scaled(self.scheme.tableau.coefficients(**dict(self.learned.items())), self.h)
        return coeffs if self.substeps == 1 else self._scaled(coeffs, 1 / self.substeps)

    def forward(self, y: Tensor, *args, t: float | Tensor = 0.0) -> Tensor:
        coefficients = self.coefficients()
        for n in range(self.substeps):
            y = self._step(y, coefficients, *args, t=t + n * (self.h / self.substeps) if n else t)
        return y

    def _step(self, y: Tensor, coefficients, *args, t: float | Tensor = 0.0) -> Tensor:
        hc, hA, hb = coefficients
        plan = self.plan
        ks: dict[int, Tensor] = {}
        out = y
        for i in range(plan.stages):
            z = y
            for j in plan.deps[i]:
                z = _axpy(z, hA[i][j], ks[j], fresh=z is not y)
            kwargs = {"t": t + hc[i]} if self.time_input else {}
            k = self._stage(self.F[i % len(self.F)], z, *args, **kwargs)
            if plan.outs[i]:
                out = _axpy(out, hb[i], k, fresh=out is not y)
            for j in plan.release[i]:
                del ks[j]
            if plan.keep[i]:
                ks[i] = k
        return out

    def _stage(self, F: nn.Module, z: Tensor, *args, **kwargs) -> Tensor:
        if not (self.checkpoint and torch.is_grad_enabled()):
            return F(z, *args, **kwargs)
        if not torch.compiler.is_compiling():  # eager re-runs F's modules; a compiled recomputation mutates nothing
            kwargs["context_fn"] = lambda: (nullcontext(), _running_stats_frozen(F))
        return checkpoint(F, z, *args, use_reentrant=False, **kwargs)

    def extra_repr(self) -> str:
        h = "learned" if isinstance(self.h, nn.Parameter) else self.h
        sub = f", substeps={self.substeps}" if self.substeps > 1 else ""
        return f"scheme={self.scheme.name}, stages={self.stages}, h={h}{sub}"


def _axpy(z: Tensor, a, k: Tensor, fresh: bool) -> Tensor:
    """z + a*k; in place when z is a temporary this block created (an add saves nothing for backward)."""
    if isinstance(a, Tensor):
        return z.add_(a * k) if fresh else z + a * k
    return z.add_(k, alpha=a) if fresh else torch.add(z, k, alpha=a)


@contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of `module` normalise as usual but keep their running statistics.

    Momentum 0 leaves running mean and variance as they are while the same kernels run (so the
    re-run saves the same tensors for backward), and the batch counter is put back.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)
