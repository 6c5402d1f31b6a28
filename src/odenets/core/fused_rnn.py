"""A recurrent cell stepped by a Runge-Kutta tableau over a whole sequence, as one autograd node (issue 12).

The ODE-stepped RNNs of HeunNet (eq. 4-7) evaluate their transition F once per stage at every time
step. Written op by op, every evaluation records a dozen autograd nodes and a small matrix product
for each weight gradient; `rk_scan` instead runs the whole sequence in one `torch.autograd.Function`:

* forward: for t = 1..T, the stages k_i = F(z_i, u_t), z_i = y + sum_j hA_ij k_j, and
  y <- y + g_t * sum_i hb_i k_i, with the cell arithmetic written out (no graph is recorded). u_t = x_t W_in^T
  + b is the input half of the gates, the same at every stage, so it is computed once per step; g_t is an
  optional per-unit gate on the step (Phased LSTM's time gate: its update is y + k_t (cell(y) - y), an Euler
  step of per-unit size k_t);
* backward: the adjoint of the same recursion, stage by stage in reverse (dk_i = hb_i dy +
  sum_{l>i} hA_li dz_l, dz_i = F'(z_i)^T dk_i, dy <- dy + sum_i dz_i), with the gradients of the weights,
  of learned coefficients (alpha, h) and of the gate where they are needed.

F is the cell's increment, F(s, u) = cell(s, u) - s, so an Euler step is exactly the cell's own update
(`odenets.models.recurrent`). Kernels (`KERNELS`) hold one cell's forward and backward: `lstm`
(s = [h; c], torch's gate order i, f, g, o), `gru` (torch's r, z, n with b_hn inside r * (.)) and
`rnn` (tanh(W h + u)). Every evaluation writes into buffers made once per sequence (states, stage
increments, what the backward reads), so a step allocates nothing.

On CPU (float32/64) the whole time loop runs in `fused_rnn.cpp`, built by torch's extension loader on first
use and cached: per evaluation one matrix product and one vectorised loop that also forms the stage sums, the
weight gradients accumulated per step while their operands are in cache. On other devices, or where it cannot
be built, the same recursion runs as torch operations (`_steps`, `_adjoint`), which the tests compare it with;
the plain op-by-op loop (`model.fused=false`) computes the same numbers as both.

The scan takes objects, read by name on both sides (the C++ reads them by attribute): a `ScanSpec` (the cell,
the stage plan, the coefficients and the state size), the cell's `CellParams`, and one sequence's
`ScanBuffers`. Autograd sees the tensors among them as one `ScanInputs`, whose fields also name the gradients
the backward forms and returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import Function

from odenets.core.stage_plan import StagePlan

NATIVE_SOURCE = Path(__file__).with_suffix(".cpp")
NATIVE_DTYPES = (torch.float32, torch.float64)

# How torch's extension loader fails where it cannot build: no ninja, no compiler, no headers, a compile error or
# an unloadable library (RuntimeError: it re-raises ninja's failure as one), an unwritable build directory
# (OSError), no setuptools or no `ninja` package (ImportError), a compiler that answers neither -v nor --version.
BUILD_FAILURES = (RuntimeError, OSError, ImportError, subprocess.CalledProcessError)


@cache
def native_kernels():
    """The compiled loops of `fused_rnn.cpp`, or None (with one warning) where they cannot be built.

    Built with -march=native, so the extension's name carries a digest of the CPU's model and flags: a home
    directory shared by different machines keeps one build per CPU. `ODENETS_NATIVE=0` turns them off."""
    if os.environ.get("ODENETS_NATIVE", "1") == "0":
        return None
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # not "no CUDA runtime found"
    cpu = platform.machine() + (_cpu_flags() or "")
    name = f"odenets_fused_rnn_{hashlib.sha256(cpu.encode()).hexdigest()[:8]}"
    flags = ["-O3", "-fno-trapping-math"] + (["-march=native"] if platform.machine() in ("x86_64", "AMD64") else [])
    try:
        from torch.utils.cpp_extension import load  # imports setuptools

        _put_ninja_on_path()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(name, [str(NATIVE_SOURCE)], extra_cflags=flags, verbose=False)
    except BUILD_FAILURES as e:  # the torch operations compute the same
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"odenets: fused_rnn.cpp could not be built ({reason}); the recurrent cells run as torch "
                      "operations (same numbers, slower)", stacklevel=2)
        return None


def _put_ninja_on_path() -> None:
    """torch's loader runs `ninja` from PATH; the `ninja` package installed with odenets lives beside the
    interpreter, which is not on PATH when the virtual environment is not activated."""
    if shutil.which("ninja") is None:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _cpu_flags() -> str | None:
    try:
        return next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), None)
    except OSError:
        return None


# --------------------------------------------------------------------------- the scan's objects
class CellParams(NamedTuple):
    """A cell's parameters as the scan reads them: the gates' input half u = x W_in^T + bias (one matrix product for
    all t), the recurrent weight W_hh (G, H) and, for the GRU, b_hn (inside r * (.); None for the other cells)."""

    w_in: Tensor
    bias: Tensor
    w_hh: Tensor
    b_hn: Tensor | None = None


class ScanInputs(NamedTuple):
    """The tensors the scan differentiates, by name: the inputs x (time-major; (T B, F) inside the scan), the cell's
    `CellParams`, the coefficients hA, hb and the step gate (None if there is none). `_RKScan` receives them as
    arguments, so autograd sees them; the same fields say which gradients its backward forms (`needed`) and hold
    them, in both implementations (`fused_rnn.cpp` returns them by these names)."""

    x: Tensor
    w_in: Tensor
    bias: Tensor
    w_hh: Tensor
    b_hn: Tensor | None
    hA: Tensor
    hb: Tensor
    gate: Tensor | None


# --------------------------------------------------------------------------- kernels: products + elementwise
# The torch-op path (GPU tensors, or no compiler): a kernel's forward writes k = F(z, u) and what its backward
# reads (`saved`, one buffer per entry of `widths(n)[1]`); its backward writes the gradients of the gate
# pre-activations (d_pre), of u where they differ (d_u) and of z (dz). Both read the recurrent weights from the
# scan's `ScanInputs`. `fused_rnn.cpp` has the same three.
class LSTMKernel:
    """F([h; c], u) = [h' - h; c' - c], gates u + h W^T (torch's order i, f, g, o); saved: i, f, g, o and
    tanh(c')."""

    input_grad_is_gate_grad = True

    @staticmethod
    def widths(n: int) -> tuple[int, tuple[int, ...]]:
        return 4 * n, (4 * n, n)

    @staticmethod
    def forward(z: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, inputs: ScanInputs) -> None:
        """k = [h' - h; c' - c] from the gate pre-activations; saved: act = [i, f, g, o], tanh(c')."""
        act, tanh_c = saved
        n = z.shape[1] // 2
        gates = torch.addmm(u, z[:, :n], inputs.w_hh.t())
        i, f = torch.sigmoid(gates[:, :n]), torch.sigmoid(gates[:, n:2 * n])
        g, o = torch.tanh(gates[:, 2 * n:3 * n]), torch.sigmoid(gates[:, 3 * n:])
        c = z[:, n:]
        c_new = f * c + i * g
        torch.tanh(c_new, out=tanh_c)
        torch.cat([o * tanh_c - z[:, :n], c_new - c], dim=1, out=k)
        torch.cat([i, f, g, o], dim=1, out=act)

    @staticmethod
    def backward(dk: Tensor, z: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dz: Tensor, inputs: ScanInputs) -> None:
        """Gradients of the gate pre-activations, and of z (through the gates: + d_pre W)."""
        act, tanh_c = saved
        n = z.shape[1] // 2
        i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
        dh, dc = dk[:, :n], dk[:, n:]
        dc_new = dc + dh * o * (1 - tanh_c * tanh_c)
        torch.cat([dc_new * g * i * (1 - i), dc_new * z[:, n:] * f * (1 - f), dc_new * i * (1 - g * g),
                   dh * tanh_c * o * (1 - o)], dim=1, out=d_pre)
        torch.cat([-dh, dc_new * f - dc], dim=1, out=dz)
        dz[:, :n].addmm_(d_pre, inputs.w_hh)


class GRUKernel:
    """F(h, u) = h' - h = (1 - z)(n - h), r, z = sigmoid(u + h W^T), n = tanh(u_n + r (h W_n^T + b_n));
    saved: h W_n^T + b_n, r, z, n."""

    input_grad_is_gate_grad = False  # u_n's gradient lacks the factor r that (h W_n^T + b_n)'s has

    @staticmethod
    def widths(m: int) -> tuple[int, tuple[int, ...]]:
        return 3 * m, (4 * m,)

    @staticmethod
    def forward(h: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, inputs: ScanInputs) -> None:
        """k = (1 - z)(n - h) from hh = h W^T; saved: [h W_n^T + b_n, r, z, n]."""
        hh, m = h.mm(inputs.w_hh.t()), h.shape[1]
        hn = hh[:, 2 * m:] + inputs.b_hn
        r = torch.sigmoid(u[:, :m] + hh[:, :m])
        z = torch.sigmoid(u[:, m:2 * m] + hh[:, m:2 * m])
        cand = torch.tanh(u[:, 2 * m:] + r * hn)
        torch.mul(1 - z, cand - h, out=k)
        torch.cat([hn, r, z, cand], dim=1, out=saved[0])

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dh: Tensor, inputs: ScanInputs) -> None:
        """Gradients of hh, of u, and of h (through hh: + d_pre W)."""
        hn, r, z, cand = saved[0].chunk(4, dim=1)
        d_cand = dk * (1 - z) * (1 - cand * cand)
        d_r = d_cand * hn * r * (1 - r)
        d_z = dk * (h - cand) * z * (1 - z)
        torch.cat([d_r, d_z, d_cand * r], dim=1, out=d_pre)
        torch.cat([d_r, d_z, d_cand], dim=1, out=d_u)
        torch.mul(dk, z - 1, out=dh)
        dh.addmm_(d_pre, inputs.w_hh)


class TanhKernel:
    """F(h, u) = tanh(u + h W^T); its backward reads F itself (k), nothing else is saved."""

    input_grad_is_gate_grad = True

    @staticmethod
    def widths(n: int) -> tuple[int, tuple[int, ...]]:
        return n, ()

    @staticmethod
    def forward(h: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, inputs: ScanInputs) -> None:
        torch.addmm(u, h, inputs.w_hh.t(), out=k).tanh_()

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dh: Tensor, inputs: ScanInputs) -> None:
        torch.mul(dk, 1 - k * k, out=d_pre)
        torch.mm(d_pre, inputs.w_hh, out=dh)


KERNELS = {"lstm": LSTMKernel, "gru": GRUKernel, "rnn": TanhKernel}


@dataclass(frozen=True, eq=False)  # compared and hashed as itself: its tensors have no one truth value
class ScanSpec:
    """What the scan steps: the cell (`kernel`, a key of `KERNELS`), the stage `plan` (the `RKBlock`'s own, so both
    compute the same step), its coefficients hA, hb = h A, h b (tensors: a learned alpha or h keeps its gradient),
    the state size S (LSTM: 2H, [h; c]) and an optional per-unit gate on the step, (T, S): y <- y + g_t * sum_i
    hb_i k_i (Phased LSTM's time gate). `A`, `b`: hA and hb as numbers, as both loops read them."""

    kernel: str
    plan: StagePlan
    hA: Tensor
    hb: Tensor
    state_size: int
    gate: Tensor | None = None
    A: list[list[float]] = field(init=False, repr=False)
    b: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"fused_rnn: unknown cell {self.kernel!r}; allowed: {', '.join(KERNELS)}")
        A, b = self.hA.tolist(), self.hb.tolist()
        if self.plan.single is not None and b[self.plan.single] != 1:
            raise ValueError(f"fused_rnn: the plan's increment is stage {self.plan.single} alone, but its weight is "
                             f"{b[self.plan.single]}")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)


class Workspace:
    """Large buffers kept from one training step to the next: a fresh one costs a page fault per 4 KiB on
    first touch (allocations this large bypass the heap), which made the fused path slower than op by op.
    Each recurrent layer owns one and passes it to `rk_scan`; evaluation batches reuse what training left."""

    def __init__(self) -> None:
        self.free: dict[tuple, list[Tensor]] = {}

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        pool = self.free.get((shape, like.dtype, like.device), [])
        return pool.pop() if pool else like.new_empty(shape)

    def give(self, *tensors: Tensor) -> None:
        for t in tensors:
            pool = self.free.setdefault((tuple(t.shape), t.dtype, t.device), [])
            if len(pool) < 4:
                pool.append(t)


class ScanBuffers(NamedTuple):
    """One sequence's buffers, from `workspace` (which the torch path also takes its temporaries from). Stage inputs
    Z (T + 1, s, B, S): Z[t, 0] is y_t, so the states need no copies and the weight gradient reads every
    evaluation's h from Z; stage increments K (T, s, B, S); `saved`, what the cell's backward reads (T, s, B, width)
    per width of `widths`; `inc` (T, B, S), a gated step's increment where no stage alone is it (else None)."""

    Z: Tensor
    K: Tensor
    saved: tuple[Tensor, ...]
    inc: Tensor | None
    workspace: Workspace

    @classmethod
    def take(cls, workspace: Workspace, spec: ScanSpec, x: Tensor, hidden: int) -> ScanBuffers:
        """The buffers for inputs x (T, B, F) and `hidden` units."""
        (T, B), s, S = x.shape[:2], spec.plan.stages, spec.state_size
        Z, K = workspace.take((T + 1, s, B, S), x), workspace.take((T, s, B, S), x)
        saved = tuple(workspace.take((T, s, B, w), x) for w in KERNELS[spec.kernel].widths(hidden)[1])
        inc = workspace.take((T, B, S), x) if spec.gate is not None and spec.plan.single is None else None
        return cls(Z, K, saved, inc, workspace)

    def give_back(self) -> None:
        self.workspace.give(self.Z, self.K, *self.saved, *((self.inc,) if self.inc is not None else ()))


class _RKScan(Function):
    """The scan as one autograd node. Its buffers go back to the layer's `Workspace` after backward (so the graph
    cannot be backpropagated twice), or at once without a gradient. On CPU the time loop runs in `fused_rnn.cpp`
    (`native`), elsewhere as torch operations (`_steps`, `_adjoint`): the same recursion, laid out by the same
    `StagePlan`. `tensors`: a `ScanInputs`, as arguments (what autograd differentiates)."""

    @staticmethod
    def forward(ctx, spec: ScanSpec, workspace: Workspace, native, recording: bool, *tensors: Tensor | None) -> Tensor:
        inputs = ScanInputs._make(tensors)
        x, n = inputs.x, inputs.w_hh.shape[1]
        T, B = x.shape[:2]
        inputs = inputs._replace(x=x.reshape(T * B, x.shape[2]).contiguous(),
                                 gate=inputs.gate.contiguous() if inputs.gate is not None else None)
        buffers = ScanBuffers.take(workspace, spec, x, n)
        if native is not None:
            native.scan_forward(spec, inputs, buffers)
        else:
            _steps(spec, inputs, buffers)
        hidden = buffers.Z[1:, 0, :, :n].clone(memory_format=torch.contiguous_format)
        if not (recording and any(ctx.needs_input_grad)):  # no backward reads them: the next sequence reuses them
            buffers.give_back()
            return hidden
        ctx.spec, ctx.native, ctx.buffers = spec, native, buffers
        ctx.save_for_backward(*inputs)
        return hidden

    @staticmethod
    def backward(ctx, d_hidden: Tensor):
        if ctx.buffers is None:
            raise RuntimeError("fused_rnn: the sequence was already backpropagated (its buffers are reused)")
        inputs = ScanInputs._make(ctx.saved_tensors)
        needed = ScanInputs._make(ctx.needs_input_grad[-len(ScanInputs._fields):])
        if ctx.native is not None:
            grads = ScanInputs(**ctx.native.scan_backward(ctx.spec, inputs, ctx.buffers, d_hidden.contiguous(),
                                                          needed))
        else:
            grads = _adjoint(ctx.spec, inputs, ctx.buffers, d_hidden, needed)
        ctx.buffers.give_back()
        ctx.buffers = None
        grads = grads._replace(x=grads.x.view(*d_hidden.shape[:2], -1) if grads.x is not None else None,
                               **{c: getattr(grads, c).to(getattr(inputs, c).dtype) for c in ("hA", "hb")
                                  if getattr(grads, c) is not None})
        return (*[None] * (len(ctx.needs_input_grad) - len(grads)), *grads)  # None for spec, workspace, ...


def _steps(spec: ScanSpec, inputs: ScanInputs, buffers: ScanBuffers) -> None:
    """The forward recursion as torch operations: u_t = x_t W_in^T + b for all t at once, then per step the
    stages k_i = F(z_i, u_t), z_i = y + sum_j hA_ij k_j, and y <- y + g_t * sum_i hb_i k_i."""
    Kn, plan, A, b = KERNELS[spec.kernel], spec.plan, spec.A, spec.b
    x2d, gate = inputs.x, inputs.gate
    Z, K, saved, inc, workspace = buffers
    T, s = K.shape[:2]
    U = workspace.take((T * K.shape[2], inputs.w_in.shape[0]), x2d)
    torch.addmm(inputs.bias, x2d, inputs.w_in.t(), out=U)
    Z[0, 0].zero_()
    outs = [i for i in range(s) if plan.outs[i]]
    for t, ut in enumerate(U.view(T, K.shape[2], -1)):  # per-stage views by one unbind each: cheaper than indexing
        zt, kt, svt = Z[t].unbind(0), K[t].unbind(0), [v[t].unbind(0) for v in saved]
        y = zt[0]
        for i in range(s):
            z = zt[i]
            for m, j in enumerate(plan.deps[i]):
                torch.add(y, kt[j], alpha=A[i][j], out=z) if m == 0 else z.add_(kt[j], alpha=A[i][j])
            if i and not plan.deps[i]:
                z.copy_(y)
            Kn.forward(z, ut, tuple(v[i] for v in svt), kt[i], inputs)
        nxt = Z[t + 1, 0]
        if gate is None:  # y + sum_i hb_i k_i straight into the next state
            for m, i in enumerate(outs):
                torch.add(y, kt[i], alpha=b[i], out=nxt) if m == 0 else nxt.add_(kt[i], alpha=b[i])
            continue
        increment = kt[plan.single] if plan.single is not None else inc[t]
        if plan.single is None:
            for m, i in enumerate(outs):
                torch.mul(kt[i], b[i], out=increment) if m == 0 else increment.add_(kt[i], alpha=b[i])
        torch.addcmul(y, gate[t], increment, out=nxt)
    workspace.give(U)


def _adjoint(spec: ScanSpec, inputs: ScanInputs, buffers: ScanBuffers, d_hidden: Tensor,
             needed: ScanInputs) -> ScanInputs:
    """The backward recursion as torch operations, stage by stage in reverse: dk_i = hb_i dy + sum_{l>i} hA_li
    dz_l, dz_i = F'(z_i)^T dk_i, dy <- dy + sum_i dz_i; the weight gradients as one matrix product over every
    evaluation at the end. Returns the gradients `needed` names (None where not needed)."""
    Kn, plan, A, b = KERNELS[spec.kernel], spec.plan, spec.A, spec.b
    x2d, gate = inputs.x, inputs.gate
    Z, K, saved, inc, workspace = buffers
    T, s, B, S = K.shape
    n = inputs.w_hh.shape[1]
    G = Kn.widths(n)[0]
    take = workspace.take
    d_pre = take((T, s, B, G), d_hidden)  # every evaluation's gate pre-activation gradient
    d_u = d_pre if Kn.input_grad_is_gate_grad else take((T, s, B, G), d_hidden)
    DZ = take((T if needed.hA else 1, s, B, S), d_hidden)  # every step's, if A is learned
    DK = take((s, B, S), d_hidden)
    dks = DK.unbind(0)
    d_inc_all = take((T, B, S), d_hidden) if needed.hb else None
    d_gate = torch.zeros_like(gate) if needed.gate else None
    dy = d_hidden.new_zeros(B, S)
    for t in reversed(range(T)):
        dy[:, :n] += d_hidden[t]
        d_inc = dy if gate is None else dy * gate[t]
        if d_gate is not None:
            torch.sum(dy * (K[t, plan.single] if plan.single is not None else inc[t]), 0, out=d_gate[t])
        if needed.hb:
            d_inc_all[t].copy_(d_inc)
        dz, zt, kt = DZ[t if needed.hA else 0].unbind(0), Z[t].unbind(0), K[t].unbind(0)
        svt, dpt = [v[t].unbind(0) for v in saved], d_pre[t].unbind(0)
        dut = dpt if d_u is d_pre else d_u[t].unbind(0)
        for i in reversed(range(s)):
            if i == plan.single:
                dk = d_inc
            else:
                dk = dks[i]
                first = True
                if plan.outs[i]:
                    torch.mul(d_inc, b[i], out=dk)
                    first = False
                for m in plan.users[i]:
                    torch.mul(dz[m], A[m][i], out=dk) if first else dk.add_(dz[m], alpha=A[m][i])
                    first = False
                if first:
                    dk.zero_()
            Kn.backward(dk, zt[i], tuple(v[i] for v in svt), kt[i], dpt[i], dut[i], dz[i], inputs)
        for i in range(s):
            dy += dz[i]
    gA = gb = None
    if needed.hA:  # shaped as hA: it may have stages the plan leaves out (Verner 8(9)'s embedded pair)
        gA = torch.zeros(inputs.hA.shape, dtype=torch.float64)
        for m in range(s):
            for i in plan.deps[m]:
                gA[m, i] = float((DZ[:, m] * K[:, i]).sum(dtype=torch.float64))
    if needed.hb:
        gb = torch.zeros(inputs.hb.shape, dtype=torch.float64)
        for i in range(s):
            if plan.outs[i]:
                gb[i] = float((d_inc_all * K[:, i]).sum(dtype=torch.float64))
    d_W = d_pre.reshape(-1, G).t().mm(Z[:T].reshape(-1, S)[:, :n]) if needed.w_hh else None
    d_bias_n = d_pre.reshape(-1, G)[:, 2 * n:].sum(0) if needed.b_hn else None  # the GRU's b_hn, inside r * (.)
    d_u_all = d_u[:, 0]  # u's gradient, summed over the stages: (T, B, G)
    if s > 1:
        d_u_all = torch.add(d_u[:, 0], d_u[:, 1], out=take((T, B, G), d_hidden))
        for i in range(2, s):
            d_u_all += d_u[:, i]
    d_u_all = d_u_all.reshape(T * B, G)
    d_x = d_u_all.mm(inputs.w_in) if needed.x else None
    d_w_in = x2d.t().mm(d_u_all).t() if needed.w_in else None  # this order: MKL's faster one
    d_bias = d_u_all.sum(0) if needed.bias else None
    workspace.give(d_pre, DZ, DK, *((d_u,) if d_u is not d_pre else ()), *((d_inc_all,) if needed.hb else ()),
                   *((d_u_all.view(T, B, G),) if s > 1 else ()))
    return ScanInputs(x=d_x, w_in=d_w_in, bias=d_bias, w_hh=d_W, b_hn=d_bias_n, hA=gA, hb=gb, gate=d_gate)


def rk_scan(spec: ScanSpec, x: Tensor, params: CellParams, workspace: Workspace, native: bool | None = None) -> Tensor:
    """Hidden states (T, B, H) of the cell `spec` names, stepped by its tableau and stage plan over inputs x
    (T, B, F), with the cell's `params`. Time-major, as the scan reads them: every step's inputs and states are
    contiguous.

    `workspace`: the calling layer's buffers, reused from one sequence to the next.
    `native`: run the time loop in `fused_rnn.cpp` (None: wherever it applies and is built; False: as torch
    operations).
    """
    same_dtype = all(p.dtype == x.dtype for p in params if p is not None)
    applies = x.device.type == "cpu" and x.dtype in NATIVE_DTYPES and same_dtype
    compiled = native_kernels() if native is not False and applies else None
    if native and compiled is None:
        raise RuntimeError("odenets.core.fused_rnn: native kernels asked for, but they do not apply or did not build")
    recording = torch.is_grad_enabled()  # under no_grad, needs_input_grad still marks the weights
    inputs = ScanInputs(x=x, **params._asdict(), hA=spec.hA, hb=spec.hb, gate=spec.gate)
    return _RKScan.apply(spec, workspace, compiled, recording, *inputs)
