"""Recurrent models: ODE-stepped cells against HeunNet's equations written out by hand, the LSTM/GRU
equivalences of the Euler step, the Phased-LSTM time gate against its formula, a few training
steps per model, and `train.py experiment=heunnet/mnist` end to end."""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils import cpp_extension

from helpers import results_under
from helpers.dataset_files import write_mnist
from helpers.recurrent import train_cli
from odenets.core import fused_rnn
from odenets.core.stage_plan import StagePlan
from odenets.errors import ConfigError
from odenets.models import create_model, recurrent
from odenets.models.recurrent import ODERNNLayer, PhasedLSTMLayer, as_sequence, features_per_step


@pytest.fixture(autouse=True)
def _float64():
    """Equations are compared to 1e-12 in double precision; seeded, so initialisations repeat."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def tanh_layer(scheme) -> tuple[ODERNNLayer, Callable]:
    """A tanh-RNN layer (3 inputs, 4 units) and its F written by hand: F(h, x) = tanh(W h + U x + b)."""
    layer = ODERNNLayer(scheme, "rnn", 3, 4)
    f = layer.step.F[0]
    W, U, b = f.recurrent.weight.detach(), f.input_map.weight.detach(), f.input_map.bias.detach()
    return layer, lambda h, x: torch.tanh(h @ W.T + x @ U.T + b)


def unroll(update, x: torch.Tensor, size: int) -> torch.Tensor:
    h, out = torch.zeros(x.shape[0], size), []
    for t in range(x.shape[1]):
        h = update(h, x[:, t])
        out.append(h)
    return torch.stack(out, 1)


X = torch.linspace(-1, 1, 2 * 5 * 3, dtype=torch.float64).reshape(2, 5, 3)


def test_euler_is_the_residual_rnn_eq4():
    layer, F = tanh_layer("euler")
    expected = unroll(lambda h, x: h + F(h, x), X, 4)
    torch.testing.assert_close(layer(X), expected, rtol=0, atol=1e-12)


def test_heun_is_eq5a_5b():
    layer, F = tanh_layer("heun")

    def heun(h, x):
        h_tilde = h + F(h, x)  # (5a)
        return h + 0.5 * (F(h, x) + F(h_tilde, x))  # (5b)

    torch.testing.assert_close(layer(X), unroll(heun, X, 4), rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_extended_heun_is_eq6_7(alpha):
    layer, F = tanh_layer({"name": "heun_ext", "alpha": alpha})

    def extended(h, x):
        h_tilde = h + F(h, x)  # (6)
        return h + (1 - alpha) * F(h, x) + alpha * F(h_tilde, x)  # (7)

    torch.testing.assert_close(layer(X), unroll(extended, X, 4), rtol=0, atol=1e-12)


def test_rk4_step_with_the_shared_F():
    layer, F = tanh_layer("rk4")

    def rk4(h, x):
        k1 = F(h, x)
        k2 = F(h + k1 / 2, x)
        k3 = F(h + k2 / 2, x)
        k4 = F(h + k3, x)
        return h + (k1 + 2 * k2 + 2 * k3 + k4) / 6

    torch.testing.assert_close(layer(X), unroll(rk4, X, 4), rtol=0, atol=1e-12)


def test_step_size_from_the_scheme():
    layer, F = tanh_layer({"name": "euler", "h": 0.25})
    torch.testing.assert_close(layer(X), unroll(lambda h, x: h + 0.25 * F(h, x), X, 4), rtol=0, atol=1e-12)


def _copy_cell_into(rnn: nn.LSTM | nn.GRU, cell: nn.LSTMCell | nn.GRUCell) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, f"{name}_l0").copy_(getattr(cell, name))


@pytest.mark.parametrize("cell,torch_rnn", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_euler_with_a_gated_cell_is_that_torch_rnn(cell, torch_rnn):
    torch.manual_seed(1)
    layer = ODERNNLayer("euler", cell, 3, 4)
    reference = torch_rnn(3, 4, batch_first=True)
    _copy_cell_into(reference, layer.step.F[0].cell)
    torch.testing.assert_close(layer(X), reference(X)[0], rtol=0, atol=1e-12)


def test_heun_lstm_integrates_h_and_c_together():
    """F(s) = C(s) - s on s = [h; c] gives s_t = (s + C(C(s))) / 2 for Heun, c carried by the scheme."""
    torch.manual_seed(2)
    layer = ODERNNLayer("heun", "lstm", 3, 4)
    cell = layer.step.F[0].cell

    def C(s, x):
        return torch.cat(cell(x, (s[:, :4], s[:, 4:])), dim=1)

    s, hs = torch.zeros(2, 8), []
    for t in range(X.shape[1]):
        s = (s + C(C(s, X[:, t]), X[:, t])) / 2
        hs.append(s[:, :4])
    torch.testing.assert_close(layer(X), torch.stack(hs, 1), rtol=0, atol=1e-12)


def test_learned_alpha_gets_a_gradient():
    layer = ODERNNLayer({"name": "heun_ext", "alpha": 0.8, "learn_alpha": True}, "lstm", 3, 4)
    layer(X).sum().backward()
    alpha = layer.step.learned["alpha"]
    assert float(alpha) == pytest.approx(0.8) and alpha.grad is not None and float(alpha.grad) != 0


def test_images_are_read_by_rows_or_pixels():
    img = torch.arange(2 * 1 * 3 * 4, dtype=torch.float64).reshape(2, 1, 3, 4)
    rows, pixels = as_sequence(img, "rows"), as_sequence(img, "pixels")
    assert rows.shape == (2, 3, 4) and torch.equal(rows[1, 2], img[1, 0, 2])
    assert pixels.shape == (2, 12, 1) and torch.equal(pixels[0, :, 0], img[0].flatten())
    assert as_sequence(torch.zeros(2, 7)).shape == (2, 7, 1)
    assert features_per_step(1, 28, "rows") == 28 and features_per_step(1, 28, "pixels") == 1
    assert features_per_step(1, None, "rows") == 1


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="model.cell='elman'"):
        create_model("ode_rnn", cell="elman")
    with pytest.raises(ConfigError, match="model.read='cols'"):
        create_model("lstm", read="cols", image_size=28)
    with pytest.raises(ConfigError, match="num_layers=0"):
        create_model("gru", num_layers=0)


# --------------------------------------------------------------------------- the fused sequence kernel
SCHEMES = ["euler", "heun", "rk4", "rk8", {"name": "heun_ext", "alpha": 0.8, "learn_alpha": True},
           {"name": "midpoint", "h": 0.5, "learn_h": True},
           {"name": "rk8", "learn_h": True}]  # h A has 16 stages, the plan 14: its gradient keeps hA's shape
HAS_COMPILER = shutil.which("c++") is not None


@pytest.fixture(params=["native", "torch"])
def cell_arithmetic(request, monkeypatch):
    """The time loop in `fused_rnn.cpp` (native) or as torch operations: both are tested."""
    if request.param == "torch":
        monkeypatch.setattr(fused_rnn, "native_kernels", lambda: None)
    elif not HAS_COMPILER:
        pytest.skip("no C++ compiler: the native kernels cannot be built here")
    return request.param


def outputs_and_gradients(layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    loss = (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum()  # every hidden state matters
    return [y, *torch.autograd.grad(loss, [x, *layer.parameters()])]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s if isinstance(s, str) else f"{s['name']}-learned")
def test_fused_scan_equals_the_op_by_op_loop(cell, scheme, cell_arithmetic):
    """Issue 12: the one-node sequence kernel computes the plain RKBlock loop's outputs and gradients
    (input, weights, learned alpha or h) for every scheme and cell, with either cell arithmetic."""
    plain = ODERNNLayer(scheme, cell, 3, 5, fused=False)
    fused = ODERNNLayer(scheme, cell, 3, 5, fused=True)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(4, 7, 3)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(fused, x), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scheme,substeps", [("euler", 2), ("rk4", 3), (None, 2)])
def test_fused_scan_follows_a_test_time_integration(scheme, substeps, cell_arithmetic):
    """Another tableau and/or sub-steps of h / n (`set_integration`) give the block a new plan (Euler at h / 2
    is no longer its lone increment), which the scan follows as the op-by-op loop does."""
    plain = ODERNNLayer("heun", "lstm", 3, 5, fused=False)
    fused = ODERNNLayer("heun", "lstm", 3, 5, fused=True)
    fused.load_state_dict(plain.state_dict())
    for layer in (plain, fused):
        layer.step.set_integration(scheme, substeps=substeps)
    assert fused.step.plan.single is None
    x = torch.randn(4, 7, 3)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(fused, x), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_fused_phased_lstm_equals_eq9_11_op_by_op(training, cell_arithmetic):
    plain = PhasedLSTMLayer(3, 5, period_range=(2.0, 5.0), r_on=0.3, fused=False).train(training)
    fused = PhasedLSTMLayer(3, 5, period_range=(2.0, 5.0), r_on=0.3, fused=True).train(training)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(4, 9, 3)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(fused, x), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_scan_in_float32_matches_to_1e5(cell, cell_arithmetic):
    """In single precision the fused scan differs from the loop by summation order and, natively, by its
    exp (relative error below 2e-7): relative difference below 1e-5 per tensor, through 28 Heun steps."""
    torch.set_default_dtype(torch.float32)
    plain, fused = (ODERNNLayer("heun", cell, 28, 32, fused=f) for f in (False, True))
    fused.load_state_dict(plain.state_dict())
    x = torch.rand(16, 28, 28)
    for a, b in zip(outputs_and_gradients(plain, x), outputs_and_gradients(fused, x), strict=True):
        assert float((b - a).norm() / a.norm()) < 1e-5


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler")
def test_native_kernels_build_and_serve_cpu_training(monkeypatch):
    """Where a compiler exists the time loop is built and the scan runs in it for float32 and float64 on CPU,
    which is what the committed cpu-budget runs trained with; `native=True` where it does not apply is an
    error."""
    native = fused_rnn.native_kernels()
    assert native is not None
    calls = []

    class Counting:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(native, name)

    monkeypatch.setattr(fused_rnn, "native_kernels", Counting)
    for dtype in (torch.float32, torch.float64):
        layer = ODERNNLayer("heun", "lstm", 3, 4).to(dtype)
        layer(torch.rand(2, 5, 3, dtype=dtype)).sum().backward()
    assert calls == ["scan_forward", "scan_backward"] * 2  # one call each per sequence and dtype
    layer = ODERNNLayer("heun", "lstm", 3, 4).to(torch.bfloat16)
    spec = fused_rnn.ScanSpec("lstm", StagePlan([(), (0,)], [True, True]), torch.zeros(2, 2, dtype=torch.float64),
                              torch.full((2,), 0.5, dtype=torch.float64), 8)
    with pytest.raises(RuntimeError, match="native kernels asked for"):
        fused_rnn.rk_scan(spec, torch.rand(5, 2, 3, dtype=torch.bfloat16), layer.cell.fused_params(), layer.workspace,
                          native=True)


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error
    return fail


def _no_ninja(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "ninja", None)  # `import ninja` fails


@pytest.mark.parametrize("breaks", [
    lambda mp: mp.setattr(cpp_extension, "load", _raise(RuntimeError("Error building extension 'x': c++: not found"))),
    lambda mp: mp.setattr(cpp_extension, "load", _raise(PermissionError(13, "Permission denied", "/home/.cache"))),
    lambda mp: mp.setattr(cpp_extension, "load", _raise(ImportError("x.so: undefined symbol: _ZN2at"))),
    _no_ninja,
], ids=["no-compiler", "unwritable-cache", "unloadable", "no-ninja"])
def test_a_native_build_that_cannot_happen_falls_back_with_one_warning(breaks, monkeypatch):
    """Issue 26: where the extension loader cannot build, the torch operations run, and one warning says why."""
    monkeypatch.delenv("ODENETS_NATIVE", raising=False)
    breaks(monkeypatch)
    with pytest.warns(UserWarning, match=r"fused_rnn.cpp could not be built \(.+\); the recurrent cells run as torch"):
        assert fused_rnn.native_kernels.__wrapped__() is None  # the uncached body: the build in use stays


def test_a_bug_of_ours_in_the_native_build_is_a_traceback_not_advice(monkeypatch):
    monkeypatch.delenv("ODENETS_NATIVE", raising=False)
    monkeypatch.setattr(cpp_extension, "load", _raise(TypeError("load() got an unexpected keyword argument 'flags'")))
    with pytest.raises(TypeError, match="unexpected keyword"):
        fused_rnn.native_kernels.__wrapped__()


EXTREMES = [-1e4, -100.0, -88.0, -87.5, -20.0, -9.0, -1.0, -0.3, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 0.3, 0.5, 3.0,
            20.0, 87.5, 88.0, 89.0, 100.0, 1e4, 1e30, -1e30]  # infinite inputs would meet 0 in x W_in^T


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell,torch_rnn,steps", [("lstm", nn.LSTM, 2), ("gru", nn.GRU, 2), ("rnn", nn.RNN, 1)])
def test_native_activations_at_the_extremes(cell, torch_rnn, steps, dtype):
    """The compiled activations against torch's over the whole range (saturation, huge and tiny inputs): an
    Euler step with W_in = I and W_hh = 0 puts each input value straight into a gate, and is the torch RNN
    (one step of the tanh cell, which is its own increment). The first step is products of activations only:
    relative error below 1e-6 in float32, also near 0 where tanh(x) ~ x; the second (f c + i g) to 1e-6
    absolute. A NaN input gives NaN in its own row only: a diverging run is still caught."""
    n = len(EXTREMES)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    layer = ODERNNLayer("euler", cell, gates * n, n, fused=True).to(dtype)
    reference = torch_rnn(gates * n, n, batch_first=True).to(dtype)
    with torch.no_grad():
        for p in [*layer.parameters(), *reference.parameters()]:
            p.zero_()
        for w in (reference.weight_ih_l0, layer.cell.fused_params().w_in):
            w.copy_(torch.eye(gates * n, dtype=dtype))
    values = torch.tensor(EXTREMES, dtype=dtype)
    x = torch.stack([values.roll(r).repeat(gates) for r in range(gates + 1)])  # each value in every gate
    x = torch.stack([x, x.flip(1)], dim=1)[:, :steps]  # second step: c and h != 0
    rtol, atol = (1e-6, 1e-6) if dtype == torch.float32 else (1e-13, 1e-14)
    with torch.no_grad():
        got, want = layer(x), reference(x)[0]
        first, first_want = got[:, 0], want[:, 0]
        assert float(((first - first_want).abs() / first_want.abs().clamp_min(1e-30)).max()) < rtol
        torch.testing.assert_close(got, want, rtol=0, atol=atol)
        x[0, 0, 3] = float("nan")
        got = layer(x)
    assert torch.isnan(got[0]).any() and not torch.isnan(got[1:]).any()


def test_the_block_and_the_scan_read_one_plan(cell_arithmetic, monkeypatch):
    """The stage plan is worked out once, by the layer's RKBlock: the scan forward and backward, and on CPU its
    C++ loop, receive it in one spec, with the sequence's inputs and buffers as objects (read by name)."""
    layer = ODERNNLayer("rk4", "gru", 3, 4)
    calls = []
    if cell_arithmetic == "native":
        native = fused_rnn.native_kernels()

        class Spy:
            def scan_forward(self, *args):
                calls.append(args)
                return native.scan_forward(*args)

            def scan_backward(self, *args):
                calls.append(args)
                return native.scan_backward(*args)

        monkeypatch.setattr(fused_rnn, "native_kernels", Spy)
    else:
        steps, adjoint = fused_rnn._steps, fused_rnn._adjoint
        monkeypatch.setattr(fused_rnn, "_steps", lambda *args: calls.append(args) or steps(*args))
        monkeypatch.setattr(fused_rnn, "_adjoint", lambda *args: calls.append(args) or adjoint(*args))
    layer(X).sum().backward()
    (spec, inputs, buffers, *_), (spec_back, inputs_back, buffers_back, *_) = calls
    assert spec is spec_back and spec.plan is layer.step.plan and buffers is buffers_back
    assert isinstance(inputs, fused_rnn.ScanInputs) and isinstance(inputs_back, fused_rnn.ScanInputs)
    assert isinstance(buffers, fused_rnn.ScanBuffers) and inputs.w_hh is layer.cell.cell.weight_hh
    assert layer.step.plan.stages == 4 and layer.step.plan.single is None


def test_a_plan_whose_lone_increment_is_not_weighted_1_is_refused():
    hA, hb = torch.zeros(1, 1, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match="increment is stage 0 alone, but its weight is 0.5"):
        fused_rnn.ScanSpec("lstm", recurrent.EULER, hA, hb, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_gated_two_stage_scan_and_every_gradient_by_name(cell, cell_arithmetic):
    """A gate on a two-stage step, where no stage alone is the increment (its sum gets a buffer of its own), against
    the step written out and differentiated by autograd: y <- y + g_t (hb_0 k_0 + hb_1 k_1), k_0 = F(y, x_t),
    k_1 = F(y + hA_10 k_0, x_t). The gradients of x, of the gate, of hA and hb and of the cell's weights each
    reach the input of that name."""
    transition = recurrent.TRANSITIONS[cell](3, 4)
    S, T = transition.state_size, 6
    x = torch.randn(T, 2, 3, requires_grad=True)
    hA = torch.tensor([[0.0, 0.0], [0.7, 0.0]], requires_grad=True)
    hb = torch.tensor([0.3, 0.6], requires_grad=True)
    gate = torch.rand(T, S, requires_grad=True)
    spec = fused_rnn.ScanSpec(transition.kernel, StagePlan(((), (0,)), (True, True)), hA, hb, S, gate=gate)
    fused = fused_rnn.rk_scan(spec, x, transition.fused_params(), fused_rnn.Workspace())
    y, hidden = torch.zeros(2, S), []
    for t in range(T):
        u = transition.inputs(x[t])
        k0 = transition(y, u)
        k1 = transition(y + hA[1, 0] * k0, u)
        y = y + gate[t] * (hb[0] * k0 + hb[1] * k1)
        hidden.append(y[:, :4])
    written_out = torch.stack(hidden)
    weights = torch.linspace(-1, 1, fused.numel()).reshape(fused.shape)
    leaves = [x, gate, hA, hb, *transition.parameters()]
    torch.testing.assert_close(fused, written_out, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad((fused * weights).sum(), leaves),
                    torch.autograd.grad((written_out * weights).sum(), leaves), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_each_layer_keeps_its_own_buffers_for_the_next_sequence():
    """A layer's workspace holds the scan's buffers after a training step, and an evaluation batch reuses them
    (a fresh buffer costs a page fault per 4 KiB); another layer's workspace is its own."""
    first, second = ODERNNLayer("heun", "lstm", 3, 4), ODERNNLayer("heun", "lstm", 3, 4)
    first(X).sum().backward()
    kept = {t.data_ptr() for pool in first.workspace.free.values() for t in pool}
    assert kept and not second.workspace.free
    with torch.no_grad():
        first(X)
    assert {t.data_ptr() for pool in first.workspace.free.values() for t in pool} == kept


def test_fused_scan_reuses_its_buffers_and_refuses_a_second_backward():
    layer = ODERNNLayer("heun", "lstm", 3, 4)
    with torch.no_grad():  # evaluation batches reuse the buffers at once: outputs are copies, never views
        first = layer(X)
        kept = first.clone()
        second = layer(X.flip(0))
    assert torch.equal(first, kept) and not torch.equal(first, second)
    y = layer(X).sum()
    y.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already backpropagated"):
        y.backward()


# --------------------------------------------------------------------------- reading and initialising
def test_chunked_reading_groups_consecutive_samples():
    beats = torch.arange(2 * 7, dtype=torch.float64).reshape(2, 7)
    seq = as_sequence(beats, chunk=3)
    assert seq.shape == (2, 3, 3) and torch.equal(seq[1, 1], beats[1, 3:6]) and torch.equal(seq[0, 2], torch.tensor(
        [6.0, 0.0, 0.0]))
    assert features_per_step(1, None, "rows", chunk=11) == 11
    net = create_model("ode_rnn", in_channels=1, chunk=11, hidden_size=4, num_outputs=5)
    assert net(torch.rand(3, 187)).shape == (3, 5)
    with pytest.raises(ConfigError, match="model.chunk=0"):
        create_model("lstm", chunk=0)


def test_trim_padding_reads_the_state_at_the_last_nonzero_sample():
    net = create_model("lstm", in_channels=1, hidden_size=4, num_outputs=2, trim_padding=True)
    beat = torch.rand(1, 10) + 0.1
    padded = torch.cat([beat, torch.zeros(1, 6)], dim=1)
    torch.testing.assert_close(net(padded), net(beat))  # the padding is never read
    net.config = replace(net.config, trim_padding=False)
    assert not torch.allclose(net(padded), net(beat))


@pytest.mark.parametrize("name", ["lstm", "gru", "ode_rnn", "phased_lstm"])
def test_gate_initialisations(name):
    forget = create_model(name, hidden_size=8, gate_init="forget")
    chrono = create_model(name, hidden_size=8, gate_init="chrono", timescale=187)
    in_chrono_range = lambda b: (b >= 0).all() and (b <= math.log(186)).all() and b.std() > 0
    for net, check in ((forget, lambda b: torch.all(b == 1)), (chrono, in_chrono_range)):
        cell = next(m for m in net.modules() if isinstance(m, (nn.LSTM, nn.LSTMCell, nn.GRU, nn.GRUCell)))
        n = cell.hidden_size
        ih = next(p for k, p in cell.named_parameters() if k.startswith("bias_ih"))
        hh = next(p for k, p in cell.named_parameters() if k.startswith("bias_hh"))
        assert check(ih[n:2 * n]) and torch.all(hh[n:2 * n] == 0)
    if name != "gru":  # chrono's input gate is minus the forget gate's bias
        cell = next(m for m in chrono.modules() if isinstance(m, (nn.LSTM, nn.LSTMCell)))
        ih = next(p for k, p in cell.named_parameters() if k.startswith("bias_ih"))
        torch.testing.assert_close(ih[:8], -ih[8:16])
    with pytest.raises(ConfigError, match="model.gate_init='keras'"):
        create_model(name, gate_init="keras")


# --------------------------------------------------------------------------- Phased LSTM
def expected_gate(t: float, tau: float, s: float, r_on: float, alpha: float) -> float:
    """Neil et al. 2016, eq. 6-7, in plain Python."""
    phi = ((t - s) % tau) / tau
    if phi < r_on / 2:
        return 2 * phi / r_on
    if phi < r_on:
        return 2 - 2 * phi / r_on
    return alpha * phi


def test_phased_lstm_gate_follows_eq6_7():
    layer = PhasedLSTMLayer(1, 3, leak=1e-3)
    taus, shifts, r_ons = [10.0, 4.0, 7.5], [1.3, 0.55, 8.9], [0.4, 0.25, 0.1]  # no t on a phase boundary
    with torch.no_grad():
        layer.log_period.copy_(torch.tensor(taus).log())
        layer.shift.copy_(torch.tensor(shifts))
        layer.r_on.copy_(torch.tensor(r_ons))
    t = torch.arange(0.0, 30.0, 0.25)
    for training, alpha in [(True, 1e-3), (False, 0.0)]:
        layer.train(training)
        k = layer.time_gate(t)
        expected = torch.tensor([[expected_gate(float(ti), *p, alpha) for p in zip(taus, shifts, r_ons, strict=True)]
                                 for ti in t])
        torch.testing.assert_close(k, expected, rtol=0, atol=1e-9)
    assert (k == 0).any() and k.max() > 0.95  # closed (eval: no leak) and nearly fully open both occur


def test_phased_lstm_update_follows_eq8_11():
    torch.manual_seed(3)
    layer = PhasedLSTMLayer(3, 4).eval()
    k = layer.time_gate(torch.arange(5.0))
    h = c = torch.zeros(2, 4)
    for t in range(5):
        h_new, c_new = layer.cell(X[:, t], (h, c))  # eq. 8, 10
        c = k[t] * c_new + (1 - k[t]) * c  # eq. 9
        h = k[t] * h_new + (1 - k[t]) * h  # eq. 11
    torch.testing.assert_close(layer(X)[:, -1], h, rtol=0, atol=1e-12)


def test_phased_lstm_learns_its_timing():
    layer = PhasedLSTMLayer(3, 4, period_range=(2.0, 3.0), r_on=0.5)
    layer(X).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (layer.log_period, layer.shift, layer.r_on))


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("name,kwargs", [
    ("ode_rnn", {"scheme": "heun"}), ("ode_rnn", {"scheme": {"name": "heun_ext", "alpha": 0.8}, "cell": "rnn"}),
    ("ode_rnn", {"scheme": "rk4", "cell": "gru"}), ("lstm", {}), ("gru", {}), ("phased_lstm", {"period_range": [1, 4]}),
])
def test_a_few_training_steps_lower_the_loss(name, kwargs):
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    net = create_model(name, hidden_size=16, num_outputs=3, in_channels=1, image_size=6, **kwargs)
    x, y = torch.rand(8, 1, 6, 6), torch.arange(8) % 3
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_heunnet_mnist_experiment_runs(tmp_path):
    write_mnist(tmp_path / "data")
    out = train_cli("experiment=heunnet/mnist", f"paths.data_dir={tmp_path / 'data'}", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (name, record), = results_under(tmp_path).items()
    assert record["status"] == "completed" and name.startswith("mnist-ode_rnn-heun-")
    assert record["config"]["optimizer"]["_target_"] == "torch.optim.Adam"
    assert {"train/loss", "train/acc", "test/loss", "test/acc"} <= set(record["history"][0])
