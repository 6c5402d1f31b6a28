"""The HeunNet authors' cell (Maleki et al.; github.com/mansura-habiba/heunnet, `models/hunelstm.py`
`HuneLSTM` and `models/exhunelstm.py` `ExHuneLSTM`), as its own model: `model=heunnet_authors`.

Per time step t, with u_t the input (B, N), one torch LSTM (`nn.LSTM`, bidirectional by default) and
its state (h, c) carried from the previous step:

    o_1, (h, c) = LSTM(u_t, (h, c))           x^  = o_1[..., -1]        (the last hidden unit)
    x~ = u_t + x^                                                       (eq. 5a / 6: the predictor)
    o_2, (h, c) = LSTM(x~, (h, c))            x^' = o_2[..., -1]
    y_t = u_t + (1 - alpha) x~ + alpha x^'                              (`form=authors`, their code)
    y_t = u_t + (1 - alpha) x^ + alpha x^'                              (`form=paper`, eq. 5b / 7)

`HuneLSTM` computes y_t = u_t + (x~ + x^') * 0.5, which is `ExHuneLSTM`'s u_t + (1 - alpha) x~ + alpha x^' at
alpha = 1/2 (up to the order of the additions): so one `alpha` gives both, 0.5 the Heun cell, anything
else the extended one. We add the two terms first, u_t + ((1 - alpha) x~ + alpha x^'), which at 1/2 is
HuneLSTM's to the bit (halving is exact). The output sequence y_1..y_T (B, T, N) lives in the input space.

What the code does, read line by line (file names as above; both files have the same body):

1. The state passed between time steps is the LSTM's (h, c) after the *second* call, not y_t: y_t never
   feeds back (the next step reads u_{t+1}). `lstm_out, (c_t, h_t) = self.lstm(...)` names torch's
   (h_n, c_n) the other way round, but passes them back in the same order, so the LSTM gets its own
   (h, c). The LSTM state advances twice per time step, so its two evaluations are at different states.
2. Bidirectional on a one-step sequence: the reverse direction reads the same single step from its own
   carried state, so the two directions are two independent forward LSTMs. x^ is `lstm_out[:, :, -1]`,
   the last unit of the concatenated [forward; reverse] output: the reverse direction's last unit. With
   one layer the forward direction never reaches x^ or y_t: its weights get zero gradient (tested) unless
   a readout reads the hidden state (`readout=hidden`, below).
3. x^ is one number per sample, (B, 1, 1), broadcast over the N input features: the same increment is
   added to every feature of u_t (28 pixels of an MNIST row).
4. `t_t = u_sequence[:, i, -1]` is computed and unused (and the commented `u_sequence[:, i, :-1]` hints
   that the last feature was once a time stamp). No initialisation is set: torch's defaults.
5. What reads the cell: the repository has no classifier on it. Its sine notebooks (`Time_series_Heun.ipynb`
   with HuneLSTM, `ExtededHeunNet.ipynb` with ExHuneLSTM at alpha 0.8: hidden 32, bidirectional, Adam 0.01,
   one 120-sample sine on [0, 16 pi], 110 steps, MSE between y_t and u_{t+1}) use y_t itself as the
   prediction of the next value. Its MNIST notebook (`heun_minst.ipynb`) is another model: a 2-layer LSTM of
   100 units run over the whole sequence, then again from that pass's final state on x + x^, where x^
   (the last unit at every step, (B, 1, 28)) is added to the 28 features of every row, feature j getting
   step j's unit (it only runs because 28 steps = 28 features); a linear layer reads the average of the
   two passes' hidden outputs at the last step, and x^' is never used.

Our readouts (`readout`):
- `prediction`: y_T itself, in the data's units (divided by `input_scale`); needs num_outputs equal to the
  features per step. The sine notebooks' use.
- `hidden`: a linear layer on (o_1 + o_2) / 2 at the last step, all directions (the MNIST notebook's
  readout, applied to this cell).
- `output`: a linear layer on y_T (B, N).
- `auto` (default): `prediction` when the task is one value from one feature per step (num_outputs = 1,
  the sine task), else `hidden` (classification: MNIST rows, ECG beats).
`trim_padding` reads at each sequence's last nonzero step instead of the last step.

How it differs from `model=ode_rnn` (our HeunNet, `recurrent.py`):
- What is integrated: ode_rnn steps the recurrent state s = [h; c] with one Heun step of the LSTM cell's
  increment F(s, x_t) = cell(x_t, s) - s, per time step (the RK step of `RKBlock`). Here the Heun-like
  step is taken in the input space, around u_t, with the LSTM's output unit as the increment; the
  LSTM state is a side channel that is never part of the Heun combination.
- The two stages: ode_rnn evaluates the same F (same weights, same x_t) at s and at s~; here the LSTM is
  evaluated at (u_t, state) and at (u_t + x^, state'), its state having advanced in between.
- Output: ode_rnn outputs the hidden state h_t (H units) to a linear head; here y_t has the input's size.
- Heun vs extended: ode_rnn takes any tableau (`scheme=heun`, `heun_ext alpha=...`); here `alpha` only.
- Bidirectional (two LSTMs) and the single broadcast increment x^ have no counterpart in ode_rnn; at the
  same hidden size this model has about twice ode_rnn's weights (two directions, and a head on 2H).

Where the paper's text (heunnet.md eq. 4-7) and the code disagree:
- Eq. 5b / 7 give x_{k+1} = x_k + (1 - alpha) f(x_k) + alpha f(x~): the code adds the predictor *state*
  x~ = u_t + x^ where the equations have the slope f(x_k) = x^, i.e. an extra (1 - alpha) u_t:
  y_t = (2 - alpha) u_t + (1 - alpha) x^ + alpha x^'. At alpha = 1/2 that is 1.5 u_t + (x^ + x^')/2 instead
  of u_t + (x^ + x^')/2; at alpha = 0 (the text's "ResNet") 2 u_t + x^; only at alpha = 1 do they agree.
  `form=paper` computes the equations with the code's f.
- The text's f is one function evaluated twice (eq. 5a/5b, "each block uses the same weight"); the code's
  f carries an LSTM state that the first evaluation changes before the second.
- Sec. 6.4 calls HeunNet two individual networks combined by the Heun method, against a bidirectional
  LSTM; the code's two "networks" are the first and the second call of one (bidirectional) LSTM.
- The paper gives no sizes; the code's sine notebooks use 32 hidden units (our sine experiment, 64).

Inputs as `recurrent.py`'s models: (B, T, F), (B, T) univariate, or images read by `rows` or `pixels`,
`chunk` steps read as one; `input_scale`, `gate_init` and `timescale` as there (the experiments set them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odenets.allowed import check, number, one_of
from odenets.errors import ConfigError
from odenets.models.recurrent import ALLOWED as RECURRENT_ALLOWED
from odenets.models.recurrent import as_sequence, features_per_step, last_valid_step
from odenets.models.recurrent import gate_init as init_gates
from odenets.models.registry import register_model

FORMS = ("authors", "paper")
READOUTS = ("auto", "hidden", "output", "prediction")
# the ranges of the options it shares with the recurrent models, and its own (`odenets.allowed`)
ALLOWED = {**RECURRENT_ALLOWED, "form": one_of(*FORMS), "readout": one_of(*READOUTS),
           "alpha": number(lambda v: 0 <= v <= 1, "a number in [0, 1], the range of the extended Heun weight")}


class HeunLSTM(nn.Module):
    """The authors' cell over a sequence: (B, T, N) -> outputs y (B, T, N) and the hidden outputs
    (o_1 + o_2) / 2 of each step, (B, T, directions * H) (only when `keep_hidden`)."""

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.5, form: str = "authors",
                 num_layers: int = 1, bidirectional: bool = True) -> None:
        super().__init__()
        check({"form": form, "alpha": alpha}, ALLOWED, prefix="model.")
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        self.alpha, self.form = float(alpha), form

    def step(self, u: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """One time step from u (B, 1, N) and the LSTM state: y (B, 1, N), (o_1 + o_2) / 2, the new state."""
        first, state = self.lstm(u, state)
        x_hat = first[:, :, -1:]
        predictor = u + x_hat
        second, state = self.lstm(predictor, state)
        x_hat_next = second[:, :, -1:]
        a = self.alpha
        y = u + ((1 - a) * (predictor if self.form == "authors" else x_hat) + a * x_hat_next)
        return y, (first + second) / 2, state

    def forward(self, seq: Tensor, keep_hidden: bool = True) -> tuple[Tensor, Tensor | None]:
        state, outputs, hidden = None, [], []  # None: zero initial (h, c), as their c0, h0
        for u in seq.split(1, dim=1):
            y, o, state = self.step(u, state)
            outputs.append(y)
            if keep_hidden:
                hidden.append(o)
        return torch.cat(outputs, dim=1), torch.cat(hidden, dim=1) if keep_hidden else None

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, form={self.form}"


class AuthorsHeunNet(nn.Module):
    """Input read as a sequence (times `input_scale`) -> `HeunLSTM` -> the readout at the last step
    (at the last nonzero step with `trim_padding`)."""

    def __init__(self, cell: HeunLSTM, features: int, num_outputs: int, readout: str, read: str, chunk: int,
                 trim_padding: bool, input_scale: float) -> None:
        super().__init__()
        self.cell, self.readout = cell, readout
        self.read, self.chunk, self.trim_padding, self.input_scale = read, chunk, trim_padding, float(input_scale)
        lstm = cell.lstm
        size = {"hidden": lstm.hidden_size * (2 if lstm.bidirectional else 1), "output": features}.get(readout)
        self.head = nn.Linear(size, num_outputs) if size else None

    def forward(self, x: Tensor) -> Tensor:
        seq = as_sequence(x, self.read, self.chunk)
        outputs, hidden = self.cell(seq if self.input_scale == 1 else seq * self.input_scale,
                                    keep_hidden=self.readout == "hidden")
        read = hidden if self.readout == "hidden" else outputs
        if self.trim_padding:
            last = read[torch.arange(len(x), device=x.device), last_valid_step(x, self.read, self.chunk)]
        else:
            last = read[:, -1]
        return self.head(last) if self.head is not None else last / self.input_scale


@register_model
def heunnet_authors(alpha: float = 0.5, form: str = "authors", hidden_size: int = 128, num_layers: int = 1,
                    bidirectional: bool = True, readout: str = "auto", num_outputs: int = 10, in_channels: int = 1,
                    image_size: int | None = None, read: str = "rows", chunk: int = 1, trim_padding: bool = False,
                    input_scale: float = 1.0, gate_init: str = "torch", timescale: int = 100) -> AuthorsHeunNet:
    """The authors' HuneLSTM (alpha = 0.5) / ExHuneLSTM (alpha) cell with a readout."""
    check({"readout": readout, "num_layers": num_layers}, ALLOWED, prefix="model.")
    features = features_per_step(in_channels, image_size, read, chunk)
    if readout == "auto":
        readout = "prediction" if num_outputs == 1 and features == 1 else "hidden"
    if readout == "prediction" and num_outputs != features:
        raise ConfigError(f"model.readout=prediction outputs the cell's {features} features per step, but the task "
                          f"needs {num_outputs} outputs; use readout=hidden or output (a linear head)")
    cell = HeunLSTM(features, hidden_size, alpha, form, num_layers, bidirectional)
    init_gates(cell.lstm, gate_init, timescale)
    return AuthorsHeunNet(cell, features, num_outputs, readout, read, chunk, trim_padding, input_scale)

