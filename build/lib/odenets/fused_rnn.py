"""A recurrent cell stepped by a Runge-Kutta tableau over a whole sequence, as one autograd node (issue 12).

The ODE-stepped RNNs of HeunNet (eq. 4-7) evaluate their transition F once per stage at every time
step. Written op by op, every evaluation records a dozen autograd nodes and a small matrix product
for each weight gradient; `rk_scan` instead runs the whole sequence in one `torch.autograd.Function`:

* forward: for t = 1..T, the stages k_i = F(z_i, u_t), z_i = y + sum_j hA_ij k_j, and
  y <- y + g_t * sum_i hb_i k_i, with the cell arithmetic written out (no graph is recorded). u_t is
  the input half of the gates, computed by the caller for all t at once (one matrix product,
  x_t being the same at every stage); g_t is an optional per-unit gate on the step (Phased LSTM's
  time gate: its update is y + k_t (cell(y) - y), an Euler step of per-unit size k_t);
* backward: the adjoint of the same recursion, stage by stage in reverse (dk_i = hb_i dy +
  sum_{l>i} hA_li dz_l, dz_i = F'(z_i)^T dk_i, dy <- dy + sum_i dz_i), with the recurrent weight's
  gradient formed once at the end, as one matrix product over every evaluation (what fused RNN
  kernels such as oneDNN's and cuDNN's do), and the gradients of learned coefficients (alpha, h)
  and of the gate where they are needed.

F is the cell's increment, F(s, u) = cell(s, u) - s, so an Euler step is exactly the cell's own update
(`odenets.models.recurrent`). Kernels (`KERNELS`) hold one cell's forward and backward: `lstm`
(s = [h; c], torch's gate order i, f, g, o), `gru` (torch's r, z, n with b_hn inside r * (.)) and
`rnn` (tanh(W h + u)). The plain op-by-op loop (`model.fused=false`) computes the same numbers and
is what the tests compare this with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd import Function


# --------------------------------------------------------------------------- the cells' arithmetic
def _lstm_forward(gates: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """k = [h' - h; c' - c] from the gate pre-activations; saved: act = [i, f, g, o], tanh(c')."""
    n = z.shape[1] // 2
    i, f = torch.sigmoid(gates[:, :n]), torch.sigmoid(gates[:, n:2 * n])
    g, o = torch.tanh(gates[:, 2 * n:3 * n]), torch.sigmoid(gates[:, 3 * n:])
    c = z[:, n:]
    c_new = f * c + i * g
    tanh_c = torch.tanh(c_new)
    return torch.cat([o * tanh_c - z[:, :n], c_new - c], dim=1), torch.cat([i, f, g, o], dim=1), tanh_c


def _lstm_backward(dk: Tensor, z: Tensor, act: Tensor, tanh_c: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of the gate pre-activations, and of z except through the gates (-dh, dc' f - dc)."""
    n = z.shape[1] // 2
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    dh, dc = dk[:, :n], dk[:, n:]
    dc_new = dc + dh * o * (1 - tanh_c * tanh_c)
    d_pre = torch.cat([dc_new * g * i * (1 - i), dc_new * z[:, n:] * f * (1 - f), dc_new * i * (1 - g * g),
                       dh * tanh_c * o * (1 - o)], dim=1)
    return d_pre, torch.cat([-dh, dc_new * f - dc], dim=1)


def _gru_forward(hh: Tensor, u: Tensor, h: Tensor, bias_n: Tensor) -> tuple[Tensor, ...]:
    """k = (1 - z)(n - h) from hh = h W^T; saved: h W_n^T + b_n, r, z, n."""
    m = h.shape[1]
    hn = hh[:, 2 * m:] + bias_n
    r = torch.sigmoid(u[:, :m] + hh[:, :m])
    z = torch.sigmoid(u[:, m:2 * m] + hh[:, m:2 * m])
    cand = torch.tanh(u[:, 2 * m:] + r * hn)
    return (1 - z) * (cand - h), hn, r, z, cand


def _gru_backward(dk: Tensor, h: Tensor, hn: Tensor, r: Tensor, z: Tensor, cand: Tensor) -> tuple[Tensor, ...]:
    """Gradients of hh, of u, and of h except through hh."""
    d_cand = dk * (1 - z) * (1 - cand * cand)
    d_r = d_cand * hn * r * (1 - r)
    d_z = dk * (h - cand) * z * (1 - z)
    return torch.cat([d_r, d_z, d_cand * r], dim=1), torch.cat([d_r, d_z, d_cand], dim=1), dk * (z - 1)


def _tanh_forward(pre: Tensor) -> Tensor:
    return torch.tanh(pre)


def _tanh_backward(dk: Tensor, y: Tensor) -> Tensor:
    return dk * (1 - y * y)


# --------------------------------------------------------------------------- kernels: products + elementwise
class LSTMKernel:
    """F([h; c], u) = [h' - h; c' - c], gates u + h W^T (torch's order i, f, g, o)."""

    input_grad_is_gate_grad = True

    @staticmethod
    def gates(hidden: int) -> int:
        return 4 * hidden

    @staticmethod
    def forward(z: Tensor, u: Tensor, weight: Tensor) -> tuple[Tensor, tuple]:
        gates = torch.addmm(u, z[:, :weight.shape[1]], weight.t())
        k, act, tanh_c = _lstm_forward(gates, z)
        return k, (act, tanh_c)

    @staticmethod
    def backward(dk: Tensor, z: Tensor, saved: tuple, weight: Tensor, d_pre: Tensor,
                 d_u: Tensor) -> tuple[Tensor, tuple]:
        pre, dz = _lstm_backward(dk, z, *saved)
        d_pre.copy_(pre)
        dz[:, :weight.shape[1]].addmm_(pre, weight)
        return dz, ()


class GRUKernel:
    """F(h, u) = h' - h = (1 - z)(n - h), r, z = sigmoid(u + h W^T), n = tanh(u_n + r (h W_n^T + b_n))."""

    input_grad_is_gate_grad = False  # u_n's gradient lacks the factor r that (h W_n^T + b_n)'s has

    @staticmethod
    def gates(hidden: int) -> int:
        return 3 * hidden

    @staticmethod
    def forward(h: Tensor, u: Tensor, weight: Tensor, bias_n: Tensor) -> tuple[Tensor, tuple]:
        k, *saved = _gru_forward(h.mm(weight.t()), u, h, bias_n)
        return k, tuple(saved)

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple, weight: Tensor, bias_n: Tensor, d_pre: Tensor,
                 d_u: Tensor) -> tuple[Tensor, tuple]:
        pre, du, dh = _gru_backward(dk, h, *saved)
        d_pre.copy_(pre)
        d_u.copy_(du)
        return dh.addmm_(pre, weight), (pre[:, 2 * h.shape[1]:].sum(0),)


class TanhKernel:
    """F(h, u) = tanh(u + h W^T)."""

    input_grad_is_gate_grad = True

    @staticmethod
    def gates(hidden: int) -> int:
        return hidden

    @staticmethod
    def forward(h: Tensor, u: Tensor, weight: Tensor) -> tuple[Tensor, tuple]:
        y = _tanh_forward(torch.addmm(u, h, weight.t()))
        return y, (y,)

    @staticmethod
    def backward(dk: Tensor, h: Tensor, saved: tuple, weight: Tensor, d_pre: Tensor,
                 d_u: Tensor) -> tuple[Tensor, tuple]:
        pre = _tanh_backward(dk, saved[0])
        d_pre.copy_(pre)
        return pre.mm(weight), ()


KERNELS = {"lstm": LSTMKernel, "gru": GRUKernel, "rnn": TanhKernel}


class Structure:
    """Which coefficients of (A, b) are nonzero: stage i reads stages `deps[i]`, is read by `users[i]`,
    and enters the step if `outs[i]` (as `RKBlock` computes them, learnable entries counted)."""

    def __init__(self, deps: Sequence[Sequence[int]], outs: Sequence[bool]) -> None:
        self.deps, self.outs = tuple(map(tuple, deps)), tuple(outs)
        self.stages = len(self.outs)
        self.users = tuple(tuple(i for i in range(self.stages) if j in self.deps[i]) for j in range(self.stages))


class _Workspace:
    """Large buffers kept from one training step to the next: a fresh one costs a page fault per 4 KiB on
    first touch (allocations this large bypass the heap), which made the fused path slower than op by op."""

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


_WORKSPACE = _Workspace()


class _RKScan(Function):
    """Stage inputs live in one buffer Z (T + 1, stages, B, state): Z[t, 0] is y_t, so the states need no
    copies and the weight gradient reads every evaluation's h from Z in one product. Z and the gradient
    buffers go back to `_WORKSPACE` after backward (so the graph cannot be backpropagated twice)."""

    @staticmethod
    def forward(ctx, u: Tensor, hA: Tensor, hb: Tensor, gate: Tensor | None, kernel: str, structure: Structure,
                state_size: int, *params: Tensor) -> Tensor:
        K = KERNELS[kernel]
        B, T = u.shape[:2]
        n = params[0].shape[1]  # hidden units: W_hh is (gates, hidden)
        A, b = hA.tolist(), hb.tolist()
        s = structure.stages
        single = sum(structure.outs) == 1 and b[structure.outs.index(True)] == 1  # Euler: the increment is k
        keep_k = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        keep_increment = gate is not None and ctx.needs_input_grad[3]
        Z = _WORKSPACE.take((T + 1, s, B, state_size), u) if torch.is_grad_enabled() or u.requires_grad \
            else u.new_empty(T + 1, s, B, state_size)
        Z[0, 0].zero_()
        saved, ks_kept, increments = [], [], []
        for t in range(T):
            y, ut = Z[t, 0], u[:, t]
            ks: list[Tensor | None] = [None] * s
            for i in range(s):
                z = Z[t, i]
                if i:
                    deps = structure.deps[i]
                    if not deps:
                        z.copy_(y)
                    for m, j in enumerate(deps):
                        torch.add(y, ks[j], alpha=A[i][j], out=z) if m == 0 else z.add_(ks[j], alpha=A[i][j])
                ks[i], state = K.forward(z, ut, *params)
                saved.append(state)
            increment = None
            for i in range(s):
                if structure.outs[i]:
                    if increment is None:
                        increment = ks[i] if single else ks[i] * b[i]
                    else:
                        increment.add_(ks[i], alpha=b[i])
            if keep_k:
                ks_kept.append(ks)
            if keep_increment:
                increments.append(increment)
            if gate is not None:
                torch.addcmul(y, gate[t], increment, out=Z[t + 1, 0])
            else:
                torch.add(y, increment, out=Z[t + 1, 0])
        ctx.kernel, ctx.structure, ctx.A, ctx.b, ctx.coefficient_dtype = kernel, structure, A, b, hA.dtype
        ctx.saved, ctx.ks, ctx.increments = saved, ks_kept, increments
        ctx.save_for_backward(Z, gate if gate is not None else u.new_empty(0), *params)
        ctx.has_gate = gate is not None
        return Z[1:, 0, :, :n].transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, d_hidden: Tensor):
        if ctx.saved is None:
            raise RuntimeError("odenets.fused_rnn: the sequence was already backpropagated (its buffers are reused)")
        K, st, A, b = KERNELS[ctx.kernel], ctx.structure, ctx.A, ctx.b
        Z, gate, *params = ctx.saved_tensors
        gate = gate if ctx.has_gate else None
        T, s, B, S = Z.shape[0] - 1, Z.shape[1], Z.shape[2], Z.shape[3]
        n = params[0].shape[1]
        G = K.gates(n)
        d_pre = _WORKSPACE.take((T, s, B, G), d_hidden)  # every evaluation's gate pre-activation gradient
        d_u = d_pre if K.input_grad_is_gate_grad else _WORKSPACE.take((T, s, B, G), d_hidden)
        d_extra = [torch.zeros_like(p) for p in params[1:]]
        gA = torch.zeros(s, s, dtype=torch.float64) if ctx.needs_input_grad[1] else None
        gb = torch.zeros(s, dtype=torch.float64) if ctx.needs_input_grad[2] else None
        d_gate = torch.zeros_like(gate) if gate is not None and ctx.needs_input_grad[3] else None
        dy = d_hidden.new_zeros(B, S)
        for t in reversed(range(T)):
            dy[:, :n] += d_hidden[:, t]
            d_inc = dy * gate[t] if gate is not None else dy
            if d_gate is not None:
                d_gate[t] = (dy * ctx.increments[t]).sum(0)
            dz: list[Tensor | None] = [None] * s
            for i in reversed(range(s)):
                dk = (d_inc if b[i] == 1 and not st.users[i] else d_inc * b[i]) if st.outs[i] else None
                for m in st.users[i]:
                    dk = dz[m] * A[m][i] if dk is None else dk.add_(dz[m], alpha=A[m][i])
                if ctx.ks and gb is not None and st.outs[i]:
                    gb[i] += float((d_inc * ctx.ks[t][i]).sum())
                if ctx.ks and gA is not None:
                    for m in st.users[i]:
                        gA[m, i] += float((dz[m] * ctx.ks[t][i]).sum())
                dz[i], extra = K.backward(dk, Z[t, i], ctx.saved[t * s + i], *params, d_pre[t, i], d_u[t, i])
                for acc, g in zip(d_extra, extra, strict=True):
                    acc += g
            for i in range(s):
                dy += dz[i]
        d_weight = None
        if ctx.needs_input_grad[7]:
            d_weight = d_pre.reshape(-1, G).t().mm(Z[:T].reshape(-1, S)[:, :n])
        ctx.saved = ctx.ks = ctx.increments = None
        gA, gb = (None if g is None else g.to(ctx.coefficient_dtype) for g in (gA, gb))
        d_input = d_u[:, 0].clone() if s == 1 else d_u.sum(1)
        _WORKSPACE.give(Z, d_pre, *((d_u,) if d_u is not d_pre else ()))
        d_u = d_input
        return (d_u.transpose(0, 1), gA, gb, d_gate, None, None, None, d_weight, *d_extra)


def rk_scan(kernel: str, u: Tensor, hA: Tensor, hb: Tensor, structure: Structure, state_size: int,
            params: Sequence[Tensor], gate: Tensor | None = None) -> Tensor:
    """Hidden states (B, T, H) of a cell stepped by the tableau (hA, hb = h * A, h * b) over inputs u (B, T, G).

    `params`: the recurrent weight W_hh (G, H) first, then the kernel's other parameters (GRU: b_hn).
    `gate` (T, state): optional per-unit step size at each time (Phased LSTM's time gate).
    """
    return _RKScan.apply(u, hA, hb, gate, kernel, structure, state_size, *params)
