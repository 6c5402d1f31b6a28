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
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import Function

from odenets.core.stage_plan import StagePlan

NATIVE_SOURCE = Path(__file__).with_suffix(".cpp")
NATIVE_DTYPES = (torch.float32, torch.float64)


@cache
def native_kernels():
    """The compiled loops of `fused_rnn.cpp`, or None (with one warning) where they cannot be built.

    Built with -march=native, so the extension's name carries a digest of the CPU's model and flags: a home
    directory shared by different machines keeps one build per CPU. `ODENETS_NATIVE=0` turns them off."""
    if os.environ.get("ODENETS_NATIVE", "1") == "0":
        return None
    try:
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # not "no CUDA runtime found"
        from torch.utils.cpp_extension import load

        _put_ninja_on_path()

        cpu = platform.machine() + (_cpu_flags() or "")
        name = f"odenets_fused_rnn_{hashlib.sha256(cpu.encode()).hexdigest()[:8]}"
        flags = ["-O3", "-fno-trapping-math"] + (["-march=native"] if platform.machine() in ("x86_64", "AMD64") else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(name, [str(NATIVE_SOURCE)], extra_cflags=flags, verbose=False)
    except Exception as e:  # no compiler, no ninja, no headers: the torch operations compute the same
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


# --------------------------------------------------------------------------- the cells' arithmetic in torch
def _lstm_forward(gates: Tensor, z: Tensor, k: Tensor, act: Tensor, tanh_c: Tensor) -> None:
    """k = [h' - h; c' - c] from the gate pre-activations; saved: act = [i, f, g, o], tanh(c')."""
    n = z.shape[1] // 2
    i, f = torch.sigmoid(gates[:, :n]), torch.sigmoid(gates[:, n:2 * n])
    g, o = torch.tanh(gates[:, 2 * n:3 * n]), torch.sigmoid(gates[:, 3 * n:])
    c = z[:, n:]
    c_new = f * c + i * g
    torch.tanh(c_new, out=tanh_c)
    torch.cat([o * tanh_c - z[:, :n], c_new - c], dim=1, out=k)
    torch.cat([i, f, g, o], dim=1, out=act)


def _lstm_backward(dk: Tensor, z: Tensor, act: Tensor, tanh_c: Tensor, d_pre: Tensor, dz: Tensor) -> None:
    """Gradients of the gate pre-activations, and of z except through the gates (-dh, dc' f - dc)."""
    n = z.shape[1] // 2
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    dh, dc = dk[:, :n], dk[:, n:]
    dc_new = dc + dh * o * (1 - tanh_c * tanh_c)
    torch.cat([dc_new * g * i * (1 - i), dc_new * z[:, n:] * f * (1 - f), dc_new * i * (1 - g * g),
               dh * tanh_c * o * (1 - o)], dim=1, out=d_pre)
    torch.cat([-dh, dc_new * f - dc], dim=1, out=dz)


def _gru_forward(hh: Tensor, u: Tensor, h: Tensor, bias_n: Tensor, saved: Tensor, k: Tensor) -> None:
    """k = (1 - z)(n - h) from hh = h W^T; saved: [h W_n^T + b_n, r, z, n]."""
    m = h.shape[1]
    hn = hh[:, 2 * m:] + bias_n
    r = torch.sigmoid(u[:, :m] + hh[:, :m])
    z = torch.sigmoid(u[:, m:2 * m] + hh[:, m:2 * m])
    cand = torch.tanh(u[:, 2 * m:] + r * hn)
    torch.mul(1 - z, cand - h, out=k)
    torch.cat([hn, r, z, cand], dim=1, out=saved)


def _gru_backward(dk: Tensor, h: Tensor, saved: Tensor, d_pre: Tensor, d_u: Tensor, dh: Tensor) -> None:
    """Gradients of hh, of u, and of h except through hh."""
    hn, r, z, cand = saved.chunk(4, dim=1)
    d_cand = dk * (1 - z) * (1 - cand * cand)
    d_r = d_cand * hn * r * (1 - r)
    d_z = dk * (h - cand) * z * (1 - z)
    torch.cat([d_r, d_z, d_cand * r], dim=1, out=d_pre)
    torch.cat([d_r, d_z, d_cand], dim=1, out=d_u)
    torch.mul(dk, z - 1, out=dh)


# --------------------------------------------------------------------------- kernels: products + elementwise
# The torch-op path (GPU tensors, or no compiler): a kernel's forward writes k = F(z, u) and what its backward
# reads (`saved`, one buffer per entry of `widths(n)[1]`); its backward writes the gradients of the gate
# pre-activations (d_pre), of u where they differ (d_u) and of z (dz). `fused_rnn.cpp` has the same three.
class LSTMKernel:
    """F([h; c], u) = [h' - h; c' - c], gates u + h W^T (torch's order i, f, g, o); saved: i, f, g, o and
    tanh(c')."""

    input_grad_is_gate_grad = True

    @staticmethod
    def widths(n: int) -> tuple[int, tuple[int, ...]]:
        return 4 * n, (4 * n, n)

    @staticmethod
    def forward(z: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, weight: Tensor) -> None:
        _lstm_forward(torch.addmm(u, z[:, :weight.shape[1]], weight.t()), z, k, *saved)

    @staticmethod
    def backward(dk: Tensor, z: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dz: Tensor, weight: Tensor) -> None:
        _lstm_backward(dk, z, *saved, d_pre, dz)
        dz[:, :weight.shape[1]].addmm_(d_pre, weight)


class GRUKernel:
    """F(h, u) = h' - h = (1 - z)(n - h), r, z = sigmoid(u + h W^T), n = tanh(u_n + r (h W_n^T + b_n));
    saved: h W_n^T + b_n, r, z, n."""

    input_grad_is_gate_grad = False  # u_n's gradient lacks the factor r that (h W_n^T + b_n)'s has

    @staticmethod
    def widths(m: int) -> tuple[int, tuple[int, ...]]:
        return 3 * m, (4 * m,)

    @staticmethod
    def forward(h: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, weight: Tensor, bias_n: Tensor) -> None:
        _gru_forward(h.mm(weight.t()), u, h, bias_n, *saved, k)

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dh: Tensor, weight: Tensor, bias_n: Tensor) -> None:
        _gru_backward(dk, h, *saved, d_pre, d_u, dh)
        dh.addmm_(d_pre, weight)


class TanhKernel:
    """F(h, u) = tanh(u + h W^T); its backward reads F itself (k), nothing else is saved."""

    input_grad_is_gate_grad = True

    @staticmethod
    def widths(n: int) -> tuple[int, tuple[int, ...]]:
        return n, ()

    @staticmethod
    def forward(h: Tensor, u: Tensor, saved: tuple[Tensor, ...], k: Tensor, weight: Tensor) -> None:
        torch.addmm(u, h, weight.t(), out=k).tanh_()

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple[Tensor, ...], k: Tensor, d_pre: Tensor, d_u: Tensor,
                 dh: Tensor, weight: Tensor) -> None:
        torch.mul(dk, 1 - k * k, out=d_pre)
        torch.mm(d_pre, weight, out=dh)


KERNELS = {"lstm": LSTMKernel, "gru": GRUKernel, "rnn": TanhKernel}


class Needed(NamedTuple):
    """Which gradients the scan's backward forms (in `_RKScan.forward`'s argument order): of the inputs x, of
    the input weight W_in and bias, of the coefficients hA and hb (learned alpha or h), of the gate, of the
    recurrent weight W_hh and of the GRU's b_hn."""

    x: bool
    w_in: bool
    bias: bool
    hA: bool
    hb: bool
    gate: bool
    w_hh: bool
    b_hn: bool


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


class _RKScan(Function):
    """Stage inputs live in one buffer Z (T + 1, stages, B, state): Z[t, 0] is y_t, so the states need no
    copies and the weight gradient reads every evaluation's h from Z; the stage increments in K (T, stages, B,
    state), what the backward reads in `saved`. They come from the layer's `Workspace` and go back after
    backward (so the graph cannot be backpropagated twice), or at once without a gradient. On CPU the time
    loop runs in `fused_rnn.cpp` (`native`), elsewhere as torch operations (`_steps`, `_adjoint`): the same
    recursion, both laid out by the same `StagePlan`."""

    @staticmethod
    def forward(ctx, x: Tensor, w_in: Tensor, bias: Tensor, hA: Tensor, hb: Tensor, gate: Tensor | None,
                w_hh: Tensor, b_hn: Tensor | None, kernel: str, plan: StagePlan, state_size: int, native,
                workspace: Workspace, recording: bool) -> Tensor:
        Kn, params = KERNELS[kernel], (w_hh,) if b_hn is None else (w_hh, b_hn)
        T, B = x.shape[:2]
        n, s, A, b = w_hh.shape[1], plan.stages, hA.tolist(), hb.tolist()
        if plan.single is not None and b[plan.single] != 1:
            raise ValueError(f"fused_rnn: the plan's increment is stage {plan.single} alone, but its weight is "
                             f"{b[plan.single]}")
        x2d = x.reshape(T * B, x.shape[2]).contiguous()
        gate = gate.contiguous() if gate is not None else None
        Z, K = workspace.take((T + 1, s, B, state_size), x), workspace.take((T, s, B, state_size), x)
        saved = tuple(workspace.take((T, s, B, w), x) for w in Kn.widths(n)[1])
        inc = workspace.take((T, B, state_size), x) if gate is not None and plan.single is None else None  # d gate
        if native is not None:
            native.scan_forward(kernel, A, b, plan, x2d, w_in, bias, list(params), gate, Z, K, list(saved), inc)
        else:
            _steps(Kn, plan, A, b, x2d, w_in, bias, gate, Z, K, saved, inc, params, workspace)
        hidden = Z[1:, 0, :, :n].clone(memory_format=torch.contiguous_format)
        buffers = (Z, K, *saved, *((inc,) if inc is not None else ()))
        if not (recording and any(ctx.needs_input_grad)):  # no backward reads them: the next sequence reuses them
            workspace.give(*buffers)
            return hidden
        ctx.kernel, ctx.plan, ctx.A, ctx.b, ctx.native, ctx.workspace = kernel, plan, A, b, native, workspace
        ctx.coefficient_dtype, ctx.buffers, ctx.to_give = hA.dtype, (Z, K, saved, inc), buffers
        ctx.save_for_backward(x2d, w_in, gate if gate is not None else x.new_empty(0), *params)
        ctx.has_gate = gate is not None
        return hidden

    @staticmethod
    def backward(ctx, d_hidden: Tensor):
        if ctx.buffers is None:
            raise RuntimeError("fused_rnn: the sequence was already backpropagated (its buffers are reused)")
        x2d, w_in, gate, *params = ctx.saved_tensors
        gate = gate if ctx.has_gate else None
        needed = Needed._make(ctx.needs_input_grad[:len(Needed._fields)])
        if ctx.native is not None:
            Z, K, saved, inc = ctx.buffers
            grads = ctx.native.scan_backward(ctx.kernel, ctx.A, ctx.b, ctx.plan, d_hidden.contiguous(), x2d, w_in,
                                             list(params), gate, Z, K, list(saved), inc, needed)
        else:
            grads = _adjoint(ctx, d_hidden, x2d, w_in, gate, params, needed)
        d_x, d_w_in, d_bias, gA, gb, d_gate, d_w_hh, d_b_hn = grads
        ctx.buffers = None
        ctx.workspace.give(*ctx.to_give)
        d_x = d_x.view(*d_hidden.shape[:2], -1) if d_x is not None else None
        gA, gb = (g.to(ctx.coefficient_dtype) if g is not None else None for g in (gA, gb))
        return d_x, d_w_in, d_bias, gA, gb, d_gate, d_w_hh, d_b_hn, None, None, None, None, None, None


def _steps(Kn, plan: StagePlan, A: list, b: list, x2d: Tensor, w_in: Tensor, bias: Tensor, gate: Tensor | None,
           Z: Tensor, K: Tensor, saved: tuple[Tensor, ...], inc: Tensor | None, params: Sequence[Tensor],
           workspace: Workspace) -> None:
    """The forward recursion as torch operations: u_t = x_t W_in^T + b for all t at once, then per step the
    stages k_i = F(z_i, u_t), z_i = y + sum_j hA_ij k_j, and y <- y + g_t * sum_i hb_i k_i."""
    T, s = K.shape[:2]
    U = workspace.take((T * K.shape[2], w_in.shape[0]), x2d)
    torch.addmm(bias, x2d, w_in.t(), out=U)
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
            Kn.forward(z, ut, tuple(v[i] for v in svt), kt[i], *params)
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


def _adjoint(ctx, d_hidden: Tensor, x2d: Tensor, w_in: Tensor, gate: Tensor | None, params: Sequence[Tensor],
             needed: Needed) -> list[Tensor | None]:
    """The backward recursion as torch operations, stage by stage in reverse: dk_i = hb_i dy + sum_{l>i} hA_li
    dz_l, dz_i = F'(z_i)^T dk_i, dy <- dy + sum_i dz_i; the weight gradients as one matrix product over every
    evaluation at the end. Returns the gradients `needed` names, in its order (None where not needed)."""
    Kn, plan, A, b, workspace = KERNELS[ctx.kernel], ctx.plan, ctx.A, ctx.b, ctx.workspace
    Z, K, saved, inc = ctx.buffers
    T, s, B, S = K.shape
    n = params[0].shape[1]
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
            Kn.backward(dk, zt[i], tuple(v[i] for v in svt), kt[i], dpt[i], dut[i], dz[i], *params)
        for i in range(s):
            dy += dz[i]
    gA = gb = None
    if needed.hA:
        gA = torch.zeros(s, s, dtype=torch.float64)
        for m in range(s):
            for i in plan.deps[m]:
                gA[m, i] = float((DZ[:, m] * K[:, i]).sum(dtype=torch.float64))
    if needed.hb:
        gb = torch.tensor([float((d_inc_all * K[:, i]).sum(dtype=torch.float64)) if plan.outs[i] else 0.0
                           for i in range(s)], dtype=torch.float64)
    d_W = d_pre.reshape(-1, G).t().mm(Z[:T].reshape(-1, S)[:, :n]) if needed.w_hh else None
    d_bias_n = d_pre.reshape(-1, G)[:, 2 * n:].sum(0) if needed.b_hn else None  # the GRU's b_hn, inside r * (.)
    d_u_all = d_u[:, 0]  # u's gradient, summed over the stages: (T, B, G)
    if s > 1:
        d_u_all = torch.add(d_u[:, 0], d_u[:, 1], out=take((T, B, G), d_hidden))
        for i in range(2, s):
            d_u_all += d_u[:, i]
    d_u_all = d_u_all.reshape(T * B, G)
    d_x = d_u_all.mm(w_in) if needed.x else None
    d_w_in = x2d.t().mm(d_u_all).t() if needed.w_in else None  # this order: MKL's faster one
    d_bias = d_u_all.sum(0) if needed.bias else None
    workspace.give(d_pre, DZ, DK, *((d_u,) if d_u is not d_pre else ()), *((d_inc_all,) if needed.hb else ()),
                   *((d_u_all.view(T, B, G),) if s > 1 else ()))
    return [d_x, d_w_in, d_bias, gA, gb, d_gate, d_W, d_bias_n]


def rk_scan(kernel: str, x: Tensor, inputs: tuple[Tensor, Tensor], hA: Tensor, hb: Tensor, plan: StagePlan,
            state_size: int, params: Sequence[Tensor], workspace: Workspace, gate: Tensor | None = None,
            native: bool | None = None) -> Tensor:
    """Hidden states (T, B, H) of a cell stepped by the tableau (hA, hb = h * A, h * b) over inputs x (T, B, F),
    its stages laid out by `plan` (the `RKBlock`'s own, so both compute the same step).

    `inputs` = (W_in, b): the gates' input half u_t = x_t W_in^T + b, one matrix product for all t (x_t is
    the same at every stage), its gradients formed once at the end. Time-major, as the scan reads them:
    every step's inputs and states are contiguous.

    `params`: the recurrent weight W_hh (G, H) first, then the kernel's other parameters (GRU: b_hn).
    `workspace`: the calling layer's buffers, reused from one sequence to the next.
    `gate` (T, state): optional per-unit step size at each time (Phased LSTM's time gate).
    `native`: run the time loop in `fused_rnn.cpp` (None: wherever it applies and is built; False: as torch
    operations).
    """
    applies = x.device.type == "cpu" and x.dtype in NATIVE_DTYPES and all(p.dtype == x.dtype for p in params)
    compiled = native_kernels() if native is not False and applies else None
    if native and compiled is None:
        raise RuntimeError("odenets.core.fused_rnn: native kernels asked for, but they do not apply or did not build")
    w_hh, b_hn = (*params, None)[:2]
    recording = torch.is_grad_enabled()  # under no_grad, needs_input_grad still marks the weights
    return _RKScan.apply(x, *inputs, hA, hb, gate, w_hh, b_hn, kernel, plan, state_size, compiled, workspace,
                         recording)
