"""The HeunNet authors' cell (model=heunnet_authors): one step against the LSTM equations written out by
hand, the alpha forms, the readouts, and the experiments it runs in."""

from __future__ import annotations

import pytest
import torch

from odenets.config import compose
from odenets.errors import ConfigError
from odenets.models import build_model, create_model
from odenets.models.heunnet_authors import HeunLSTM
from odenets.run.validation import validate

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def lstm_step(lstm, direction: str, u, h, c):
    """torch's LSTM equations for one step of one direction ("" or "_reverse") of layer 0."""
    w = {name: getattr(lstm, f"{name}_l0{direction}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    gates = u @ w["weight_ih"].T + w["bias_ih"] + h @ w["weight_hh"].T + w["bias_hh"]
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def reference(cell: HeunLSTM, seq, alpha: float):
    """The cell's outputs by hand: per step both directions from the carried state on u, x^ = the reverse
    direction's last unit, both again on u + x^, y = u + (1 - alpha)(u + x^) + alpha x^'; the state after
    the second evaluation is carried."""
    H = cell.lstm.hidden_size
    state = {d: (seq.new_zeros(len(seq), H), seq.new_zeros(len(seq), H)) for d in ("", "_reverse")}
    ys, hidden = [], []
    for t in range(seq.shape[1]):
        u = seq[:, t]
        first = {d: lstm_step(cell.lstm, d, u, *state[d]) for d in state}
        x_hat = first["_reverse"][0][:, -1:]
        second = {d: lstm_step(cell.lstm, d, u + x_hat, *first[d]) for d in state}
        x_hat_next = second["_reverse"][0][:, -1:]
        ys.append(u + ((1 - alpha) * (u + x_hat) + alpha * x_hat_next))
        outs = [torch.cat([s[""][0], s["_reverse"][0]], dim=-1) for s in (first, second)]
        hidden.append((outs[0] + outs[1]) / 2)
        state = second
    return torch.stack(ys, 1), torch.stack(hidden, 1)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_the_cell_against_the_lstm_equations_by_hand(alpha):
    torch.manual_seed(0)
    cell = HeunLSTM(input_size=3, hidden_size=4, alpha=alpha)
    seq = torch.randn(2, 3, 3)  # three steps: the carried state matters from the second on
    y, hidden = cell(seq)
    y_ref, hidden_ref = reference(cell, seq, alpha)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hidden, hidden_ref, rtol=1e-12, atol=1e-12)


def test_heun_is_the_extended_form_at_one_half_to_the_bit():
    """HuneLSTM: u + (x~ + x^') * 0.5; ExHuneLSTM: u + (1 - alpha) x~ + alpha x^'. Equal at alpha = 1/2 (ours to
    the bit: (1 - alpha) x~ + alpha x^' is summed first, and halving is exact)."""
    torch.manual_seed(1)
    cell = HeunLSTM(2, 4, alpha=0.5)
    u = torch.randn(5, 1, 2)
    first, state = cell.lstm(u)
    predictor = u + first[:, :, -1:]
    second, _ = cell.lstm(predictor, state)
    heun = u + (predictor + second[:, :, -1:]) * 0.5
    assert torch.equal(cell.step(u, None)[0], heun)


def test_the_output_is_affine_in_alpha_and_the_forms_differ_by_one_minus_alpha_u():
    torch.manual_seed(2)
    seq = torch.randn(3, 4, 2)
    cells = {}
    for alpha in (0.0, 0.3, 1.0):
        for form in ("authors", "paper"):
            torch.manual_seed(3)  # the same LSTM weights in every cell
            cells[alpha, form] = HeunLSTM(2, 4, alpha=alpha, form=form)(seq)[0]
    for form in ("authors", "paper"):  # y(alpha) = (1 - alpha) y(0) + alpha y(1): the weights are alpha-free
        torch.testing.assert_close(cells[0.3, form], 0.7 * cells[0.0, form] + 0.3 * cells[1.0, form])
    for alpha in (0.0, 0.3):  # code - eq. 7 = (1 - alpha) u_t; they agree at alpha = 1
        torch.testing.assert_close(cells[alpha, "authors"] - cells[alpha, "paper"], (1 - alpha) * seq)
    torch.testing.assert_close(cells[1.0, "authors"], cells[1.0, "paper"])


def test_the_forward_direction_never_reaches_the_prediction():
    """Bidirectional on one-step sequences: x^ reads the reverse direction's last unit, so with one layer
    and the cell's own output as the prediction, the forward direction's weights get zero gradient."""
    torch.manual_seed(0)
    net = create_model("heunnet_authors", hidden_size=4, num_outputs=1, in_channels=1)
    assert net.readout == "prediction" and net.head is None
    net(torch.randn(3, 7)).sum().backward()
    lstm = net.cell.lstm
    assert all(getattr(lstm, f"{n}_l0").grad.abs().max() == 0 for n in ("weight_ih", "weight_hh", "bias_ih"))
    assert all(getattr(lstm, f"{n}_l0_reverse").grad.abs().max() > 0 for n in ("weight_ih", "weight_hh", "bias_ih"))


def test_readouts():
    torch.manual_seed(0)
    images = torch.rand(2, 1, 8, 8)
    hidden = create_model("heunnet_authors", hidden_size=4, num_outputs=10, image_size=8)  # auto: classification
    assert hidden.readout == "hidden" and hidden.head.in_features == 8 and hidden(images).shape == (2, 10)
    output = create_model("heunnet_authors", hidden_size=4, num_outputs=10, image_size=8, readout="output")
    assert output.head.in_features == 8 and output(images).shape == (2, 10)
    seq = torch.randn(2, 5, 1)
    scaled = create_model("heunnet_authors", hidden_size=4, num_outputs=1, input_scale=10.0)
    y, _ = scaled.cell(seq * 10.0)
    torch.testing.assert_close(scaled(seq), y[:, -1] / 10.0)  # the prediction, back in the data's units
    with pytest.raises(ConfigError, match="readout=prediction outputs the cell's 8 features per step"):
        create_model("heunnet_authors", num_outputs=10, image_size=8, readout="prediction")


def test_trim_padding_reads_the_last_real_step():
    torch.manual_seed(0)
    net = create_model("heunnet_authors", hidden_size=4, num_outputs=5, trim_padding=True, readout="output")
    x = torch.rand(2, 9) + 0.1
    x[0, 6:] = 0  # beat 0 ends at step 5
    y, _ = net.cell(x.unsqueeze(-1))
    torch.testing.assert_close(net(x), net.head(torch.stack([y[0, 5], y[1, 8]])))


@pytest.mark.parametrize("experiment", ["heunnet/mnist", "heunnet/ecg", "heunnet/sine", "heunnet/mnist_authors",
                                        "heunnet/sine_alpha"])
def test_it_runs_in_the_heunnet_experiments(experiment):
    cfg = compose([f"experiment={experiment}", "model=heunnet_authors", "budget=cpu", "model.hidden_size=4"])
    validate(cfg)
    torch.manual_seed(0)
    net = build_model(cfg.model)
    x = {"heunnet/ecg": torch.rand(2, 187), "heunnet/sine": torch.randn(2, 50),
         "heunnet/sine_alpha": torch.randn(2, 50)}.get(experiment, torch.rand(2, 1, 28, 28))
    out = net(x)
    classes = {"heunnet/ecg": 5, "heunnet/sine": 1, "heunnet/sine_alpha": 1}.get(experiment, 10)
    assert out.shape == (2, classes) and torch.isfinite(out).all()
    if experiment == "heunnet/ecg":  # chrono gates over the cpu budget's 17 steps of 11 samples, both directions
        lstm = net.cell.lstm
        assert net.chunk == 11 and lstm.input_size == 11
        for suffix in ("", "_reverse"):
            bias = getattr(lstm, f"bias_ih_l0{suffix}")
            forget, inputs = bias[4:8], bias[:4]
            assert ((forget >= 0) & (forget <= torch.log(torch.tensor(16.0)))).all()
            torch.testing.assert_close(inputs, -forget)
    if experiment == "heunnet/mnist_authors":
        assert net.cell.lstm.num_layers == 2


def test_alpha_follows_the_top_level_key_and_is_checked():
    assert compose(["experiment=heunnet/sine", "model=heunnet_authors", "alpha=0.8"]).model.alpha == 0.8
    with pytest.raises(ConfigError, match=r"^model.alpha=1.5 is not allowed; expected a number in \[0, 1\]"):
        create_model("heunnet_authors", alpha=1.5)
    with pytest.raises(ConfigError, match="^model.form='eq5' is not allowed; expected authors or paper$"):
        create_model("heunnet_authors", form="eq5")
