"""Is a step stable, and at what order does the trained network integrate? Diagnostics of every ODE block.

For a batch of inputs, each block of the network (an `RKBlock`, an ODE-Net `ODEBlock`, an `RKCNNBlock`) is
linearised where the forward pass meets it, and its Jacobians are probed by products only, never formed:

* **Spectra of the stage sub-networks**: the leading eigenvalues of J = dF/dx (largest magnitude, largest
  and smallest real part; ARPACK's implicitly restarted Arnoldi, `scipy.sparse.linalg.eigs`, on a
  `LinearOperator`). The operator is the pullback u -> J^T u of `torch.autograd` (a vector-Jacobian product),
  built once per sub-network and replayed: J is real, so J^T has J's eigenvalues, and a replayed pullback costs
  a tenth of a forward-mode JVP here (3 ms against 31 ms for a 16-channel 28x28 sub-net on a batch of 8, one
  core, float32). A weight-shared F is linearised at the step's start y_n (t_n), each separate stage sub-net
  F_i at its own stage input z_i = y_n + h sum_j a_ij k_j.
* **Against the stability region**: each h lambda is placed against the region {z : |R(z)| <= 1} of the
  tableau the block steps with (`odenets.core.stability`; learned coefficients at their trained values): the
  fraction inside, the largest |R(h lambda)|, and the largest step that keeps every computed decaying mode
  (Re lambda <= 0) inside. This is the stability question of a weight-shared block, whose step is the scheme
  applied to one field; for separate sub-nets per stage (HO-ResNet as published) the step is no scheme applied
  to one linearised field, so there it is an indication only, and:
* **Does the step expand?** The spectral norm of the block's map y_n -> y_{n+1} (the largest singular value of
  its Jacobian, Lanczos on J^T J: `scipy.sparse.linalg.svds`, with J v from differentiating the pullback), for
  every block, and of the whole stack of blocks where they form one (`stack_of`).
* **The measured order** (weight-shared networks only, `measured_order`): the error of the hidden states (every
  output of the last ODE block) with n = 1, 2, 4, ... sub-steps of each test scheme against a reference with
  n = 64 sub-steps of the most accurate one, and the slope p of log error against log(h / n) with its 95%
  interval (Krishnapriyan et al., 2022): a network that is an ODE shows its scheme's order, one that learned
  its solver does not.

The batch's Jacobian is that of the batched map. Evaluated in eval mode nothing couples samples (BatchNorm
normalises with fixed statistics, dropout is off), so it is block-diagonal over samples and its spectrum is the
union of the samples' spectra: one Arnoldi run on it returns the extremes over the batch, which decide
stability, at the cost of one run instead of one per sample (and its spectral norm is the largest over the
samples'). Recurrent layers are stepped op by op (`ODERNNLayer.fused = False`, the same numbers), so their
`RKBlock` is met at every time step: its states s_{t-1} and inputs x_t over all steps are one batch. Products
run in the network's dtype (`odenets-diagnose`: float32 for the spectra, float64 for the order). Costs (products,
seconds) are counted per sub-network and block.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy import stats
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs, svds
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from odenets.core.blocks import RKBlock
from odenets.core.schemes import scheme_from_config
from odenets.core.stability import inside, largest_stable_step, stability_function
from odenets.errors import ConfigError
from odenets.models.odenet import ODEBlock
from odenets.models.recurrent import ODERNNLayer
from odenets.models.rkcnn import RKCNNBlock
from odenets.run.integration import ode_blocks, reintegrate

WHICH = ("LM", "LR", "SR")  # ARPACK: largest magnitude, largest real part, smallest real part
SUBSTEPS = (1, 2, 4, 8, 16)
REFERENCE_SUBSTEPS = 64
ERROR_FLOOR = 1e-12  # relative errors below this are float64 rounding, left out of the slope


# --------------------------------------------------------------------------- Jacobian products
class Jacobian:
    """J = df/dx at `x` (any shape), as products only: `T(u)` = J^T u (the replayed pullback) and `J(v)` = J v
    (the pullback differentiated once more in its cotangent: double backward). `products` counts both."""

    def __init__(self, f: Callable[[Tensor], Tensor], x: Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            self.y = f(self.x)
        self.products = 0
        self._dual: tuple[Tensor, Tensor] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.numel(), self.x.numel()

    def T(self, u: Tensor) -> Tensor:
        self.products += 1
        return _grad(self.y, self.x, u.reshape(self.y.shape), retain_graph=True)

    def J(self, v: Tensor) -> Tensor:
        if self._dual is None:
            with torch.enable_grad():
                w = torch.zeros_like(self.y, requires_grad=True)
                self._dual = w, _grad(self.y, self.x, w, create_graph=True)
        self.products += 1
        w, pullback = self._dual
        return _grad(pullback, w, v.reshape(self.x.shape), retain_graph=True) if pullback.requires_grad \
            else torch.zeros_like(self.y)

    def operator(self, transpose: bool = True) -> LinearOperator:
        """J^T (`transpose`, square maps: the same eigenvalues) or J with its adjoint, on float64 numpy vectors."""
        numpy = lambda product: lambda v: product(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
                                                  .to(self.x.dtype)).reshape(-1).double().numpy()
        if transpose:
            return LinearOperator(self.shape[::-1], matvec=numpy(self.T), dtype=np.float64)
        return LinearOperator(self.shape, matvec=numpy(self.J), rmatvec=numpy(self.T), dtype=np.float64)


def _grad(y: Tensor, x: Tensor, v: Tensor, **kwargs) -> Tensor:
    (g,) = torch.autograd.grad(y, x, v, allow_unused=True, **kwargs)
    return torch.zeros_like(x) if g is None else g


def _start(n: int, seed: int) -> np.ndarray:
    """The Krylov starting vector: fixed by `seed`, so every diagnosis repeats exactly."""
    return np.random.default_rng(seed).standard_normal(n)


def leading_eigenvalues(jac: Jacobian, k: int = 2, ncv: int = 20, maxiter: int = 30, tol: float = 1e-2,
                        seed: int = 0) -> dict:
    """The k eigenvalues of largest magnitude, largest and smallest real part of the square Jacobian `jac`
    (Arnoldi, at most ncv (maxiter + 1) products each), as [re, im] pairs; `converged` counts, per kind,
    those ARPACK certified to `tol` (relative); unconverged ones are left out."""
    n = jac.shape[1]
    if jac.shape[0] != n:
        raise ValueError(f"eigenvalues need a square Jacobian, got {jac.shape}")
    k, ncv = min(k, n - 2), min(ncv, n)
    op, out, converged = jac.operator(), {}, {}
    if not np.any(op @ _start(n, seed)):  # F does not read this state (a down-sampling stage reading x): J = 0
        return {**{which: [[0.0, 0.0]] for which in WHICH}, "converged": dict.fromkeys(WHICH, 1)}
    for which in WHICH:
        try:
            values = eigs(op, k, which=which, ncv=ncv, maxiter=maxiter, tol=tol, v0=_start(n, seed),
                          return_eigenvectors=False)
        except ArpackNoConvergence as e:
            values = e.eigenvalues
        order = {"LM": lambda z: -abs(z), "LR": lambda z: -z.real, "SR": lambda z: z.real}[which]
        out[which] = [[float(z.real), float(z.imag)] for z in sorted(values, key=order)]
        converged[which] = len(values)
    return {**out, "converged": converged}


def spectral_norm(jac: Jacobian, ncv: int = 16, maxiter: int = 30, tol: float = 1e-2, seed: int = 0) -> dict:
    """The largest singular value of `jac` (Lanczos on J^T J, ARPACK through `svds`); `converged` False when
    ARPACK stopped at `maxiter` (the value is then its last estimate, or nan where it had none). `ncv` = 16: with 8,
    two initial HO-ResNet Euler blocks (Fashion-MNIST, close leading singular values) did not converge in 258
    products; with 16 they did in 195."""
    op = jac.operator(transpose=False)
    small = min(op.shape)
    if small < 3:  # too few dimensions for Lanczos: the Jacobian's `small` columns or rows
        return {"value": float(np.linalg.norm(op @ np.eye(op.shape[1]) if op.shape[1] == small
                                              else (op.H @ np.eye(op.shape[0])), 2)), "converged": True}
    try:
        (sigma,) = svds(op, k=1, ncv=min(ncv, small - 1), tol=tol, maxiter=maxiter, v0=_start(small, seed),
                        return_singular_vectors=False, solver="arpack")
        converged = True
    except ArpackNoConvergence as e:
        sigma, converged = (math.sqrt(max(e.eigenvalues)) if len(e.eigenvalues) else math.nan), False
    return {"value": float(sigma), "converged": converged}


# --------------------------------------------------------------------------- where the forward pass meets the blocks
def diagnosed_blocks(net: nn.Module) -> list[nn.Module]:
    """The blocks that step a state: RK and ODE-Net blocks (`odenets.run.integration`) and RKCNN's blocks."""
    blocks = ode_blocks(net) + [m for m in net.modules() if isinstance(m, RKCNNBlock)]
    return sorted(blocks, key=[m for m in net.modules()].index)


@contextmanager
def stepped_op_by_op(net: nn.Module) -> Iterator[None]:
    """Recurrent layers run their `RKBlock` step by step (the same numbers as the fused scan), so it is met."""
    layers = [m for m in net.modules() if isinstance(m, ODERNNLayer) and m.fused]
    for layer in layers:
        layer.fused = False
    try:
        yield
    finally:
        for layer in layers:
            layer.fused = True


def capture_inputs(net: nn.Module, x: Tensor, modules: Sequence[nn.Module]) -> dict[nn.Module, list[tuple]]:
    """(args, kwargs) of every call of each of `modules` in one forward pass of `x` (tensors copied)."""
    calls: dict[nn.Module, list[tuple]] = {m: [] for m in modules}
    copy_ = lambda a: a.detach().clone() if isinstance(a, Tensor) else a
    record = lambda mod, args, kwargs: calls[mod].append((tuple(map(copy_, args)),
                                                          {k: copy_(v) for k, v in kwargs.items()}))
    hooked_pass(net, x, [m.register_forward_pre_hook(record, with_kwargs=True) for m in modules])
    return calls


def hooked_pass(net: nn.Module, x: Tensor, hooks: Sequence[RemovableHandle]) -> None:
    """One forward pass of `x` without gradients, recurrent layers stepped op by op, for its `hooks` to see (they
    are removed after it)."""
    try:
        with torch.no_grad(), stepped_op_by_op(net):
            net(x)
    finally:
        for hook in hooks:
            hook.remove()


def batched(calls: Sequence[tuple]) -> tuple[tuple, dict]:
    """The calls of one module as one call on their concatenated batches (tensors along dim 0; everything
    else must be the same in every call)."""
    args, kwargs = calls[0]
    join = lambda values: torch.cat(values) if isinstance(values[0], Tensor) else _same(values)
    return (tuple(join([c[0][i] for c in calls]) for i in range(len(args))),
            {key: join([c[1][key] for c in calls]) for key in kwargs})


def _same(values: Sequence) -> object:
    if any(v != values[0] for v in values):
        raise ValueError(f"calls differ in a non-tensor argument: {values[:3]}")
    return values[0]


def bn_statistics_of(net: nn.Module, x: Tensor) -> None:
    """Set every BatchNorm's running statistics to those of the batch `x` (one train-mode pass, cumulative average;
    the variance taken back from unbiased to biased): the eval-mode network then normalises exactly as the
    train-mode one does on this batch. For untrained weights, whose running statistics are still 0 and 1."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    counts: dict[nn.Module, int] = {}
    count = lambda mod, args, out: counts.__setitem__(mod, args[0].numel() // args[0].shape[1])  # per channel
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    hooked_pass(net, x, [m.register_forward_hook(count) for m in norms])
    for m, (momentum, training) in zip(norms, saved, strict=True):
        n = counts.get(m, 1)
        m.running_var.mul_((n - 1) / n if n > 1 else 1.0)
        m.momentum = momentum
        m.train(training)


# --------------------------------------------------------------------------- the diagnosis of one block
def step_of(block: nn.Module) -> tuple[float | None, list[list[float]] | None, list[float] | None, str | None]:
    """(h, A, b, scheme) of a block's (sub-)step: the tableau unscaled, learned coefficients at their values;
    (h, None, None, method) for ODE-Net (torchdiffeq's solver is no tableau; h None where it is adaptive)."""
    if isinstance(block, RKBlock):
        h = float(block.h) / block.substeps
        _, hA, hb = block.coefficients()
        return h, [[float(a) / h for a in row] for row in hA], [float(v) / h for v in hb], block.scheme.name
    if isinstance(block, ODEBlock):
        return (None if block.method == "dopri5" else 1.0 / (len(block.t) - 1)), None, None, block.method
    return None, None, None, None


def against_region(eigenvalues: dict, h: float | None, A, b) -> dict:
    """h lambda of the distinct computed eigenvalues against the region of (A, b): the fraction inside (of all, and
    of the decaying ones, Re lambda <= 0, whose growth would be the scheme's alone), the largest |R(h lambda)|, how
    many grow (Re lambda > 0: outside at every h, as the exact flow grows too) and the largest step keeping every
    decaying one inside."""
    lam = np.unique(np.array([complex(*z) for which in WHICH for z in eigenvalues[which]]))
    if h is None or A is None or not len(lam):
        return {}
    decaying = lam[lam.real <= 0]
    return {"inside": float(inside(A, b, h * lam).mean()),
            "decaying_inside": float(inside(A, b, h * decaying).mean()) if len(decaying) else None,
            "max_amplification": float(np.abs(stability_function(A, b, h * lam)).max()),
            "growing": int((lam.real > 0).sum()),
            "stable_step": float(largest_stable_step(A, b, decaying, h_max=max(64.0, 4 * h)).min())
            if len(decaying) else None}


def _timed(fn: Callable[[], dict], jac: Jacobian) -> dict:
    start, before = time.perf_counter(), jac.products
    out = fn()
    return {**out, "products": jac.products - before, "seconds": round(time.perf_counter() - start, 3)}


def diagnose_block(name: str, block: nn.Module, calls: dict, k: int = 2, seed: int = 0) -> dict:
    """Spectra of the block's stage sub-networks (against its tableau's region) and its step's spectral norm, at
    the `states` (rows of the batch: samples, times samples for a recurrent layer) where the forward pass met it."""
    h, A, b, scheme = step_of(block)
    args, kwargs = batched(calls[block])
    y, rest = args[0], args[1:]
    shared = isinstance(block, ODEBlock) or (isinstance(block, RKBlock) and block.shared)
    if isinstance(block, ODEBlock):
        stages = [(None, lambda z: block.func(z, t=kwargs.get("t", 0.0)), y)]
    elif isinstance(block, RKBlock) and shared:
        t = {"t": kwargs.get("t", 0.0)} if block.time_input else {}
        stages = [(None, lambda z: block.F[0](z, *rest, **t), y)]
    elif isinstance(block, RKBlock):
        stages = []
        for i, F in enumerate(block.F):
            (z, *other), kw = batched(calls[F])
            stages.append((i, lambda z_, F=F, other=other, kw=kw: F(z_, *other, **kw), z))
    else:  # RKCNN: its stages read concatenations of several widths; only the step map is square
        stages = []
    out = {"block": name, "type": type(block).__name__, "weights": "shared" if shared else "separate",
           "scheme": scheme, "h": h, "A": A, "b": b, "states": len(y), "stages": []}
    for stage, f, z in stages:
        jac = Jacobian(f, z)
        spectrum = _timed(lambda jac=jac: leading_eigenvalues(jac, k=k, seed=seed), jac)
        out["stages"].append({"stage": stage, **spectrum, **against_region(spectrum, h, A, b)})
    step = Jacobian(lambda y_: block(y_, *rest, **kwargs), y)
    out["step_norm"] = _timed(lambda: spectral_norm(step, seed=seed), step)
    out["products"] = sum(s["products"] for s in out["stages"]) + out["step_norm"]["products"]
    out["seconds"] = round(sum(s["seconds"] for s in out["stages"]) + out["step_norm"]["seconds"], 3)
    return out


def stack_of(net: nn.Module, blocks: Sequence[nn.Module]) -> nn.Sequential | None:
    """The innermost `nn.Sequential` holding every block (HO-ResNet's `blocks`), or None (RKCNN's periods)."""
    holding = [m for m in net.modules() if isinstance(m, nn.Sequential)
               and all(any(b is d for d in m.modules()) for b in blocks)]
    return holding[-1] if holding else None  # modules() lists parents first


def _same_tensor(a, b) -> bool:
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)


def diagnose(net: nn.Module, x: Tensor, k: int = 2, seed: int = 0) -> dict:
    """`diagnose_block` for every block of `net` (in eval mode) at the batch `x`, and the spectral norm of the
    stack of blocks (`stack_of`) from the first block's state to the last one's output, where the stack maps that
    state (not a recurrent layer's input sequence) to one of its shape: at equal integration time the whole stack
    is what compares (Euler X14's 14 blocks against RK8 X1's one)."""
    blocks = diagnosed_blocks(net)
    if not blocks:
        raise ConfigError("the model has no ODE block (an RK, ODE-Net or RKCNN block): there is no step to diagnose")
    net.eval()
    stack = stack_of(net, blocks)
    modules = blocks + [F for block in blocks if isinstance(block, RKBlock) and not block.shared for F in block.F]
    calls = capture_inputs(net, x, modules + ([stack] if stack is not None else []))
    names = {m: name for name, m in net.named_modules()}
    out = {"blocks": [diagnose_block(names[block], block, calls, k, seed) for block in blocks], "stack": None}
    starts = calls[blocks[0]][0][0][0]  # the state the first block steps from
    if stack is not None and len(calls[stack]) == 1 and _same_tensor(calls[stack][0][0][0], starts):
        (y, *rest), kwargs = calls[stack][0]
        if len(blocks) == 1 and list(stack) == blocks:
            norm = {**out["blocks"][0]["step_norm"], "products": 0, "seconds": 0.0}  # the stack is the one block
        else:
            jac = Jacobian(lambda y_: stack(y_, *rest, **kwargs), y)
            norm = _timed(lambda: spectral_norm(jac, seed=seed), jac) if jac.shape[0] == jac.shape[1] else None
        out["stack"] = None if norm is None else {"module": names[stack], "blocks": len(blocks), "norm": norm}
    return out


# --------------------------------------------------------------------------- the measured order
def hidden_states(net: nn.Module, x: Tensor, scheme: str, substeps: int) -> Tensor:
    """Every output of the last ODE block in a forward pass of `x` with `scheme` in `substeps` sub-steps (on a
    copy: another scheme replaces a block's learned coefficients)."""
    net = copy.deepcopy(net)
    reintegrate(net, scheme_from_config(scheme), substeps)
    outputs: list[Tensor] = []
    hook = ode_blocks(net)[-1].register_forward_hook(lambda m, a, out: outputs.append(out.detach().reshape(-1)))
    try:
        with torch.no_grad(), stepped_op_by_op(net):
            net.eval()(x)
    finally:
        hook.remove()
    return torch.cat(outputs)


def fitted_order(steps: Sequence[float], errors: Sequence[float]) -> dict:
    """The slope of log(error) against log(step) with its 95% interval (t, n - 2 degrees of freedom), over
    the errors above `ERROR_FLOOR`; None where fewer than three remain."""
    used = [(s, e) for s, e in zip(steps, errors, strict=True) if e > ERROR_FLOOR]
    if len(used) < 3:
        return {"order": None, "interval": None, "points": len(used)}
    fit = stats.linregress(np.log([s for s, _ in used]), np.log([e for _, e in used]))
    half = float(stats.t.ppf(0.975, len(used) - 2) * fit.stderr)
    return {"order": float(fit.slope), "interval": [float(fit.slope) - half, float(fit.slope) + half],
            "points": len(used)}


def measured_order(net: nn.Module, x: Tensor, schemes: Sequence[str], substeps: Sequence[int] = SUBSTEPS,
                   reference: int = REFERENCE_SUBSTEPS) -> dict:
    """Per test scheme the relative error ||Y_n - Y_ref|| / ||Y_ref|| of the hidden states with n sub-steps
    against `reference` sub-steps of the highest-order scheme among `schemes`, and the fitted order."""
    if max(substeps) >= reference:
        raise ConfigError(f"substeps up to {max(substeps)} need a finer reference than reference={reference}")
    blocks = ode_blocks(net)
    if not blocks:
        raise ConfigError("the model has no RK or ODE-Net block: there is no integration to refine")
    h = step_of(blocks[-1])[0] or 1.0
    best = max(schemes, key=lambda s: scheme_from_config(s).tableau.order)
    start = time.perf_counter()
    ref = hidden_states(net, x, best, reference)
    out = {"reference": {"scheme": best, "substeps": reference}, "substeps": list(substeps), "h": h, "schemes": {}}
    for scheme in schemes:
        errors = [float((hidden_states(net, x, scheme, n) - ref).norm() / ref.norm()) for n in substeps]
        out["schemes"][scheme] = {"errors": errors, "expected": scheme_from_config(scheme).tableau.order,
                                  **fitted_order([h / n for n in substeps], errors)}
    out["seconds"] = round(time.perf_counter() - start, 3)
    return out

