"""Recurrent sequence models (HeunNet, Maleki et al. 2021): RNN cells stepped by an ODE scheme,
and the LSTM, GRU and Phased-LSTM baselines. Each has a linear head on the last hidden state.

`ode_rnn`: at every time step the state s of a layer takes one step of `scheme` (an `RKBlock`)
with one transition F shared by all stages (Sec. 4: "each block uses the same weight") and the
input x_t held fixed over the stages. With the default step h = 1:

    Euler      s_t = s_{t-1} + F(s_{t-1}, x_t)                                       (eq. 4)
    Heun       s~  = s_{t-1} + F(s_{t-1}, x_t)                                       (eq. 5a)
               s_t = s_{t-1} + 1/2 (F(s_{t-1}, x_t) + F(s~, x_t))                    (eq. 5b)
    heun_ext   s~ as in eq. 6 (= 5a), s_t = s_{t-1} + (1-a) F(s_{t-1}, x_t) + a F(s~, x_t)   (eq. 7)

and any other tableau of the registry (rk4, ...) likewise. F by `cell`:

    lstm   s = [h; c]   F(s, x) = LSTMCell(x, (h, c)) - s   h and c concatenated; the Sec. 6.3 model (default)
    gru    s = h        F(h, x) = GRUCell(x, h) - h
    rnn    s = h        F(h, x) = tanh(W h + U x + b)       Sec. 3's transition; Euler = residual RNN

The LSTM's state is (h, c): its next value depends on both, so the scheme integrates both. A
stage state s + sum_j a_ij k_j then carries the c that belongs to its h, which integrating h
alone (and updating c outside the scheme) would not give. Gated cells already carry their state
(c' = f c + i g, h' = z h + (1 - z) n), so F is their increment: with Euler and h = 1,
s + F(s) is exactly torch's LSTM/GRU step, and HeunNet differs from that baseline only by the
integration rule (ResNet : Euler :: HeunNet : Heun). Taking the cell's output itself as F would
add a second carry and let c grow like (1 + f)^T. Written with C(s) = cell(x_t, s), Heun is
s_t = (s_{t-1} + C(C(s_{t-1}))) / 2 and heun_ext s_t = a s_{t-1} + (1 - 2a) C(s_{t-1}) + a C(C(s_{t-1})).
The paper names F only for the sine task; the LSTM F is our default everywhere because the
residual tanh RNN's state can grow by 1 per step, which made training on 187-step ECG beats
unstable (first-epoch loss 17.8, against 1.4 with the LSTM F, on the five local records).

Inputs are (B, T, F) sequences, (B, T) univariate ones (ECG beats, sine windows), or image
batches (B, C, H, W) read as H rows of C*W features (`read="rows"`, HeunNet's MNIST setup) or
as H*W pixels of C features (`read="pixels"`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from odenets.blocks import RKBlock
from odenets.errors import ConfigError
from odenets.models import register_model
from odenets.schemes import Scheme

READS = ("rows", "pixels")


# --------------------------------------------------------------------------- reading inputs
def as_sequence(x: Tensor, read: str = "rows") -> Tensor:
    """(B, T, F) from (B, T, F), (B, T) or an image batch (B, C, H, W) read by rows or pixels."""
    if x.dim() == 2:
        return x.unsqueeze(-1)
    if x.dim() == 3:
        return x
    if x.dim() == 4:
        b, c, h, w = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, h, c * w) if read == "rows" else x.flatten(2).transpose(1, 2)
    raise ValueError(f"expected (B, T), (B, T, F) or (B, C, H, W) inputs, got shape {tuple(x.shape)}")


def features_per_step(in_channels: int, image_size: int | None, read: str) -> int:
    """Features of one time step: C*W for image rows, C for pixels or for a C-channel signal."""
    if read not in READS:
        raise ConfigError(f"model.read={read!r}; allowed: {', '.join(READS)}")
    return in_channels * image_size if image_size and read == "rows" else in_channels


# --------------------------------------------------------------------------- ODE-stepped cells
class TanhTransition(nn.Module):
    """F(h, u) = tanh(W h + u), with u = U x_t + b computed for all t at once by `inputs`."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_map = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)

    def inputs(self, x: Tensor) -> Tensor:
        return self.input_map(x)

    def forward(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.tanh(self.recurrent(h) + u)


class CellIncrement(nn.Module):
    """F(s, x) = cell(x, s) - s for a torch GRU cell (s = h) or LSTM cell (s = [h; c])."""

    def __init__(self, cell: nn.GRUCell | nn.LSTMCell) -> None:
        super().__init__()
        self.cell = cell

    def inputs(self, x: Tensor) -> Tensor:
        return x

    def forward(self, s: Tensor, x: Tensor) -> Tensor:
        if isinstance(self.cell, nn.LSTMCell):
            h, c = s.chunk(2, dim=-1)
            return torch.cat(self.cell(x, (h, c)), dim=-1) - s
        return self.cell(x, s) - s


TRANSITIONS = {
    "rnn": TanhTransition,
    "gru": lambda input_size, hidden_size: CellIncrement(nn.GRUCell(input_size, hidden_size)),
    "lstm": lambda input_size, hidden_size: CellIncrement(nn.LSTMCell(input_size, hidden_size)),
}


class ODERNNLayer(nn.Module):
    """One recurrent layer: s_t = one `scheme` step from s_{t-1} with shared F (s_0 = 0)."""

    def __init__(self, scheme: Scheme | Mapping | str, cell: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if cell not in TRANSITIONS:
            raise ConfigError(f"model.cell={cell!r}; allowed: {', '.join(TRANSITIONS)}")
        self.step = RKBlock(scheme, lambda: TRANSITIONS[cell](input_size, hidden_size), stage_weights="shared")
        self.hidden_size = hidden_size
        self.state_size = 2 * hidden_size if cell == "lstm" else hidden_size

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, F) -> hidden states h_1..h_T, (B, T, H)."""
        inputs = self.step.F[0].inputs(x)
        s = x.new_zeros(x.shape[0], self.state_size)
        hidden = []
        for t in range(x.shape[1]):
            s = self.step(s, inputs[:, t])
            hidden.append(s[:, :self.hidden_size])
        return torch.stack(hidden, dim=1)


# --------------------------------------------------------------------------- Phased LSTM
class PhasedLSTMLayer(nn.Module):
    """Phased LSTM (Neil et al. 2016): an LSTM whose updates pass through a periodic time gate k_t.

        phi_t = ((t - s) mod tau) / tau                                              (eq. 6)
        k_t   = 2 phi_t / r_on        if phi_t < r_on / 2
                2 - 2 phi_t / r_on    if r_on / 2 <= phi_t < r_on
                alpha phi_t           otherwise                                      (eq. 7)
        c_t = k_t c~_t + (1 - k_t) c_{t-1},   h_t = k_t h~_t + (1 - k_t) h_{t-1}       (eq. 9, 11)

    with (h~_t, c~_t) the LSTM step from (h_{t-1}, c_{t-1}) (eq. 8, 10; torch's LSTMCell, without
    the peephole weights of the paper's eq. 1-5). tau, s and r_on are learned per unit; tau is
    parametrised by its logarithm (kept positive) and initialised log-uniformly in `period_range`,
    s uniformly in [0, tau), r_on at `r_on`. The leak alpha acts in training only (0 in eval mode,
    as in the paper). Time t is the step index 0, 1, ..., T-1 (regularly sampled sequences).
    """

    def __init__(self, input_size: int, hidden_size: int, period_range: tuple[float, float] = (1.0, 100.0),
                 r_on: float = 0.05, leak: float = 1e-3) -> None:
        super().__init__()
        low, high = (float(p) for p in period_range)
        if not 0 < low <= high:
            raise ConfigError(f"model.period_range={list(period_range)}: need 0 < low <= high (time steps)")
        if not 0 < r_on <= 1:
            raise ConfigError(f"model.r_on={r_on}: the open ratio must be in (0, 1]")
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.log_period = nn.Parameter(torch.empty(hidden_size).uniform_(math.log(low), math.log(high)))
        self.shift = nn.Parameter(torch.rand(hidden_size) * self.log_period.detach().exp())
        self.r_on = nn.Parameter(torch.full((hidden_size,), float(r_on)))
        self.leak = leak

    def time_gate(self, t: Tensor) -> Tensor:
        """k_t for times t of shape (T,): (T, H)."""
        tau = self.log_period.exp()
        r_on = self.r_on.clamp(1e-3, 1.0)  # keeps the divisions finite if learning pushes r_on to 0
        phi = torch.remainder(t[:, None] - self.shift, tau) / tau
        alpha = self.leak if self.training else 0.0
        return torch.where(phi < r_on / 2, 2 * phi / r_on, torch.where(phi < r_on, 2 - 2 * phi / r_on, alpha * phi))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, F) -> (B, T, H)."""
        k = self.time_gate(torch.arange(x.shape[1], dtype=x.dtype, device=x.device))
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)
        hidden = []
        for t in range(x.shape[1]):
            h_new, c_new = self.cell(x[:, t], (h, c))
            c = k[t] * c_new + (1 - k[t]) * c
            h = k[t] * h_new + (1 - k[t]) * h
            hidden.append(h)
        return torch.stack(hidden, dim=1)


# --------------------------------------------------------------------------- the networks
class TorchRecurrent(nn.Module):
    """nn.LSTM / nn.GRU (batch first) returning the top layer's hidden states (B, T, H)."""

    def __init__(self, rnn: nn.LSTM | nn.GRU) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class RecurrentNet(nn.Module):
    """Input read as a sequence -> recurrent layers -> linear head on the last hidden state."""

    def __init__(self, layers: nn.Module, hidden_size: int, num_outputs: int, read: str) -> None:
        super().__init__()
        self.read = read
        self.layers = layers
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(as_sequence(x, self.read))[:, -1])


def _sizes(hidden_size: int, num_layers: int, in_channels: int, image_size: int | None, read: str) -> list[int]:
    """Input size of each layer."""
    if num_layers < 1:
        raise ConfigError(f"model.num_layers={num_layers} must be >= 1")
    return [features_per_step(in_channels, image_size, read)] + [hidden_size] * (num_layers - 1)


@register_model
def ode_rnn(scheme: Scheme | Mapping | str = "heun", cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
            num_outputs: int = 10, in_channels: int = 1, image_size: int | None = None,
            read: str = "rows") -> RecurrentNet:
    """HeunNet (`scheme=heun`), ExtendedHeunNet (`heun_ext`), residual RNN (`euler`), or any tableau."""
    layers = nn.Sequential(*(ODERNNLayer(scheme, cell, n_in, hidden_size)
                             for n_in in _sizes(hidden_size, num_layers, in_channels, image_size, read)))
    return RecurrentNet(layers, hidden_size, num_outputs, read)


@register_model
def lstm(hidden_size: int = 128, num_layers: int = 1, num_outputs: int = 10, in_channels: int = 1,
         image_size: int | None = None, read: str = "rows") -> RecurrentNet:
    n_in = _sizes(hidden_size, num_layers, in_channels, image_size, read)[0]
    return RecurrentNet(TorchRecurrent(nn.LSTM(n_in, hidden_size, num_layers, batch_first=True)),
                        hidden_size, num_outputs, read)


@register_model
def gru(hidden_size: int = 128, num_layers: int = 1, num_outputs: int = 10, in_channels: int = 1,
        image_size: int | None = None, read: str = "rows") -> RecurrentNet:
    n_in = _sizes(hidden_size, num_layers, in_channels, image_size, read)[0]
    return RecurrentNet(TorchRecurrent(nn.GRU(n_in, hidden_size, num_layers, batch_first=True)),
                        hidden_size, num_outputs, read)


@register_model
def phased_lstm(hidden_size: int = 128, num_layers: int = 1, num_outputs: int = 10, in_channels: int = 1,
                image_size: int | None = None, read: str = "rows", period_range: tuple[float, float] = (1.0, 100.0),
                r_on: float = 0.05, leak: float = 1e-3) -> RecurrentNet:
    layers = nn.Sequential(*(PhasedLSTMLayer(n_in, hidden_size, period_range, r_on, leak)
                             for n_in in _sizes(hidden_size, num_layers, in_channels, image_size, read)))
    return RecurrentNet(layers, hidden_size, num_outputs, read)
