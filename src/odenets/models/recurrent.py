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

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from odenets.allowed import BOOL, check, integer, number, one_of
from odenets.core.blocks import RKBlock
from odenets.core.fused_rnn import CellParams, ScanSpec, Workspace, rk_scan
from odenets.core.schemes import Scheme
from odenets.core.stage_plan import StagePlan
from odenets.errors import ConfigError
from odenets.models.registry import register_model

READS = ("rows", "pixels")
# what the recurrent models' options allow (`odenets.allowed`): `RecurrentConfig`'s, then the models' own
GATE_INITS = ("torch", "forget", "chrono")  # `gate_init`
ALLOWED = {
    "hidden_size": integer(1),
    "num_layers": integer(1),
    "chunk": integer(1, text="an integer >= 1 (input steps read as one)"),
    "timescale": integer(2, text="an integer >= 2 (steps; chrono initialisation)"),
    "trim_padding": BOOL,
    "input_scale": number(lambda v: v > 0, "a number > 0"),
    "fused": BOOL,
    "r_on": number(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "leak": number(lambda v: v >= 0, "a number >= 0"),
    "gate_init": one_of(*GATE_INITS),
    "read": one_of(*READS),
}


# --------------------------------------------------------------------------- reading inputs
def as_sequence(x: Tensor, read: str = "rows", chunk: int = 1) -> Tensor:
    """(B, T, F) from (B, T, F), (B, T) or an image batch (B, C, H, W) read by rows or pixels; with
    `chunk` > 1, every `chunk` consecutive steps are read as one (the last zero-padded): (B, T/chunk, chunk*F)."""
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    elif x.dim() == 4:
        b, c, h, w = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, h, c * w) if read == "rows" else x.flatten(2).transpose(1, 2)
    elif x.dim() != 3:
        raise ValueError(f"expected (B, T), (B, T, F) or (B, C, H, W) inputs, got shape {tuple(x.shape)}")
    if chunk == 1:
        return x
    b, t, f = x.shape
    steps = -(-t // chunk)
    return nn.functional.pad(x, (0, 0, 0, steps * chunk - t)).reshape(b, steps, chunk * f)


def features_per_step(in_channels: int, image_size: int | None, read: str, chunk: int = 1) -> int:
    """Features of one time step: C*W for image rows, C for pixels or for a C-channel signal; times `chunk`."""
    check({"read": read}, ALLOWED, prefix="model.")
    return chunk * (in_channels * image_size if image_size and read == "rows" else in_channels)


def last_valid_step(x: Tensor, read: str, chunk: int) -> Tensor:
    """Per sequence, the index of the step holding its last nonzero sample (0 for an all-zero one): where a
    zero-padded signal really ends (`model.trim_padding`)."""
    nonzero = as_sequence(x, read, chunk).ne(0).any(-1)
    steps = torch.arange(1, nonzero.shape[1] + 1, device=x.device)
    return (nonzero * steps).amax(1).sub(1).clamp(min=0)


# --------------------------------------------------------------------------- gate initialisation


@torch.no_grad()
def gate_init(cell: nn.LSTMCell | nn.GRUCell | nn.LSTM | nn.GRU, mode: str, timescale: int) -> None:
    """Gate biases of a torch LSTM/GRU (cell or layer): `torch` leaves torch's uniform initialisation;
    `forget` sets the bias of the gate that keeps the memory (LSTM forget gate f, GRU update gate z) to 1,
    as Keras does (Gers et al. 2000, Jozefowicz et al. 2015); `chrono` (Tallec & Ollivier 2018) draws it
    as log U(1, T - 1), T = `timescale` steps, and sets the LSTM's input gate to its negative. The
    recurrent biases of these gates are zeroed, so the input bias alone holds the value."""
    check({"gate_init": mode}, {"gate_init": ALLOWED["gate_init"]}, prefix="model.")
    if mode == "torch":
        return
    n = cell.hidden_size
    keep = slice(n, 2 * n)  # f of (i, f, g, o); z of (r, z, n)
    lstm = isinstance(cell, (nn.LSTM, nn.LSTMCell))
    for name, bias in cell.named_parameters():
        if name.startswith("bias_hh"):
            bias[keep] = 0
            if lstm and mode == "chrono":
                bias[:n] = 0
        elif name.startswith("bias_ih"):
            if mode == "forget":
                bias[keep] = 1.0
                continue
            value = torch.empty(n, device=bias.device).uniform_(1, max(float(timescale) - 1, 1.0)).log_()
            bias[keep] = value
            if lstm:
                bias[:n] = -value


# --------------------------------------------------------------------------- ODE-stepped cells
class TanhTransition(nn.Module):
    """F(h, u) = tanh(W h + u), with u = U x_t + b computed for all t at once by `inputs`."""

    kernel = "rnn"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_map = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        self.state_size = hidden_size

    def inputs(self, x: Tensor) -> Tensor:
        return self.input_map(x)

    def fused_params(self) -> CellParams:
        """The parameters as `rk_scan` takes them."""
        return CellParams(self.input_map.weight, self.input_map.bias, self.recurrent.weight)

    def forward(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.tanh(self.recurrent(h) + u)


class CellIncrement(nn.Module):
    """F(s, x) = cell(x, s) - s for a torch GRU cell (s = h) or LSTM cell (s = [h; c])."""

    def __init__(self, cell: nn.GRUCell | nn.LSTMCell) -> None:
        super().__init__()
        self.cell = cell
        self.kernel = "lstm" if isinstance(cell, nn.LSTMCell) else "gru"
        self.state_size = (2 if self.kernel == "lstm" else 1) * cell.hidden_size

    def inputs(self, x: Tensor) -> Tensor:
        return x

    def fused_params(self) -> CellParams:
        return cell_params(self.cell)

    def forward(self, s: Tensor, x: Tensor) -> Tensor:
        if self.kernel == "lstm":
            h, c = s.chunk(2, dim=-1)
            return torch.cat(self.cell(x, (h, c)), dim=-1) - s
        return self.cell(x, s) - s


def cell_params(cell: nn.LSTMCell | nn.GRUCell) -> CellParams:
    """A torch cell's parameters as `rk_scan` takes them: the input half of its gates, u = x W_ih^T + b with
    b = b_ih + b_hh (`rk_scan` computes u for all t at once), W_hh, and the GRU's b_hn, which stays inside
    r * (.) as torch computes it (so b holds only b_ih for the n gate)."""
    bias = cell.bias_ih + cell.bias_hh
    if isinstance(cell, nn.GRUCell):
        n = cell.hidden_size
        bias = torch.cat([bias[:2 * n], cell.bias_ih[2 * n:]])
        return CellParams(cell.weight_ih, bias, cell.weight_hh, cell.bias_hh[2 * n:])
    return CellParams(cell.weight_ih, bias, cell.weight_hh)


TRANSITIONS = {
    "rnn": TanhTransition,
    "gru": lambda input_size, hidden_size: CellIncrement(nn.GRUCell(input_size, hidden_size)),
    "lstm": lambda input_size, hidden_size: CellIncrement(nn.LSTMCell(input_size, hidden_size)),
}
ALLOWED["cell"] = one_of(*TRANSITIONS)  # the transitions F above (ode_rnn)


def coefficient_tensor(values) -> Tensor:
    """h A or h b as a tensor: float64 from numbers, stacked (keeping the gradient) where one is learned."""
    learned = [v for v in _flat(values) if isinstance(v, Tensor)]
    if not learned:
        return torch.tensor(values, dtype=torch.float64)
    stack = lambda row: torch.stack([torch.as_tensor(v, dtype=learned[0].dtype).reshape(()) for v in row])
    return torch.stack([stack(r) for r in values]) if isinstance(values[0], (list, tuple)) else stack(values)


def _flat(values):
    for v in values:
        yield from (_flat(v) if isinstance(v, (list, tuple)) else (v,))


class ODERNNLayer(nn.Module):
    """One recurrent layer: s_t = one `scheme` step from s_{t-1} with shared F (s_0 = 0).

    `fused=True` (default) runs the whole sequence through `odenets.core.fused_rnn.rk_scan` (one autograd
    node, hand-written backward), with the block's own stage plan and this layer's `Workspace`;
    `fused=False` steps the `RKBlock` op by op. Both compute the same numbers (tested)."""

    def __init__(self, scheme: Scheme | Mapping | str, cell: str, input_size: int, hidden_size: int,
                 fused: bool = True) -> None:
        super().__init__()
        check({"cell": cell}, ALLOWED, prefix="model.")
        self.step = RKBlock(scheme, lambda: TRANSITIONS[cell](input_size, hidden_size), stage_weights="shared")
        self.hidden_size, self.fused, self.workspace = hidden_size, fused, Workspace()
        self.state_size = self.step.F[0].state_size

    @property
    def cell(self) -> nn.Module:
        return self.step.F[0]

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, F) -> hidden states h_1..h_T, (B, T, H). With `step.substeps` = n (test-time integration),
        each input is held for n sub-steps of h / n and the state after the n-th is the step's output."""
        F, n = self.cell, self.step.substeps
        if self.fused:
            _, hA, hb = self.step.coefficients()
            x = x.transpose(0, 1)  # time-major, as rk_scan reads it
            params = F.fused_params()
            x = x if n == 1 else x.repeat_interleave(n, dim=0)
            spec = ScanSpec(F.kernel, self.step.plan, coefficient_tensor(hA), coefficient_tensor(hb), self.state_size)
            hidden = rk_scan(spec, x, params, self.workspace)
            return (hidden if n == 1 else hidden[n - 1::n]).transpose(0, 1)
        s = x.new_zeros(x.shape[0], self.state_size)
        hidden = []
        for u in F.inputs(x).unbind(1):
            s = self.step(s, u)
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

    Eq. 9/11 is s_t = s_{t-1} + k_t (cell(s_{t-1}) - s_{t-1}) on s = [h; c]: an Euler step of the
    LSTM increment with per-unit step k_t, which is how the fused path (`fused=True`) runs it.
    """

    def __init__(self, input_size: int, hidden_size: int, period_range: tuple[float, float] = (1.0, 100.0),
                 r_on: float = 0.05, leak: float = 1e-3, fused: bool = True) -> None:
        super().__init__()
        low, high = (float(p) for p in period_range)
        if not 0 < low <= high:
            raise ConfigError(f"model.period_range={list(period_range)}: need 0 < low <= high (time steps)")
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.log_period = nn.Parameter(torch.empty(hidden_size).uniform_(math.log(low), math.log(high)))
        self.shift = nn.Parameter(torch.rand(hidden_size) * self.log_period.detach().exp())
        self.r_on = nn.Parameter(torch.full((hidden_size,), float(r_on)))
        self.leak, self.fused, self.workspace = leak, fused, Workspace()

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
        if self.fused:
            params = cell_params(self.cell)
            spec = ScanSpec("lstm", EULER, coefficient_tensor([[0.0]]), coefficient_tensor([1.0]),
                            2 * self.cell.hidden_size, gate=torch.cat([k, k], dim=1))
            return rk_scan(spec, x.transpose(0, 1), params, self.workspace).transpose(0, 1)
        h = c = x.new_zeros(x.shape[0], self.cell.hidden_size)
        hidden = []
        for t in range(x.shape[1]):
            h_new, c_new = self.cell(x[:, t], (h, c))
            c = k[t] * c_new + (1 - k[t]) * c
            h = k[t] * h_new + (1 - k[t]) * h
            hidden.append(h)
        return torch.stack(hidden, dim=1)


EULER = StagePlan(deps=((),), outs=(True,), single=0)  # Phased LSTM's step: its one stage is the increment


# --------------------------------------------------------------------------- the networks
class TorchRecurrent(nn.Module):
    """nn.LSTM / nn.GRU (batch first) returning the top layer's hidden states (B, T, H)."""

    def __init__(self, rnn: nn.LSTM | nn.GRU) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


class RecurrentNet(nn.Module):
    """Input read as a sequence (times `input_scale`) -> recurrent layers -> linear head on the last hidden
    state (with `trim_padding`, on the state at each sequence's last nonzero step: a zero-padded signal's
    real end).

    `input_scale` is a fixed gain on the inputs. Under Adam it acts like a larger initialisation *and*
    learning rate of the input weights: with one feature in [0, 1] per step (ECG beats) and torch's
    U(+-1/sqrt(H)) weights, the input moves each gate by less than 0.1 and the models stay at the
    majority class for epochs (README, "ECG: what makes recurrent models learn").
    """

    def __init__(self, layers: nn.Module, config: RecurrentConfig) -> None:
        super().__init__()
        self.config, self.layers = config, layers
        self.head = nn.Linear(config.hidden_size, config.num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        seq = as_sequence(x, c.read, c.chunk)
        hidden = self.layers(seq if c.input_scale == 1 else seq * c.input_scale)
        if c.trim_padding:
            return self.head(hidden[torch.arange(len(x), device=x.device), last_valid_step(x, c.read, c.chunk)])
        return self.head(hidden[:, -1])


@dataclass(frozen=True)
class RecurrentConfig:
    """The options every recurrent model takes (`model.hidden_size`, `model.chunk`, ...): its size, how it
    reads its input (`as_sequence`, `RecurrentNet`) and how its gate biases start (`gate_init`)."""

    hidden_size: int = 128
    num_layers: int = 1
    num_outputs: int = 10
    in_channels: int = 1
    image_size: int | None = None
    read: str = "rows"
    chunk: int = 1
    trim_padding: bool = False
    input_scale: float = 1.0
    gate_init: str = "torch"
    timescale: int = 100

    def layer_inputs(self) -> list[int]:
        """Input size of each layer."""
        first = features_per_step(self.in_channels, self.image_size, self.read, self.chunk)
        return [first] + [self.hidden_size] * (self.num_layers - 1)

    def network(self, layers: list[nn.Module], cells: list[nn.Module]) -> RecurrentNet:
        """The net around `layers`, with the gate biases of `cells` set by `gate_init`."""
        for cell in cells:
            gate_init(cell, self.gate_init, self.timescale)
        stack = layers[0] if len(layers) == 1 and isinstance(layers[0], TorchRecurrent) else nn.Sequential(*layers)
        return RecurrentNet(stack, self)


def takes_config(factory: Callable[..., RecurrentNet]) -> Callable[..., RecurrentNet]:
    """`factory(config, **own)` as a model constructor taking `RecurrentConfig`'s fields as flat keywords
    (`model.chunk=11`): its signature lists them with their defaults, as the registry reads the options."""
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
              for f in fields(RecurrentConfig)]
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(**options) -> RecurrentNet:
        config = RecurrentConfig(**{p.name: options.pop(p.name) for p in shared if p.name in options})
        return factory(config, **options)

    build.__signature__ = signature.replace(parameters=[*list(signature.parameters.values())[1:], *shared])
    return build


@register_model
@takes_config
def ode_rnn(config: RecurrentConfig, scheme: Scheme | Mapping | str = "heun", cell: str = "lstm",
            fused: bool = True) -> RecurrentNet:
    """HeunNet (`scheme=heun`), ExtendedHeunNet (`heun_ext`), residual RNN (`euler`), or any tableau."""
    if cell == "rnn" and config.gate_init != "torch":
        raise ConfigError(f"model.gate_init={config.gate_init!r} needs a gated cell (model.cell=lstm or gru), not rnn")
    layers = [ODERNNLayer(scheme, cell, n_in, config.hidden_size, fused) for n_in in config.layer_inputs()]
    return config.network(layers, [layer.cell.cell for layer in layers if cell != "rnn"])


def _torch_rnn(kind: type[nn.LSTM] | type[nn.GRU], config: RecurrentConfig) -> RecurrentNet:
    rnn = kind(config.layer_inputs()[0], config.hidden_size, config.num_layers, batch_first=True)
    return config.network([TorchRecurrent(rnn)], [rnn])


@register_model
@takes_config
def lstm(config: RecurrentConfig) -> RecurrentNet:
    """torch's LSTM (oneDNN/cuDNN kernels)."""
    return _torch_rnn(nn.LSTM, config)


@register_model
@takes_config
def gru(config: RecurrentConfig) -> RecurrentNet:
    """torch's GRU (oneDNN/cuDNN kernels)."""
    return _torch_rnn(nn.GRU, config)


@register_model
@takes_config
def phased_lstm(config: RecurrentConfig, period_range: tuple[float, float] = (1.0, 100.0), r_on: float = 0.05,
                leak: float = 1e-3, fused: bool = True) -> RecurrentNet:
    layers = [PhasedLSTMLayer(n_in, config.hidden_size, period_range, r_on, leak, fused)
              for n_in in config.layer_inputs()]
    return config.network(layers, [layer.cell for layer in layers])
